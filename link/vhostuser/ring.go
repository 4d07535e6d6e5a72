package vhostuser

import (
	"encoding/binary"
	"errors"
	"sync/atomic"
	"unsafe"
)

// Split virtqueue layout (virtio 1.x, 2.7): a descriptor table of 16-byte
// entries, the available ring the driver (the guest) fills and the used
// ring the device (slipway) fills, all little-endian in guest memory.
const (
	descSize = 16

	descFNext     = 1
	descFWrite    = 2
	descFIndirect = 4

	usedFNoNotify     = 1
	availFNoInterrupt = 1

	maxRingSize = 32768
	// maxChainDescs bounds the descriptors of one chain, direct and
	// indirect together: QEMU refuses more than 1024 too, and a frame
	// never needs more than a few dozen.
	maxChainDescs = 1024
)

// Why a descriptor chain is refused. Each is counted against the guest,
// and the chain is given back unused.
var (
	errHeadRange       = errors.New("head index outside the ring")
	errNextRange       = errors.New("next index outside the table")
	errDescAddr        = errors.New("buffer outside guest memory or across regions")
	errChainLoop       = errors.New("chain loops or is longer than the ring")
	errIndirectOff     = errors.New("indirect descriptor without INDIRECT_DESC")
	errIndirectNested  = errors.New("indirect table inside an indirect table")
	errIndirectNext    = errors.New("indirect descriptor with NEXT")
	errIndirectLen     = errors.New("indirect table length not a multiple of 16 or too long")
	errDescDirection   = errors.New("buffer of the wrong direction")
	errChainTooLarge   = errors.New("chain holds more than a frame")
	errAvailJump       = errors.New("available index moved by more than the ring size")
	errRingUnaligned   = errors.New("ring not aligned as virtio requires")
	errRingOutside     = errors.New("ring outside guest memory")
	errRingSizeInvalid = errors.New("ring size not a power of two up to 32768")
	errMemoryFault     = errors.New("fault in guest memory (its file shrank under the mapping)")
)

// ring is one split virtqueue as the device sees it. Its owner (a queue,
// under the queue's lock) is the only caller of its methods; the guest
// writes the same memory concurrently, so every index and descriptor is
// read once and checked before use.
type ring struct {
	num   uint16 // entries, a power of two
	desc  []byte // num*16
	avail []byte // 6+2*num: flags, idx, ring[num], used_event
	used  []byte // 6+8*num: flags, idx, {id, len}[num], avail_event
	mem   *memory

	eventIdx bool // VIRTIO_RING_F_EVENT_IDX
	indirect bool // VIRTIO_RING_F_INDIRECT_DESC

	// dlog, while the front-end logs dirty pages, gets every page the
	// device writes; usedLog is the used ring's guest-physical address
	// there (the vring address's log field), logged when logUsed.
	dlog    *dirtyLog
	usedLog uint64
	logUsed bool

	lastAvail uint16 // the next available entry to take
	usedIdx   uint16 // the next used entry to fill
	usedFlags uint16
	// signalled is the used index at the last interrupt, for EVENT_IDX
	// (valid once signalledOK).
	signalled   uint16
	signalledOK bool
}

// newRing lays a ring of num entries over the areas at the front-end
// virtual addresses in a, translated through mem.
func newRing(mem *memory, num uint16, a vringAddr) (*ring, error) {
	if num == 0 || num&(num-1) != 0 || num > maxRingSize {
		return nil, errRingSizeInvalid
	}
	n := uint64(num)
	desc, ok1 := mem.user(a.Desc, n*descSize)
	avail, ok2 := mem.user(a.Avail, 6+2*n)
	used, ok3 := mem.user(a.Used, 6+8*n)
	if !ok1 || !ok2 || !ok3 {
		return nil, errRingOutside
	}
	// The used ring's flags and index are stored as one aligned 32-bit
	// word; the available index is read as one (see load16).
	if uintptr(unsafe.Pointer(&used[0]))%4 != 0 || uintptr(unsafe.Pointer(&avail[0]))%2 != 0 {
		return nil, errRingUnaligned
	}
	return &ring{num: num, desc: desc, avail: avail, used: used, mem: mem}, nil
}

// start takes the ring over where its used index stands. slipway
// finishes each chain in the call that takes it, so the used index is
// also where taking resumes: the base SET_VRING_BASE gave is the same
// number unless a back-end died between taking chains and returning them,
// and then those chains are taken again (libvhost-user does the same).
func (r *ring) start() {
	r.usedIdx = load16(r.used, 2)
	r.lastAvail = r.usedIdx
	r.signalledOK = false
}

