package vhostfront

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Options shape the front-end and its guest driver.
type Options struct {
	// Features are the virtio features to acknowledge, of those the
	// back-end offers: Linux for a Linux guest, 0 for one that
	// acknowledges nothing (iPXE).
	Features uint64
	// Protocol are the protocol features to acknowledge (with
	// FProtoFeatures); all the package knows if 0.
	Protocol uint64
	// QueueSize is each ring's size (256 if 0).
	QueueSize uint16
	// MemSize is the guest memory's size (64 MiB if 0).
	MemSize int
	// Regions splits the memory into that many regions (1 or 2); with
	// two, Gap puts a hole between them in guest-physical space.
	Regions int
	Gap     bool
	// AddMemReg hands the regions over with ADD_MEM_REG (needs
	// CONFIGURE_MEM_SLOTS) instead of SET_MEM_TABLE.
	AddMemReg bool
	// SplitHeader puts each transmitted frame's virtio-net header in a
	// descriptor of its own (as older Linux drivers do); Indirect puts
	// each transmitted chain in an indirect table.
	SplitHeader, Indirect bool
	// RxSegs and RxSegSize shape each receive buffer: a chain of RxSegs
	// descriptors of RxSegSize bytes. Default: one 4 KiB descriptor with
	// MRG_RXBUF, else 17 of 4 KiB (Linux's "big packets") for a guest
	// that takes super-frames, one of 2 KiB for one that does not.
	RxSegs, RxSegSize int
	// NoEnable leaves the rings disabled (no SET_VRING_ENABLE).
	NoEnable bool
	// NoFill leaves the receive ring empty after SetupRings (the test
	// calls RX.Fill when it wants).
	NoFill bool
	// MTU, when set, is sent with NET_SET_MTU.
	MTU int
}

// Frontend is a connected front-end with its guest memory and rings.
type Frontend struct {
	Conn
	o Options

	Mem                      []byte // the guest memory, mapped here too
	memFD                    int
	regions                  []Region
	Offered, Acked           uint64 // virtio features
	ProtoOffered, ProtoAcked uint64
	hdrLen                   int

	RX, TX *Queue

	backend *os.File // our end of the back-end channel, if negotiated

	txMu     sync.Mutex
	txFree   []uint16 // free transmit slots
	txBusy   []bool   // by slot: on the ring
	txBase   int      // offset of the transmit slots' buffers
	txTables int      // offset of the slots' indirect tables
	rxBase   int

	frames  chan rxFrame
	Dropped atomic.Uint64 // received frames the test did not take in time
	closed  chan struct{}
	once    sync.Once
	wg      sync.WaitGroup
	rxErr   atomic.Value
}

type rxFrame struct {
	hdr   [12]byte
	frame []byte
}

const (
	uvaBase  = 0x7e00_0000_0000 // the "virtual addresses" this front-end reports
	gapStart = 1 << 32
	txSlot   = 17 << 12 // a frame and its header, page-rounded
)

// Dial connects to a back-end listening on path and sets everything up
// (see Start).
func Dial(path string, o Options) (*Frontend, error) {
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, err
	}
	f, err := New(c, o)
	if err != nil {
		c.Close()
		return nil, err
	}
	return f, f.Start()
}

