package vhostuser

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// The vhost-user wire format (QEMU docs/interop/vhost-user.rst): a 12-byte
// header in the host's byte order, then the payload, with file descriptors
// as SCM_RIGHTS on the first byte.
const (
	hdrSize = 12

	flagVersion   = 0x1
	flagVersionMk = 0x3
	flagReply     = 0x4
	flagNeedReply = 0x8

	// maxPayload bounds what one message may carry; the largest message
	// a net back-end takes (GET/SET_CONFIG with the whole config space)
	// is 268 bytes, a memory table of 8 regions 264.
	maxPayload = 4096
	// maxFDs is how many descriptors one message may carry (QEMU sends
	// at most 8); room is made for more so that a front-end sending
	// too many gets an error instead of having them silently dropped.
	maxFDs = 8
)

// Front-end requests.
const (
	reqGetFeatures         = 1
	reqSetFeatures         = 2
	reqSetOwner            = 3
	reqResetOwner          = 4
	reqSetMemTable         = 5
	reqSetLogBase          = 6
	reqSetLogFD            = 7
	reqSetVringNum         = 8
	reqSetVringAddr        = 9
	reqSetVringBase        = 10
	reqGetVringBase        = 11
	reqSetVringKick        = 12
	reqSetVringCall        = 13
	reqSetVringErr         = 14
	reqGetProtocolFeatures = 15
	reqSetProtocolFeatures = 16
	reqGetQueueNum         = 17
	reqSetVringEnable      = 18
	reqSendRARP            = 19
	reqNetSetMTU           = 20
	reqSetBackendReqFD     = 21
	reqGetConfig           = 24
	reqSetConfig           = 25
	reqGetMaxMemSlots      = 36
	reqAddMemReg           = 37
	reqRemMemReg           = 38
	reqSetStatus           = 39
	reqGetStatus           = 40
)

var reqNames = map[uint32]string{
	reqGetFeatures: "GET_FEATURES", reqSetFeatures: "SET_FEATURES", reqSetOwner: "SET_OWNER",
	reqResetOwner: "RESET_OWNER", reqSetMemTable: "SET_MEM_TABLE", reqSetLogBase: "SET_LOG_BASE",
	reqSetLogFD: "SET_LOG_FD", reqSetVringNum: "SET_VRING_NUM", reqSetVringAddr: "SET_VRING_ADDR",
	reqSetVringBase: "SET_VRING_BASE", reqGetVringBase: "GET_VRING_BASE", reqSetVringKick: "SET_VRING_KICK",
	reqSetVringCall: "SET_VRING_CALL", reqSetVringErr: "SET_VRING_ERR",
	reqGetProtocolFeatures: "GET_PROTOCOL_FEATURES", reqSetProtocolFeatures: "SET_PROTOCOL_FEATURES",
	reqGetQueueNum: "GET_QUEUE_NUM", reqSetVringEnable: "SET_VRING_ENABLE", reqSendRARP: "SEND_RARP",
	reqNetSetMTU: "NET_SET_MTU", reqSetBackendReqFD: "SET_BACKEND_REQ_FD", reqGetConfig: "GET_CONFIG",
	reqSetConfig: "SET_CONFIG", reqGetMaxMemSlots: "GET_MAX_MEM_SLOTS", reqAddMemReg: "ADD_MEM_REG",
	reqRemMemReg: "REM_MEM_REG", reqSetStatus: "SET_STATUS", reqGetStatus: "GET_STATUS",
}

func reqName(r uint32) string {
	if n, ok := reqNames[r]; ok {
		return n
	}
	return fmt.Sprintf("request %d", r)
}

// Virtio feature bits a net back-end deals in.
const (
	fCsum          = 1 << 0
	fGuestCsum     = 1 << 1
	fMTU           = 1 << 3
	fMAC           = 1 << 5
	fGuestTSO4     = 1 << 7
	fGuestTSO6     = 1 << 8
	fHostTSO4      = 1 << 11
	fHostTSO6      = 1 << 12
	fMrgRxbuf      = 1 << 15
	fStatus        = 1 << 16
	fMQ            = 1 << 22
	fLogAll        = 1 << 26
	fIndirectDesc  = 1 << 28
	fEventIdx      = 1 << 29
	fProtoFeatures = 1 << 30
	fVersion1      = 1 << 32
)

// Back-end → front-end requests (the back-end channel).
const backendConfigChange = 2

// Protocol feature bits.
const (
	pMQ                = 1 << 0
	pLogShmFD          = 1 << 1
	pRARP              = 1 << 2
	pReplyAck          = 1 << 3
	pNetMTU            = 1 << 4
	pBackendReq        = 1 << 5
	pConfig            = 1 << 9
	pConfigureMemSlots = 1 << 15
	pStatus            = 1 << 16
)