// pending is how many entries the driver has made available and the
// device not taken yet. An index that moved further than the ring holds
// breaks the ring: its contents cannot be trusted any more.
func (r *ring) pending() (uint16, error) {
	n := load16(r.avail, 2) - r.lastAvail
	if n > r.num {
		return 0, errAvailJump
	}
	return n, nil
}

// headAt is the head of the i-th pending chain.
func (r *ring) headAt(i uint16) uint16 {
	slot := (r.lastAvail + i) & (r.num - 1)
	return binary.LittleEndian.Uint16(r.avail[4+2*int(slot):])
}

// chain is a descriptor chain's buffers in guest memory.
type chain struct {
	head  uint16
	bufs  [][]byte
	addrs []uint64 // each buffer's guest-physical address
	size  int
	err   error // why the chain is refused; nil if usable
	// written counts the bytes put into a receive chain.
	written int
}

// walk collects the buffers of the chain at head into c, refusing chains
// that break the rules (c.err): buffers must all be device-writable
// (receive) or all readable (transmit), each inside one region; indirect
// tables only when negotiated, never nested; no more than maxChainDescs
// descriptors and, for a readable chain, no more than limit bytes.
func (r *ring) walk(head uint16, c *chain, writable bool, limit int) {
	c.head, c.bufs, c.addrs, c.size, c.err, c.written = head, c.bufs[:0], c.addrs[:0], 0, nil, 0
	if head >= r.num {
		c.err = errHeadRange
		return
	}
	table, entries := r.desc, int(r.num)
	inIndirect := false
	i := int(head)
	for count := 0; ; count++ {
		// A direct chain longer than the table must revisit an entry:
		// a loop. An indirect one is bounded by its table.
		if count >= entries || count >= maxChainDescs {
			c.err = errChainLoop
			return
		}
		d := table[i*descSize : i*descSize+descSize]
		addr := binary.LittleEndian.Uint64(d[0:])
		length := binary.LittleEndian.Uint32(d[8:])
		flags := binary.LittleEndian.Uint16(d[12:])
		next := binary.LittleEndian.Uint16(d[14:])
		if flags&descFIndirect != 0 {
			switch {
			case !r.indirect:
				c.err = errIndirectOff
			case inIndirect:
				c.err = errIndirectNested
			case flags&descFNext != 0:
				c.err = errIndirectNext
			case length == 0 || length%descSize != 0 || length/descSize > maxChainDescs:
				c.err = errIndirectLen
			}
			if c.err != nil {
				return
			}
			t, ok := r.mem.guest(addr, uint64(length))
			if !ok {
				c.err = errDescAddr
				return
			}
			table, entries, i, inIndirect = t, int(length/descSize), 0, true
			count = -1 // the table's entries count afresh
			continue
		}
		if (flags&descFWrite != 0) != writable {
			c.err = errDescDirection
			return
		}
		if length > 0 {
			b, ok := r.mem.guest(addr, uint64(length))
			if !ok {
				c.err = errDescAddr
				return
			}
			if len(c.bufs) >= maxChainDescs {
				c.err = errChainLoop
				return
			}
			c.bufs = append(c.bufs, b)
			c.addrs = append(c.addrs, addr)
			c.size += int(length)
			if !writable && c.size > limit {
				c.err = errChainTooLarge
				return
			}
		}
		if flags&descFNext == 0 {
			return
		}
		if int(next) >= entries {
			c.err = errNextRange
			return
		}
		i = int(next)
	}
}

// take marks n pending entries taken.
func (r *ring) take(n uint16) { r.lastAvail += n }

// putUsed returns a chain to the driver with length bytes written into
// it; the driver sees it at the next publish.
func (r *ring) putUsed(head uint16, length uint32) {
	slot := int(r.usedIdx & (r.num - 1))
	e := r.used[4+8*slot : 4+8*slot+8]
	binary.LittleEndian.PutUint32(e[0:], uint32(head))
	binary.LittleEndian.PutUint32(e[4:], length)
	r.usedIdx++
}

// publish makes the used entries put so far visible to the driver.
func (r *ring) publish() {
	store32(r.used, r.usedFlags, r.usedIdx)
	r.markUsed()
}