// New prepares a front-end on a connected socket: guest memory and ring
// layout, nothing sent yet.
func New(c *net.UnixConn, o Options) (*Frontend, error) {
	if o.QueueSize == 0 {
		o.QueueSize = 256
	}
	if o.MemSize == 0 {
		o.MemSize = 64 << 20
	}
	if o.Regions == 0 {
		o.Regions = 1
	}
	if o.RxSegs == 0 {
		// As Linux sizes them: mergeable page-sized buffers; without
		// MRG_RXBUF, chains that hold 64 KiB if the guest takes
		// super-frames, else one small buffer per frame.
		switch {
		case o.Features&FMrgRxbuf != 0:
			o.RxSegs, o.RxSegSize = 1, 4096
		case o.Features&(FGuestTSO4|FGuestTSO6) != 0:
			o.RxSegs, o.RxSegSize = 17, 4096
		default:
			o.RxSegs, o.RxSegSize = 1, 2048
		}
	}
	if o.RxSegSize == 0 {
		o.RxSegSize = 4096
	}
	f := &Frontend{Conn: Conn{C: c}, o: o, memFD: -1, frames: make(chan rxFrame, 4096), closed: make(chan struct{})}
	fd, err := unix.MemfdCreate("vhostfront", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, err
	}
	f.memFD = fd
	if err := unix.Ftruncate(fd, int64(o.MemSize)); err != nil {
		f.Close()
		return nil, err
	}
	f.Mem, err = unix.Mmap(fd, 0, o.MemSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		f.Close()
		return nil, err
	}
	half := uint64(o.MemSize / 2)
	switch o.Regions {
	case 1:
		f.regions = []Region{{GuestAddr: 0, Size: uint64(o.MemSize), UserAddr: uvaBase}}
	default:
		second := half
		if o.Gap {
			second = gapStart
		}
		f.regions = []Region{
			{GuestAddr: 0, Size: half, UserAddr: uvaBase},
			{GuestAddr: second, Size: half, UserAddr: uvaBase + second, MmapOffset: half},
		}
	}
	// Layout: both rings, then receive buffers, then transmit slots and
	// their indirect tables.
	n := int(o.QueueSize)
	off := 0
	alloc := func(size int) int {
		at := off
		off += (size + 4095) &^ 4095
		return at
	}
	mk := func(index int) *Queue {
		q := &Queue{f: f, Index: index, N: o.QueueSize}
		q.descOff = alloc(16 * n)
		q.availOff = alloc(6 + 2*n)
		q.usedOff = alloc(6 + 8*n)
		q.Desc = f.Mem[q.descOff : q.descOff+16*n]
		q.Avail = f.Mem[q.availOff : q.availOff+6+2*n]
		q.Used = f.Mem[q.usedOff : q.usedOff+6+8*n]
		return q
	}
	f.RX, f.TX = mk(0), mk(1)
	f.rxBase = alloc(n / o.RxSegs * o.RxSegs * o.RxSegSize)
	f.txBase = alloc(n / 2 * txSlot)
	f.txTables = alloc(n / 2 * 64)
	if off > o.MemSize {
		f.Close()
		return nil, fmt.Errorf("vhostfront: %d bytes of memory hold no %d-entry rings", o.MemSize, n)
	}
	for s := n/2 - 1; s >= 0; s-- {
		f.txFree = append(f.txFree, uint16(s))
	}
	f.txBusy = make([]bool, n/2)
	for _, q := range []*Queue{f.RX, f.TX} {
		for _, p := range []*int{&q.kickFD, &q.callFD} {
			fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
			if err != nil {
				f.Close()
				return nil, err
			}
			*p = fd
		}
		q.call = os.NewFile(uintptr(q.callFD), "call")
	}
	return f, nil
}

// GPA is the guest-physical address of offset off in the memory.
func (f *Frontend) GPA(off int) uint64 {
	for _, r := range f.regions {
		if uint64(off) >= r.MmapOffset && uint64(off) < r.MmapOffset+r.Size {
			return r.GuestAddr + uint64(off) - r.MmapOffset
		}
	}
	return uint64(off)
}

// UVA is the front-end virtual address of offset off.
func (f *Frontend) UVA(off int) uint64 { return f.regions[0].UserAddr + f.GPA(off) }

// Regions are the memory regions as sent to the back-end.
func (f *Frontend) Regions() []Region { return f.regions }

// MemFD is the memory's descriptor, for messages a test builds itself.
func (f *Frontend) MemFD() int { return f.memFD }

// Start negotiates, hands over memory and rings and starts the receive
// loop, in QEMU's order.
func (f *Frontend) Start() error {
	if err := f.Negotiate(); err != nil {
		return err
	}
	if err := f.SetupMemory(); err != nil {
		return err
	}
	if err := f.SetupRings(); err != nil {
		return err
	}
	f.Run()
	return nil
}

// ack sends a request the back-end answers only when asked to (with
// REPLY_ACK negotiated the front-end asks, as QEMU does) and checks the
// answer.
func (f *Frontend) ack(req uint32, payload []byte, fds ...int) error {
	if f.ProtoAcked&PReplyAck == 0 {
		return f.Request(req, 0, payload, fds...)
	}
	r, err := f.Call(req, FlagNeedReply, payload, fds...)
	if err != nil {
		return err
	}
	if v, err := r.U64(); err != nil || v != 0 {
		return fmt.Errorf("request %d failed: %d %v", req, v, err)
	}
	return nil
}