// Errors a front-end's message is refused with; each closes the
// connection.
var (
	ErrBadVersion   = errors.New("vhost-user: message version is not 1")
	ErrBadFlags     = errors.New("vhost-user: reserved or reply flags set in a request")
	ErrBadSize      = errors.New("vhost-user: payload size does not fit the request")
	ErrBadFDs       = errors.New("vhost-user: wrong number of file descriptors")
	ErrUnknown      = errors.New("vhost-user: request not supported")
	ErrBadRequest   = errors.New("vhost-user: request invalid in this state")
	ErrBadMemory    = errors.New("vhost-user: memory region invalid")
	ErrTruncated    = errors.New("vhost-user: message truncated")
	ErrTooManyFDs   = errors.New("vhost-user: more file descriptors than a message may carry")
	ErrBadRingIndex = errors.New("vhost-user: no such ring")
)

// header is a message's 12-byte header.
type header struct {
	Request uint32
	Flags   uint32
	Size    uint32
}

func decodeHeader(b []byte) header {
	return header{
		Request: binary.NativeEndian.Uint32(b[0:]),
		Flags:   binary.NativeEndian.Uint32(b[4:]),
		Size:    binary.NativeEndian.Uint32(b[8:]),
	}
}

func (h header) encode(b []byte) {
	binary.NativeEndian.PutUint32(b[0:], h.Request)
	binary.NativeEndian.PutUint32(b[4:], h.Flags)
	binary.NativeEndian.PutUint32(b[8:], h.Size)
}

// checkHeader refuses a header that no valid request has: the wrong
// version, reply or unknown flag bits, or a payload too large to be one.
func checkHeader(h header) error {
	if h.Flags&flagVersionMk != flagVersion {
		return fmt.Errorf("%w: flags %#x", ErrBadVersion, h.Flags)
	}
	if h.Flags&^(flagVersionMk|flagNeedReply) != 0 {
		return fmt.Errorf("%w: flags %#x", ErrBadFlags, h.Flags)
	}
	if h.Size > maxPayload {
		return fmt.Errorf("%w: %d bytes", ErrBadSize, h.Size)
	}
	return nil
}

// Payload shapes.
const (
	sizeU64        = 8
	sizeState      = 8
	sizeAddr       = 40
	sizeRegion     = 32
	sizeMemHdr     = 8
	sizeSingleReg  = 8 + sizeRegion
	sizeLog        = 16
	sizeConfigHdr  = 12
	maxTableRegion = 8 // regions in one SET_MEM_TABLE
	kickNoFD       = 1 << 8
	kickIndexMask  = 0xff
)

// region is one memory region as the front-end describes it.
type region struct {
	GuestAddr  uint64
	Size       uint64
	UserAddr   uint64
	MmapOffset uint64
}

func decodeRegion(b []byte) region {
	return region{
		GuestAddr:  binary.NativeEndian.Uint64(b[0:]),
		Size:       binary.NativeEndian.Uint64(b[8:]),
		UserAddr:   binary.NativeEndian.Uint64(b[16:]),
		MmapOffset: binary.NativeEndian.Uint64(b[24:]),
	}
}

// vringAddr is SET_VRING_ADDR's payload.
type vringAddr struct {
	Index uint32
	Flags uint32
	Desc  uint64
	Used  uint64
	Avail uint64
	Log   uint64
}

// vringFlagLog asks for the used ring's writes to be logged.
const vringFlagLog = 1

// message is a request whose payload has been checked against its
// request's shape: each field is filled for the requests that carry it.
type message struct {
	hdr   header
	u64   uint64
	state [2]uint32 // index, num
	addr  vringAddr
	// regions are SET_MEM_TABLE's, or the one of ADD/REM_MEM_REG.
	regions []region
	log     [2]uint64 // SET_LOG_BASE: size, offset
	config  struct {
		Offset, Size, Flags uint32
		Data                []byte
	}
	fds []int
}

func (m *message) needReply() bool { return m.hdr.Flags&flagNeedReply != 0 }