// markUsed logs the used ring as written (all of it: a few pages, and
// only while a migration runs).
func (r *ring) markUsed() {
	if r.dlog != nil && r.logUsed {
		r.dlog.mark(r.usedLog, uint64(len(r.used)))
	}
}

// markWritten logs the pages of the first c.written bytes of a receive
// chain.
func (r *ring) markWritten(c *chain) {
	if r.dlog == nil {
		return
	}
	left := c.written
	for i, b := range c.bufs {
		if left == 0 {
			return
		}
		n := min(left, len(b))
		r.dlog.mark(c.addrs[i], uint64(n))
		left -= n
	}
}

// needSignal reports whether the driver wants an interrupt for the used
// entries published since the last one: with EVENT_IDX when the used
// index passed the driver's used_event, else unless it set NO_INTERRUPT.
func (r *ring) needSignal() bool {
	// The driver writes used_event (or its flags) and then reads the
	// used index: the same order in reverse here, with a full barrier
	// between the publish and the read.
	fence()
	if !r.eventIdx {
		return load16(r.avail, 0)&availFNoInterrupt == 0
	}
	old, valid := r.signalled, r.signalledOK
	r.signalled, r.signalledOK = r.usedIdx, true
	if !valid {
		return true
	}
	event := load16(r.avail, 4+2*int(r.num))
	return needEvent(event, r.usedIdx, old)
}

// needEvent is virtio's vring_need_event: whether moving an index from
// old to new passed event.
func needEvent(event, new, old uint16) bool {
	return new-event-1 < new-old
}

// notifyOn asks the driver to kick for the next entry it makes available
// and reports whether one came in meanwhile (then the caller takes it
// instead of waiting).
func (r *ring) notifyOn() (bool, error) {
	if r.eventIdx {
		binary.LittleEndian.PutUint16(r.used[4+8*int(r.num):], r.lastAvail)
	} else {
		r.usedFlags &^= usedFNoNotify
		store32(r.used, r.usedFlags, r.usedIdx)
	}
	r.markUsed()
	fence()
	n, err := r.pending()
	return n > 0, err
}

// notifyOff tells the driver not to kick while the device is busy with
// the ring anyway. With EVENT_IDX the old avail_event already lies behind
// the driver's index, so nothing needs writing.
func (r *ring) notifyOff() {
	if !r.eventIdx && r.usedFlags&usedFNoNotify == 0 {
		r.usedFlags |= usedFNoNotify
		store32(r.used, r.usedFlags, r.usedIdx)
		r.markUsed()
	}
}

// The guest reads and writes the rings concurrently from other CPUs: the
// indices are accessed with atomic 32-bit operations on aligned words
// (Go has no 16-bit atomics), which order the plain accesses around them
// as virtio's memory barriers do.

// fenceWord is the target of fence's atomic operation; its value does not
// matter, and it is shared by every link on purpose: any atomic
// read-modify-write is the full barrier wanted.
var fenceWord atomic.Uint32

// fence is a full memory barrier (a locked instruction on amd64, a
// load-acquire/store-release pair on arm64).
func fence() { fenceWord.Add(0) }

// load16 reads the little-endian u16 at b[off] with acquire ordering,
// through the aligned 32-bit word that holds it when that word lies
// within b.
func load16(b []byte, off int) uint16 {
	_ = b[off+1]
	p := unsafe.Pointer(&b[off])
	var w [4]byte
	switch uintptr(p) % 4 {
	case 0:
		if off+4 <= len(b) {
			binary.NativeEndian.PutUint32(w[:], atomic.LoadUint32((*uint32)(p)))
			return binary.LittleEndian.Uint16(w[0:])
		}
	case 2:
		if off >= 2 {
			binary.NativeEndian.PutUint32(w[:], atomic.LoadUint32((*uint32)(unsafe.Add(p, -2))))
			return binary.LittleEndian.Uint16(w[2:])
		}
	}
	fence()
	return binary.LittleEndian.Uint16(b[off:])
}

// store32 stores the used ring's flags and index as one aligned word
// (newRing checked the alignment), with release ordering.
func store32(used []byte, flags, idx uint16) {
	var w [4]byte
	binary.LittleEndian.PutUint16(w[0:], flags)
	binary.LittleEndian.PutUint16(w[2:], idx)
	_ = used[3]
	atomic.StoreUint32((*uint32)(unsafe.Pointer(&used[0])), binary.NativeEndian.Uint32(w[:]))
}