// Negotiate reads the back-end's features and acknowledges the chosen
// ones.
func (f *Frontend) Negotiate() error {
	r, err := f.Call(GetFeatures, 0, nil)
	if err != nil {
		return err
	}
	if f.Offered, err = r.U64(); err != nil {
		return err
	}
	f.Acked = f.Offered & f.o.Features
	if f.Offered&FProtoFeatures != 0 && f.o.Features&FProtoFeatures != 0 {
		f.Acked |= FProtoFeatures
		r, err := f.Call(GetProtocolFeatures, 0, nil)
		if err != nil {
			return err
		}
		if f.ProtoOffered, err = r.U64(); err != nil {
			return err
		}
		want := f.o.Protocol
		if want == 0 {
			want = PReplyAck | PNetMTU | PConfig | PConfigureMemSlots | PStatus | PRARP | PBackendReq
		}
		f.ProtoAcked = f.ProtoOffered & want
		if err := f.Request(SetProtocolFeatures, 0, U64(f.ProtoAcked)); err != nil {
			return err
		}
		if f.ProtoAcked&PConfigureMemSlots != 0 {
			if _, err := f.Call(GetMaxMemSlots, 0, nil); err != nil {
				return err
			}
		}
		if f.ProtoAcked&PBackendReq != 0 {
			fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return err
			}
			err = f.ack(SetBackendReqFD, nil, fds[1])
			unix.Close(fds[1])
			if err != nil {
				unix.Close(fds[0])
				return err
			}
			unix.SetNonblock(fds[0], true) // for read deadlines
			f.backend = os.NewFile(uintptr(fds[0]), "back-end channel")
		}
	}
	if err := f.ack(SetOwner, nil); err != nil {
		return err
	}
	f.hdrLen = 12
	if f.Acked&(FVersion1|FMrgRxbuf) == 0 {
		f.hdrLen = 10
	}
	return f.ack(SetFeatures, U64(f.Acked))
}

// SetupMemory sends the memory table.
func (f *Frontend) SetupMemory() error {
	if f.o.AddMemReg {
		for _, r := range f.regions {
			if err := f.ack(AddMemReg, SingleRegion(r), f.memFD); err != nil {
				return err
			}
		}
		return nil
	}
	fds := make([]int, len(f.regions))
	for i := range fds {
		fds[i] = f.memFD
	}
	return f.ack(SetMemTable, MemTable(f.regions...), fds...)
}

// SetupRings sets up both rings, fills the receive ring and enables them.
func (f *Frontend) SetupRings() error {
	if f.o.MTU != 0 && f.ProtoAcked&PNetMTU != 0 {
		if err := f.ack(NetSetMTU, U64(uint64(f.o.MTU))); err != nil {
			return err
		}
	}
	for _, q := range []*Queue{f.RX, f.TX} {
		if err := q.setup(); err != nil {
			return err
		}
	}
	if !f.o.NoFill {
		f.RX.Fill()
	}
	if f.Acked&FProtoFeatures != 0 && !f.o.NoEnable {
		for _, q := range []*Queue{f.RX, f.TX} {
			if err := f.ack(SetVringEnable, State(uint32(q.Index), 1)); err != nil {
				return err
			}
		}
	}
	return nil
}

// StartLog does what QEMU does when a migration starts: it hands the
// back-end a dirty-page bitmap (a memfd, one bit per 4 KiB page of the
// guest memory) with SET_LOG_BASE, acknowledges LOG_ALL (unless noLogAll)
// and re-sends each ring's addresses with the used ring's logging on.
// It returns the bitmap, mapped. LOG_SHMFD must have been acknowledged.
func (f *Frontend) StartLog(noLogAll bool) ([]byte, error) {
	var top uint64
	for _, r := range f.regions {
		top = max(top, r.GuestAddr+r.Size)
	}
	pages := (top + 4095) / 4096
	size := (pages + 63) / 64 * 8
	fd, err := unix.MemfdCreate("vhostfront-log", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		return nil, err
	}
	bitmap, err := unix.Mmap(fd, 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, err
	}
	payload := binary.NativeEndian.AppendUint64(U64(size), 0)
	r, err := f.Call(SetLogBase, 0, payload, fd)
	if err != nil {
		return nil, err
	}
	if v, err := r.U64(); err != nil || v != 0 {
		return nil, fmt.Errorf("SET_LOG_BASE failed: %d %v", v, err)
	}
	if !noLogAll {
		// Not recorded in Acked: the receiver reads that meanwhile.
		if err := f.ack(SetFeatures, U64(f.Acked|FLogAll)); err != nil {
			return nil, err
		}
	}
	for _, q := range []*Queue{f.RX, f.TX} {
		a := Addr(uint32(q.Index), 1, f.UVA(q.descOff), f.UVA(q.usedOff), f.UVA(q.availOff), f.GPA(q.usedOff))
		if err := f.ack(SetVringAddr, a); err != nil {
			return nil, err
		}
	}
	return bitmap, nil
}