// parseMessage checks a request's payload size and descriptor count
// against what the request carries and decodes it. It never keeps b or
// fds beyond the message; on error the caller closes the descriptors.
// The ring index and fd presence of KICK/CALL/ERR are checked here; what
// depends on the connection's state is checked by the device.
func parseMessage(h header, b []byte, fds []int) (*message, error) {
	m := &message{hdr: h, fds: fds}
	if int(h.Size) != len(b) {
		return nil, fmt.Errorf("%w: header says %d bytes, got %d", ErrTruncated, h.Size, len(b))
	}
	size := func(want int) error {
		if len(b) != want {
			return fmt.Errorf("%w: %s takes %d bytes, got %d", ErrBadSize, reqName(h.Request), want, len(b))
		}
		return nil
	}
	nfds := func(want int) error {
		if len(fds) != want {
			return fmt.Errorf("%w: %s takes %d, got %d", ErrBadFDs, reqName(h.Request), want, len(fds))
		}
		return nil
	}
	both := func(sz, n int) error {
		if err := size(sz); err != nil {
			return err
		}
		return nfds(n)
	}
	var err error
	switch h.Request {
	case reqGetFeatures, reqGetProtocolFeatures, reqSetOwner, reqResetOwner,
		reqGetQueueNum, reqGetMaxMemSlots, reqGetStatus:
		err = both(0, 0)
	case reqSetLogFD, reqSetBackendReqFD:
		err = both(0, 1)
	case reqSetFeatures, reqSetProtocolFeatures, reqSendRARP, reqNetSetMTU, reqSetStatus:
		if err = both(sizeU64, 0); err == nil {
			m.u64 = binary.NativeEndian.Uint64(b)
		}
	case reqSetVringKick, reqSetVringCall, reqSetVringErr:
		if err = size(sizeU64); err != nil {
			break
		}
		m.u64 = binary.NativeEndian.Uint64(b)
		if m.u64&^(kickNoFD|kickIndexMask) != 0 {
			err = fmt.Errorf("%w: %s payload %#x has unknown bits", ErrBadRequest, reqName(h.Request), m.u64)
			break
		}
		want := 1
		if m.u64&kickNoFD != 0 {
			want = 0
		}
		err = nfds(want)
	case reqSetVringNum, reqSetVringBase, reqGetVringBase, reqSetVringEnable:
		if err = both(sizeState, 0); err == nil {
			m.state = [2]uint32{binary.NativeEndian.Uint32(b), binary.NativeEndian.Uint32(b[4:])}
		}
	case reqSetVringAddr:
		if err = both(sizeAddr, 0); err == nil {
			m.addr = vringAddr{
				Index: binary.NativeEndian.Uint32(b[0:]),
				Flags: binary.NativeEndian.Uint32(b[4:]),
				Desc:  binary.NativeEndian.Uint64(b[8:]),
				Used:  binary.NativeEndian.Uint64(b[16:]),
				Avail: binary.NativeEndian.Uint64(b[24:]),
				Log:   binary.NativeEndian.Uint64(b[32:]),
			}
		}
	case reqSetMemTable:
		if len(b) < sizeMemHdr {
			err = size(sizeMemHdr)
			break
		}
		n := binary.NativeEndian.Uint32(b)
		if n == 0 || n > maxTableRegion {
			err = fmt.Errorf("%w: %d regions (1 to %d)", ErrBadMemory, n, maxTableRegion)
			break
		}
		if err = both(sizeMemHdr+int(n)*sizeRegion, int(n)); err != nil {
			break
		}
		m.regions = make([]region, n)
		for i := range m.regions {
			m.regions[i] = decodeRegion(b[sizeMemHdr+i*sizeRegion:])
		}
	case reqAddMemReg, reqRemMemReg:
		if err = size(sizeSingleReg); err != nil {
			break
		}
		// REM_MEM_REG may come with a descriptor from front-ends
		// that send one anyway; it is closed unused.
		if h.Request == reqAddMemReg || len(fds) != 0 {
			err = nfds(1)
		}
		if err == nil {
			m.regions = []region{decodeRegion(b[8:])}
		}
	case reqSetLogBase:
		if err = both(sizeLog, 1); err == nil {
			m.log = [2]uint64{binary.NativeEndian.Uint64(b), binary.NativeEndian.Uint64(b[8:])}
		}
	case reqGetConfig, reqSetConfig:
		if len(b) < sizeConfigHdr {
			err = size(sizeConfigHdr)
			break
		}
		m.config.Offset = binary.NativeEndian.Uint32(b)
		m.config.Size = binary.NativeEndian.Uint32(b[4:])
		m.config.Flags = binary.NativeEndian.Uint32(b[8:])
		if m.config.Size > maxPayload-sizeConfigHdr {
			err = fmt.Errorf("%w: config size %d", ErrBadSize, m.config.Size)
			break
		}
		if err = both(sizeConfigHdr+int(m.config.Size), 0); err == nil {
			m.config.Data = b[sizeConfigHdr:]
		}
	default:
		err = fmt.Errorf("%w: %s", ErrUnknown, reqName(h.Request))
	}
	if err != nil {
		return nil, err
	}
	return m, nil
}
