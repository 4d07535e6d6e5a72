// Package vhostfront is a vhost-user front-end for tests: it plays the VMM
// (QEMU, cloud-hypervisor, crosvm) and the guest's virtio-net driver
// against a vhost-user back-end on a unix socket. Guest memory is a memfd
// shared with the back-end; the package lays out the rings in it, fills
// the receive ring with buffers, puts frames on the transmit ring and
// takes received frames back, waiting on the eventfds as a guest waits
// for interrupts. A Frontend is a guestpeer.Wire, so a gVisor guest can
// run behind it.
//
// It is an implementation of its own, written from the specification
// (QEMU's docs/interop/vhost-user.rst and the virtio split ring), not
// from the back-end under test, and it exposes the raw pieces (messages,
// descriptors, indices) so tests can break every rule on purpose.
package vhostfront

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"

	"golang.org/x/sys/unix"
)

// Requests (front-end to back-end).
const (
	GetFeatures         = 1
	SetFeatures         = 2
	SetOwner            = 3
	SetMemTable         = 5
	SetLogBase          = 6
	SetVringNum         = 8
	SetVringAddr        = 9
	SetVringBase        = 10
	GetVringBase        = 11
	SetVringKick        = 12
	SetVringCall        = 13
	SetVringErr         = 14
	GetProtocolFeatures = 15
	SetProtocolFeatures = 16
	GetQueueNum         = 17
	SetVringEnable      = 18
	SendRARP            = 19
	NetSetMTU           = 20
	SetBackendReqFD     = 21
	GetConfig           = 24
	GetMaxMemSlots      = 36
	AddMemReg           = 37
	RemMemReg           = 38
	SetStatus           = 39
	GetStatus           = 40
)

// Message flags.
const (
	FlagVersion   = 1
	FlagReply     = 4
	FlagNeedReply = 8
)

// Virtio and protocol feature bits the front-end knows.
const (
	FCsum          = 1 << 0
	FGuestCsum     = 1 << 1
	FMTU           = 1 << 3
	FMAC           = 1 << 5
	FGuestTSO4     = 1 << 7
	FGuestTSO6     = 1 << 8
	FHostTSO4      = 1 << 11
	FHostTSO6      = 1 << 12
	FMrgRxbuf      = 1 << 15
	FStatus        = 1 << 16
	FLogAll        = 1 << 26
	FIndirectDesc  = 1 << 28
	FEventIdx      = 1 << 29
	FProtoFeatures = 1 << 30
	FVersion1      = 1 << 32

	PLogShmFD          = 1 << 1
	PReplyAck          = 1 << 3
	PNetMTU            = 1 << 4
	PBackendReq        = 1 << 5
	PConfig            = 1 << 9
	PConfigureMemSlots = 1 << 15
	PStatus            = 1 << 16
	PRARP              = 1 << 2

	// Offloads are what a Linux guest acknowledges for offloads.
	Offloads = FCsum | FGuestCsum | FGuestTSO4 | FGuestTSO6 | FHostTSO4 | FHostTSO6
	// Linux is what a Linux guest's virtio-net driver and QEMU
	// acknowledge of a back-end offering everything.
	Linux = FVersion1 | FProtoFeatures | FMrgRxbuf | FEventIdx | FIndirectDesc | Offloads | FMTU | FMAC | FStatus
)

// Reply is a message from the back-end.
type Reply struct {
	Request, Flags uint32
	Payload        []byte
}

// U64 is the reply's payload as a u64.
func (r Reply) U64() (uint64, error) {
	if len(r.Payload) != 8 {
		return 0, fmt.Errorf("reply to %d has %d bytes, want 8", r.Request, len(r.Payload))
	}
	return binary.NativeEndian.Uint64(r.Payload), nil
}

// Conn is the front-end's end of the vhost-user socket: raw messages.
type Conn struct {
	C *net.UnixConn
}

// Request writes one message with its descriptors; the version bit is
// added to flags.
func (c *Conn) Request(req, flags uint32, payload []byte, fds ...int) error {
	return c.SendRaw(req, flags|FlagVersion, uint32(len(payload)), payload, fds...)
}

// SendRaw writes a header with any flags and size, then payload.
func (c *Conn) SendRaw(req, flags, size uint32, payload []byte, fds ...int) error {
	b := make([]byte, 12+len(payload))
	binary.NativeEndian.PutUint32(b[0:], req)
	binary.NativeEndian.PutUint32(b[4:], flags)
	binary.NativeEndian.PutUint32(b[8:], size)
	copy(b[12:], payload)
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	_, _, err := c.C.WriteMsgUnix(b, oob, nil)
	return err
}

// ReadReply reads one reply.
func (c *Conn) ReadReply() (Reply, error) {
	var h [12]byte
	if _, err := io.ReadFull(c.C, h[:]); err != nil {
		return Reply{}, err
	}
	r := Reply{Request: binary.NativeEndian.Uint32(h[0:]), Flags: binary.NativeEndian.Uint32(h[4:])}
	size := binary.NativeEndian.Uint32(h[8:])
	if size > 4096 {
		return r, fmt.Errorf("reply of %d bytes", size)
	}
	r.Payload = make([]byte, size)
	if _, err := io.ReadFull(c.C, r.Payload); err != nil {
		return r, err
	}
	if r.Flags != FlagVersion|FlagReply {
		return r, fmt.Errorf("reply to %d with flags %#x (QEMU takes only %#x)", r.Request, r.Flags, FlagVersion|FlagReply)
	}
	return r, nil
}

// Call sends a request and reads its reply, which must answer it.
func (c *Conn) Call(req, flags uint32, payload []byte, fds ...int) (Reply, error) {
	if err := c.Request(req, flags, payload, fds...); err != nil {
		return Reply{}, err
	}
	r, err := c.ReadReply()
	if err != nil {
		return r, err
	}
	if r.Request != req {
		return r, fmt.Errorf("reply to %d answers %d", req, r.Request)
	}
	return r, nil
}

// U64 is a u64 payload.
func U64(v uint64) []byte { return binary.NativeEndian.AppendUint64(nil, v) }

// State is a vring state payload {index, num}.
func State(index, num uint32) []byte {
	b := binary.NativeEndian.AppendUint32(nil, index)
	return binary.NativeEndian.AppendUint32(b, num)
}

// Addr is a vring address payload.
func Addr(index, flags uint32, desc, used, avail, log uint64) []byte {
	b := binary.NativeEndian.AppendUint32(nil, index)
	b = binary.NativeEndian.AppendUint32(b, flags)
	for _, v := range []uint64{desc, used, avail, log} {
		b = binary.NativeEndian.AppendUint64(b, v)
	}
	return b
}

// Region is a memory region as messages carry it.
type Region struct {
	GuestAddr, Size, UserAddr, MmapOffset uint64
}

func (r Region) append(b []byte) []byte {
	for _, v := range []uint64{r.GuestAddr, r.Size, r.UserAddr, r.MmapOffset} {
		b = binary.NativeEndian.AppendUint64(b, v)
	}
	return b
}

// MemTable is a SET_MEM_TABLE payload.
func MemTable(regions ...Region) []byte {
	b := binary.NativeEndian.AppendUint32(nil, uint32(len(regions)))
	b = binary.NativeEndian.AppendUint32(b, 0)
	for _, r := range regions {
		b = r.append(b)
	}
	return b
}

// SingleRegion is an ADD_MEM_REG or REM_MEM_REG payload.
func SingleRegion(r Region) []byte { return r.append(make([]byte, 8)) }