// DriverPages are the pages the front-end itself writes (descriptor
// tables, available rings, transmit buffers and their indirect tables),
// by page index of its memory.
func (f *Frontend) DriverPages() map[int]bool {
	m := map[int]bool{}
	n := int(f.TX.N)
	areas := [][2]int{{f.txBase, n / 2 * txSlot}, {f.txTables, n / 2 * 64}}
	for _, q := range []*Queue{f.RX, f.TX} {
		areas = append(areas, [2]int{q.descOff, len(q.Desc)}, [2]int{q.availOff, len(q.Avail)})
	}
	for _, a := range areas {
		for p := a[0] / 4096; p <= (a[0]+a[1]-1)/4096; p++ {
			m[p] = true
		}
	}
	return m
}

// BackendRequest waits up to d for the back-end's next request on the
// back-end channel (CONFIG_CHANGE_MSG is 2) and returns its number.
func (f *Frontend) BackendRequest(d time.Duration) (uint32, error) {
	if f.backend == nil {
		return 0, fmt.Errorf("vhostfront: no back-end channel (BACKEND_REQ not negotiated)")
	}
	f.backend.SetReadDeadline(time.Now().Add(d))
	var h [12]byte
	if _, err := io.ReadFull(f.backend, h[:]); err != nil {
		return 0, err
	}
	if size := binary.NativeEndian.Uint32(h[8:]); size > 0 {
		if _, err := io.CopyN(io.Discard, f.backend, int64(size)); err != nil {
			return 0, err
		}
	}
	return binary.NativeEndian.Uint32(h[0:]), nil
}

// DeviceConfig reads the device's link status and MTU from its
// configuration space (GET_CONFIG), as crosvm does.
func (f *Frontend) DeviceConfig() (up bool, mtu int, err error) {
	req := make([]byte, 12+12)
	binary.NativeEndian.PutUint32(req[4:], 12) // offset 0, size 12, flags 0
	r, err := f.Call(GetConfig, 0, req)
	if err != nil {
		return false, 0, err
	}
	if len(r.Payload) < 12+12 {
		return false, 0, fmt.Errorf("vhostfront: GET_CONFIG answered %d bytes", len(r.Payload))
	}
	cfg := r.Payload[12:]
	return binary.LittleEndian.Uint16(cfg[6:])&1 != 0, int(binary.LittleEndian.Uint16(cfg[10:])), nil
}

// Run starts taking received frames.
func (f *Frontend) Run() {
	f.wg.Add(1)
	go f.receive()
}

// HdrLen is the virtio-net header's length on this connection.
func (f *Frontend) HdrLen() int { return f.hdrLen }

// Send transmits a frame with an empty virtio-net header (guestpeer.Wire).
func (f *Frontend) Send(frame []byte) error { return f.SendOffload(nil, frame) }

// SendOffload transmits a frame with the given header (12 bytes; nil for
// an empty one).
func (f *Frontend) SendOffload(hdr, frame []byte) error {
	if len(frame)+12 > txSlot {
		return fmt.Errorf("vhostfront: frame of %d bytes", len(frame))
	}
	f.txMu.Lock()
	defer f.txMu.Unlock()
	select {
	case <-f.closed:
		return net.ErrClosed
	default:
	}
	q := f.TX
	deadline := time.Now().Add(10 * time.Second)
	for {
		for {
			id, _, ok := q.NextUsed()
			if !ok {
				break
			}
			// Chains a test put on the ring by hand come back too;
			// only the slots' own free their slot.
			if s := int(id / 2); s < len(f.txBusy) && f.txBusy[s] {
				f.txBusy[s] = false
				f.txFree = append(f.txFree, uint16(s))
			}
		}
		if len(f.txFree) > 0 {
			break
		}
		if !q.armCall() {
			continue
		}
		if err := q.waitCall(deadline); err != nil {
			return fmt.Errorf("vhostfront: no transmit buffer came back: %w", err)
		}
	}
	s := f.txFree[len(f.txFree)-1]
	f.txFree = f.txFree[:len(f.txFree)-1]
	f.txBusy[s] = true
	buf := f.txBase + int(s)*txSlot
	var h [12]byte
	copy(h[:], hdr)
	copy(f.Mem[buf:], h[:f.hdrLen])
	copy(f.Mem[buf+f.hdrLen:], frame)
	type piece struct {
		off, n int
	}
	pieces := []piece{{buf, f.hdrLen + len(frame)}}
	if f.o.SplitHeader {
		pieces = []piece{{buf, f.hdrLen}, {buf + f.hdrLen, len(frame)}}
	}
	head := 2 * s
	if f.o.Indirect {
		table := f.txTables + int(s)*64
		for i, p := range pieces {
			var flags uint16
			if i+1 < len(pieces) {
				flags = 1
			}
			PutDesc(f.Mem[table+16*i:], f.GPA(p.off), uint32(p.n), flags, uint16(i+1))
		}
		q.SetDesc(head, f.GPA(table), uint32(16*len(pieces)), 4, 0)
	} else {
		for i, p := range pieces {
			var flags uint16
			if i+1 < len(pieces) {
				flags = 1
			}
			q.SetDesc(head+uint16(i), f.GPA(p.off), uint32(p.n), flags, head+uint16(i)+1)
		}
	}
	q.Publish(head)
	return nil
}

// RawTX runs fn with the transmit ring to itself: a test writes
// descriptors and publishes heads of its own (descriptors of free slots,
// say the last ones, are not in use). What comes back for them is ignored.
func (f *Frontend) RawTX(fn func(q *Queue)) {
	f.txMu.Lock()
	defer f.txMu.Unlock()
	fn(f.TX)
}

// Recv returns the next received frame without its header
// (guestpeer.Wire).
func (f *Frontend) Recv(buf []byte) (int, error) {
	_, n, err := f.RecvOffload(buf)
	return n, err
}

// RecvOffload returns the next received frame and its header.
func (f *Frontend) RecvOffload(buf []byte) ([12]byte, int, error) {
	return f.recv(buf, nil)
}

// RecvTimeout is RecvOffload with a deadline.
func (f *Frontend) RecvTimeout(buf []byte, d time.Duration) ([12]byte, int, error) {
	t := time.NewTimer(d)
	defer t.Stop()
	return f.recv(buf, t.C)
}

// recv waits for a frame until the front-end closes or timeout fires (a
// nil timeout never does). Closed, it says why the receiver stopped if
// it failed.
func (f *Frontend) recv(buf []byte, timeout <-chan time.Time) ([12]byte, int, error) {
	select {
	case fr := <-f.frames:
		return fr.hdr, copy(buf, fr.frame), nil
	case <-f.closed:
		if err, _ := f.rxErr.Load().(error); err != nil {
			return [12]byte{}, 0, err
		}
		return [12]byte{}, 0, net.ErrClosed
	case <-timeout:
		return [12]byte{}, 0, os.ErrDeadlineExceeded
	}
}

// receive takes used receive buffers, reassembles frames (num_buffers)
// and gives the buffers back, waiting on the call eventfd when there is
// nothing.
func (f *Frontend) receive() {
	defer f.wg.Done()
	q := f.RX
	mrg := f.Acked&FMrgRxbuf != 0
	for {
		id, n, ok := q.NextUsed()
		if !ok {
			if !q.armCall() {
				continue
			}
			if err := q.waitCall(time.Time{}); err != nil {
				select {
				case <-f.closed:
				default:
					f.rxErr.Store(err)
				}
				return
			}
			continue
		}
		if int(id)%f.o.RxSegs != 0 || int(id)/f.o.RxSegs >= int(q.N)/f.o.RxSegs {
			continue // a chain a test made by hand
		}
		var fr rxFrame
		bufs := 1
		data := f.rxData(id, n)
		if len(data) < f.hdrLen {
			q.repost(id)
			continue
		}
		copy(fr.hdr[:], data[:f.hdrLen])
		if mrg {
			bufs = int(binary.LittleEndian.Uint16(data[10:]))
		}
		fr.frame = append(fr.frame, data[f.hdrLen:]...)
		q.repost(id)
		for i := 1; i < bufs; i++ {
			id, n, ok := q.NextUsed()
			for !ok {
				// The rest of the frame is published together;
				// a short wait for a slow publisher only.
				runtimeYield()
				id, n, ok = q.NextUsed()
			}
			fr.frame = append(fr.frame, f.rxData(id, n)...)
			q.repost(id)
		}
		select {
		case f.frames <- fr:
		default:
			f.Dropped.Add(1)
		}
	}
}

func runtimeYield() { time.Sleep(time.Microsecond) }

// rxData is what the back-end wrote into the receive chain at head.
func (f *Frontend) rxData(head uint16, n uint32) []byte {
	b := int(head) / f.o.RxSegs
	size := f.o.RxSegs * f.o.RxSegSize
	if int(n) > size {
		n = uint32(size)
	}
	off := f.rxBase + b*size
	return f.Mem[off : off+int(n)]
}

// Close hangs up and releases the memory and eventfds.
func (f *Frontend) Close() error {
	var err error
	f.once.Do(func() {
		close(f.closed)
		if f.C != nil {
			err = f.C.Close()
		}
		if f.backend != nil {
			f.backend.Close()
		}
		for _, q := range []*Queue{f.RX, f.TX} {
			if q == nil {
				continue
			}
			if q.call != nil {
				q.call.Close()
			}
			if q.kickFD >= 0 {
				unix.Close(q.kickFD)
			}
		}
		f.wg.Wait()
		// A sender holds txMu while it touches the memory.
		f.txMu.Lock()
		if f.Mem != nil {
			unix.Munmap(f.Mem)
			f.Mem = nil
		}
		f.txMu.Unlock()
		if f.memFD >= 0 {
			unix.Close(f.memFD)
		}
	})
	return err
}

// Queue is the driver's side of one ring, with raw access for tests.
type Queue struct {
	f     *Frontend
	Index int
	N     uint16

	Desc, Avail, Used          []byte
	descOff, availOff, usedOff int
	kickFD, callFD             int
	call                       *os.File
	availIdx, lastUsed         uint16
}

func (q *Queue) setup() error {
	f := q.f
	for _, m := range []struct {
		req     uint32
		payload []byte
	}{
		{SetVringNum, State(uint32(q.Index), uint32(q.N))},
		{SetVringBase, State(uint32(q.Index), uint32(q.availIdx))},
		{SetVringAddr, Addr(uint32(q.Index), 0, f.UVA(q.descOff), f.UVA(q.usedOff), f.UVA(q.availOff), 0)},
	} {
		if err := f.ack(m.req, m.payload); err != nil {
			return err
		}
	}
	if err := f.ack(SetVringKick, U64(uint64(q.Index)), q.kickFD); err != nil {
		return err
	}
	return f.ack(SetVringCall, U64(uint64(q.Index)), q.callFD)
}

// KickFD and CallFD are the ring's eventfds (the front-end's copies).
func (q *Queue) KickFD() int { return q.kickFD }
func (q *Queue) CallFD() int { return q.callFD }

// Fill gives the back-end every receive buffer.
func (q *Queue) Fill() {
	for b := 0; b < int(q.N)/q.f.o.RxSegs; b++ {
		q.post(uint16(b*q.f.o.RxSegs), false)
	}
	q.KickIfNeeded(0)
}

// post lays out receive buffer chain head and makes it available.
func (q *Queue) post(head uint16, kick bool) {
	f := q.f
	segs, size := f.o.RxSegs, f.o.RxSegSize
	b := int(head) / segs
	for i := 0; i < segs; i++ {
		var flags uint16 = 2
		if i+1 < segs {
			flags |= 1
		}
		off := f.rxBase + (b*segs+i)*size
		q.SetDesc(head+uint16(i), f.GPA(off), uint32(size), flags, head+uint16(i)+1)
	}
	old := q.availIdx
	q.putAvail(head)
	if kick {
		q.KickIfNeeded(old)
	}
}

func (q *Queue) repost(head uint16) { q.post(head, true) }

// PutDesc writes a descriptor at b.
func PutDesc(b []byte, addr uint64, n uint32, flags, next uint16) {
	binary.LittleEndian.PutUint64(b[0:], addr)
	binary.LittleEndian.PutUint32(b[8:], n)
	binary.LittleEndian.PutUint16(b[12:], flags)
	binary.LittleEndian.PutUint16(b[14:], next)
}

// SetDesc writes descriptor i of the ring's table.
func (q *Queue) SetDesc(i uint16, addr uint64, n uint32, flags, next uint16) {
	PutDesc(q.Desc[16*int(i):], addr, n, flags, next)
}

// Publish makes head available and kicks as the back-end asked.
func (q *Queue) Publish(heads ...uint16) {
	old := q.availIdx
	for _, h := range heads {
		q.putAvail(h)
	}
	q.KickIfNeeded(old)
}

func (q *Queue) putAvail(head uint16) {
	binary.LittleEndian.PutUint16(q.Avail[4+2*int(q.availIdx%q.N):], head)
	q.availIdx++
	q.SetAvailIdx(q.availIdx)
}

// SetAvailIdx stores the available index (release), whatever it is.
func (q *Queue) SetAvailIdx(v uint16) {
	q.availIdx = v
	var w [4]byte
	copy(w[:2], q.Avail[:2])
	binary.LittleEndian.PutUint16(w[2:], v)
	atomic.StoreUint32((*uint32)(unsafe.Pointer(&q.Avail[0])), binary.NativeEndian.Uint32(w[:]))
}

// AvailIdx is the driver's available index.
func (q *Queue) AvailIdx() uint16 { return q.availIdx }

// UsedIdx reads the device's used index (acquire).
func (q *Queue) UsedIdx() uint16 {
	var w [4]byte
	binary.NativeEndian.PutUint32(w[:], atomic.LoadUint32((*uint32)(unsafe.Pointer(&q.Used[0]))))
	return binary.LittleEndian.Uint16(w[2:])
}

// NextUsed takes the next used entry, if there is one.
func (q *Queue) NextUsed() (id uint16, n uint32, ok bool) {
	if q.UsedIdx() == q.lastUsed {
		return 0, 0, false
	}
	e := q.Used[4+8*int(q.lastUsed%q.N):]
	q.lastUsed++
	return uint16(binary.LittleEndian.Uint32(e)), binary.LittleEndian.Uint32(e[4:]), true
}

// KickIfNeeded kicks the back-end for entries made available since old,
// unless it asked not to be (NO_NOTIFY, or its avail_event with
// EVENT_IDX).
func (q *Queue) KickIfNeeded(old uint16) {
	fence()
	if q.f.Acked&FEventIdx != 0 {
		ev := binary.LittleEndian.Uint16(q.Used[4+8*int(q.N):])
		if q.availIdx-ev-1 >= q.availIdx-old {
			return
		}
	} else if binary.LittleEndian.Uint16(q.Used[0:])&1 != 0 {
		return
	}
	q.Kick()
}

// Kick signals the kick eventfd.
func (q *Queue) Kick() {
	one := [8]byte{1}
	unix.Write(q.kickFD, one[:])
}

// armCall asks for an interrupt at the next used entry; false if one
// came in meanwhile.
func (q *Queue) armCall() bool {
	if q.f.Acked&FEventIdx != 0 {
		binary.LittleEndian.PutUint16(q.Avail[4+2*int(q.N):], q.lastUsed)
	}
	fence()
	return q.UsedIdx() == q.lastUsed
}

// waitCall waits for an interrupt (until deadline, if set).
func (q *Queue) waitCall(deadline time.Time) error {
	if !deadline.IsZero() {
		q.call.SetReadDeadline(deadline)
		defer q.call.SetReadDeadline(time.Time{})
	}
	var v [8]byte
	_, err := q.call.Read(v[:])
	return err
}

// Interrupts reads and clears the call eventfd's count, without waiting.
func (q *Queue) Interrupts() uint64 {
	var v [8]byte
	n, err := unix.Read(q.callFD, v[:])
	if err != nil || n != 8 {
		return 0
	}
	return binary.NativeEndian.Uint64(v[:])
}

var fenceWord atomic.Uint32

func fence() { fenceWord.Add(0) }
