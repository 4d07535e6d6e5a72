// Package vhostuser is a vhost-user-net back-end: a link whose frames
// travel through a VM's own virtqueues in its shared memory, as QEMU,
// cloud-hypervisor and crosvm hand them over with `-netdev vhost-user`.
// slipway reads the guest's transmit ring and fills its receive ring
// itself; the VMM copies nothing, and checksum and TCP segmentation
// offloads work in both directions.
//
// One Link serves one connection (one VM's network device): the
// front-end's messages on the unix socket set it up (features, memory
// table, rings, eventfds), and the data path runs in the callers of Read
// and Write.
//
// # Offloads
//
// Offloads reports whether Write may be given frames with partial
// checksums and TCP super-frames: true once the guest acknowledged
// GUEST_CSUM, GUEST_TSO4 and GUEST_TSO6. Anything less and the switch
// completes checksums and cuts super-frames before Write, as for a
// stream link; iPXE, which acknowledges nothing, gets plain frames. The
// other direction needs no flag: with CSUM (and HOST_TSO4/6) the guest
// sends partial checksums (and super-frames), and Read passes them on in
// the frame's virtio-net header, which says what the frame carries;
// without, the headers Read returns are clear.
//
// # Concurrency
//
// Three kinds of goroutine touch a Link:
//   - the message loop (one per link, started by New) handles the
//     front-end's requests and is the only writer of the configuration;
//   - the reader (the switch's port goroutine) calls Read, which takes
//     frames from the transmit ring;
//   - writers (any goroutine the switch sends from) call Write, which
//     fills the receive ring.
//
// Each queue has a mutex. The data path holds its queue's mutex while it
// touches the ring or guest memory, and never while it waits. The message
// loop holds a queue's mutex to change that queue, and every queue's
// mutex (in index order) to change what they share: the features and the
// memory table. So a region is unmapped only when no data path can be
// inside it. The reader waits for the guest's kicks on the transmit
// ring's kick eventfd in the Go runtime's poller, not on a goroutine of
// its own; the message loop wakes it by writing that eventfd (or, before
// there is one, through a channel). Receive kicks are not waited for: a
// frame that finds no buffer is dropped (ErrQueueFull), and the guest is
// asked not to kick the receive ring at all.
package vhostuser

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/slipway-net/slipway/link"
)

// batchSize is how many frames one Read takes from the transmit ring.
const batchSize = 32

// Options configures a Link.
type Options struct {
	// Name describes the link in logs and the control API.
	Name string
	// Logger receives the link's messages (none if nil).
	Logger *slog.Logger
	// MAC is the address the device reports to front-ends that read it
	// from the back-end (crosvm, cloud-hypervisor); QEMU uses its own.
	// A random locally administered one if nil.
	MAC net.HardwareAddr
	// MTU, if set, is offered to the guest (VIRTIO_NET_F_MTU, and
	// GET_CONFIG's mtu): the network's, which DHCP advertises too. Unset,
	// the feature is not offered, since a guest takes the device's MTU
	// as its largest.
	MTU int
	// Queues is how many queue pairs the device offers (1 if 0, at most
	// MaxQueues). With more than one it offers MQ; each pair's transmit
	// ring is read by ReadQueue on a goroutine of its own, and Write
	// keeps each flow on one pair's receive ring.
	Queues int
}

// MaxQueues bounds the queue pairs of one device.
const MaxQueues = 16

// Link is one front-end connection's network device.
type Link struct {
	conn *net.UnixConn
	name string
	log  *slog.Logger
	mac  net.HardwareAddr
	mtu  int

	// The message loop's own state.
	protocol  uint64 // acknowledged protocol features
	status    uint8  // SET_STATUS's device status
	owner     bool
	guestMTU  int
	msgBuf    []byte
	oob       []byte
	offered   uint64
	protoOffr uint64

	// Shared with the data path: written under every queue's mutex.
	features uint64
	hdrLen   int // the virtio-net header's size: 12, or 10 for a legacy guest
	mem      *memory
	dlog     *dirtyLog // the front-end's dirty-page log, if it gave one

	queues   []*queue // even indices receive (to the guest), odd transmit
	offloads atomic.Bool

	// inject holds frames slipway makes up on the guest's behalf (the
	// RARP announcement after a migration), read before the ring.
	injectMu sync.Mutex
	inject   [][]byte

	endOnce  sync.Once
	ended    chan struct{} // closed when the link ends
	endErr   error         // why; set before ended is closed
	loopDone chan struct{}

	counters link.Counters

	// The back-end channel (SET_BACKEND_REQ_FD), written by the message
	// loop and by SetCarrier.
	backendMu     sync.Mutex
	backend       *os.File
	backendConfig bool // the front-end takes CONFIG_CHANGE_MSG
	carrierDown   atomic.Bool
}

// queue is one virtqueue with what the front-end configured for it.
type queue struct {
	mu    sync.Mutex
	index int

	num     uint16
	addr    vringAddr
	addrSet bool
	base    uint16
	kick    *os.File // nil without one
	kickFD  int      // kick's descriptor, for waking the reader; -1 without one
	poll    bool     // the front-end will not kick: poll
	call    int      // -1 without one
	errFD   int
	enabled bool // SET_VRING_ENABLE
	ring    *ring
	// broken is why the guest's ring cannot be used any more (nil if it
	// can); it stays until the front-end sets the ring up again.
	broken error

	// wake (transmit queues) is signalled when the ring changes, for a
	// reader that has no kick eventfd to wait on.
	wake chan struct{}

	// The data path's scratch.
	chain  chain
	window []chain
}

// New serves the vhost-user front-end on c, which it owns from now on.
// The message loop starts at once; Read blocks until the guest's rings
// are up.
func New(c *net.UnixConn, o Options) *Link {
	l := &Link{
		conn:     c,
		name:     o.Name,
		log:      o.Logger,
		mac:      o.MAC,
		mtu:      o.MTU,
		msgBuf:   make([]byte, maxPayload),
		oob:      make([]byte, oobSize),
		hdrLen:   link.VnetHdrLen,
		ended:    make(chan struct{}),
		loopDone: make(chan struct{}),
	}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	if l.name == "" {
		l.name = "vhost-user"
	}
	if len(l.mac) != 6 {
		l.mac = make(net.HardwareAddr, 6)
		rand.Read(l.mac)
		l.mac[0] = l.mac[0]&^1 | 2 // unicast, locally administered
	}
	l.offered = offeredFeatures
	if l.mtu > 0 {
		l.offered |= fMTU
	}
	l.protoOffr = offeredProtocol
	pairs := min(max(o.Queues, 1), MaxQueues)
	if pairs > 1 {
		// With one pair MQ is not offered at all: cloud-hypervisor and
		// crosvm read GET_QUEUE_NUM as virtqueues, QEMU as pairs.
		l.offered |= fMQ
		l.protoOffr |= pMQ
	}
	for i := 0; i < 2*pairs; i++ {
		l.queues = append(l.queues, &queue{index: i, kickFD: -1, call: -1, errFD: -1, wake: make(chan struct{}, 1)})
	}
	go l.serve()
	return l
}

// The device offers the features the data path honours; the guest and
// the front-end pick from them.
const (
	offeredFeatures = fVersion1 | fProtoFeatures | fMrgRxbuf | fEventIdx | fIndirectDesc |
		fCsum | fGuestCsum | fHostTSO4 | fHostTSO6 | fGuestTSO4 | fGuestTSO6 | fMAC | fStatus | fLogAll
	offeredProtocol = pReplyAck | pLogShmFD | pNetMTU | pBackendReq | pConfig | pConfigureMemSlots | pStatus | pRARP
)

func (l *Link) rxq(pair int) *queue { return l.queues[2*pair] }
func (l *Link) txq(pair int) *queue { return l.queues[2*pair+1] }

// Queues is how many queue pairs the device has; ReadQueue reads pair i's
// transmit ring.
func (l *Link) Queues() int { return len(l.queues) / 2 }

// lockAll takes every queue's mutex, for a change the data path shares.
func (l *Link) lockAll() {
	for _, q := range l.queues {
		q.mu.Lock()
	}
}

func (l *Link) unlockAll() {
	for i := len(l.queues) - 1; i >= 0; i-- {
		l.queues[i].mu.Unlock()
	}
}

// end stops the link for good: the reader returns err, writers fail,
// every eventfd is closed and the memory unmapped.
func (l *Link) end(err error) {
	l.endOnce.Do(func() {
		l.lockAll()
		l.endErr = err
		close(l.ended)
		for _, q := range l.queues {
			q.stop()
			q.closeFDs()
		}
		l.mem.unmapAll()
		l.mem = nil
		l.dlog.unmap()
		l.dlog = nil
		for _, q := range l.queues {
			if q.ring != nil {
				q.ring.dlog = nil
			}
		}
		l.unlockAll()
		l.wakeReader()
		l.backendMu.Lock()
		if l.backend != nil {
			l.backend.Close()
			l.backend = nil
		}
		l.backendMu.Unlock()
		l.injectMu.Lock()
		l.inject = nil
		l.injectMu.Unlock()
	})
}

// isEnded reports whether the link ended; the caller holds a queue's
// mutex (end sets endErr under all of them).
func (l *Link) isEnded() bool { return l.endErr != nil }

// wakeReader makes every waiting reader look at its transmit ring again.
func (l *Link) wakeReader() {
	for i := range l.Queues() {
		l.wakeQueue(l.txq(i))
	}
}

func (l *Link) wakeQueue(q *queue) {
	select {
	case q.wake <- struct{}{}:
	default:
	}
	q.mu.Lock()
	if q.kickFD >= 0 {
		signal(q.kickFD)
	}
	q.mu.Unlock()
}

// signal writes an eventfd (a kick or an interrupt). A counter that
// cannot grow (EAGAIN) has a wake-up pending anyway.
func signal(fd int) {
	if fd < 0 {
		return
	}
	one := [8]byte{1}
	unix.Write(fd, one[:])
}

// stop ends the queue's use of its ring (GET_VRING_BASE); the next
// SET_VRING_KICK starts it again.
func (q *queue) stop() {
	if q.ring != nil {
		q.base = q.ring.lastAvail
	}
	q.ring = nil
	q.broken = nil
}

func (q *queue) closeFDs() {
	q.setKick(nil, false)
	q.setCall(-1)
	if q.errFD >= 0 {
		unix.Close(q.errFD)
		q.errFD = -1
	}
}

func (q *queue) setKick(f *os.File, poll bool) {
	if q.kick != nil {
		q.kick.Close() // a reader waiting on it returns
	}
	q.kick, q.kickFD, q.poll = f, -1, poll
	if f != nil {
		q.kickFD = int(f.Fd())
	}
}

func (q *queue) setCall(fd int) {
	if q.call >= 0 {
		unix.Close(q.call)
	}
	q.call = fd
}

// breakRing records that the guest broke the ring; the queue stops using
// it and tells the front-end through the error eventfd.
func (q *queue) breakRing(err error) {
	if q.broken == nil {
		q.broken = err
		signal(q.errFD)
	}
}

// usable reports whether the queue's ring runs: started, not broken.
func (q *queue) usable() bool { return q.ring != nil && q.broken == nil }

// enabledNow reports whether a running ring is also enabled: with
// PROTOCOL_FEATURES negotiated a ring waits for SET_VRING_ENABLE,
// without it rings are enabled from the start.
func (l *Link) enabledNow(q *queue) bool {
	return l.features&fProtoFeatures == 0 || q.enabled
}

// unguard ends a stretch of the data path run under
// debug.SetPanicOnFault: it restores the goroutine's fault mode (was) and
// turns a fault in guest memory into an error-free return. Deferred
// directly, so that its recover sees the panic.
func (l *Link) unguard(q *queue, was bool, n *int, err *error) {
	debug.SetPanicOnFault(was)
	if p := recover(); p != nil {
		*n, *err = 0, l.fault(q, p)
	}
}

// fault turns a fault in guest memory (a front-end that shrank the file
// under a mapping: SIGBUS) into a broken ring instead of a crash; the data
// path runs with debug.SetPanicOnFault and hands fault what it recovered.
// Any other panic, and a fault anywhere else, goes on as a panic.
func (l *Link) fault(q *queue, p any) error {
	fa, ok := p.(interface{ Addr() uintptr })
	if !ok {
		panic(p)
	}
	q.mu.Lock()
	inGuest := l.mem.holds(fa.Addr()) || l.dlog.holds(fa.Addr())
	if inGuest {
		q.breakRing(errMemoryFault)
	}
	q.mu.Unlock()
	if !inGuest {
		panic(p)
	}
	if q.index%2 == 0 {
		l.counters.TxBadRing.Add(1)
	} else {
		l.counters.RxBadRing.Add(1)
	}
	l.log.Warn("fault in guest memory; ring stopped", "link", l.name, "queue", q.index, "err", p)
	return nil
}

// Read takes frames the guest transmitted on the first queue pair: it
// blocks until there is at least one (or the link ends), then takes up
// to len(bufs).
func (l *Link) Read(bufs [][]byte, sizes []int) (n int, err error) {
	return l.ReadQueue(0, bufs, sizes)
}

// ReadQueue is Read for queue pair i's transmit ring. Each pair has at
// most one reader.
func (l *Link) ReadQueue(i int, bufs [][]byte, sizes []int) (n int, err error) {
	q := l.txq(i)
	for {
		if i == 0 {
			if n := l.readInjected(bufs, sizes); n > 0 {
				return n, nil
			}
		}
		n, wait, err := l.readRing(q, bufs, sizes)
		if n > 0 || err != nil {
			return n, err
		}
		l.waitKick(wait)
	}
}

// waitFor is what an empty transmit ring waits on.
type waitFor struct {
	kick *os.File
	poll bool
	wake chan struct{}
}

// waitKick waits for the guest's next kick, for a change by the message
// loop, or (a front-end that polls) a moment.
func (l *Link) waitKick(w waitFor) {
	switch {
	case w.kick != nil:
		rc, err := w.kick.SyscallConn()
		if err != nil {
			return
		}
		var v [8]byte
		// Reading clears the eventfd; the file closed under us (a
		// new kick, the link's end) returns an error, and the loop
		// looks again.
		rc.Read(func(fd uintptr) bool {
			_, err := unix.Read(int(fd), v[:])
			return err != unix.EAGAIN
		})
	case w.poll:
		select {
		case <-w.wake:
		case <-l.ended:
		case <-time.After(time.Millisecond):
		}
	default:
		select {
		case <-w.wake:
		case <-l.ended:
		}
	}
}

func (l *Link) readInjected(bufs [][]byte, sizes []int) int {
	l.injectMu.Lock()
	defer l.injectMu.Unlock()
	n := 0
	for n < len(bufs) && len(l.inject) > 0 {
		f := l.inject[0]
		l.inject = l.inject[1:]
		link.ClearVnetHdr(bufs[n])
		sizes[n] = copy(bufs[n][link.VnetHdrLen:], f)
		n++
	}
	return n
}

// readRing takes what the transmit ring holds now.
func (l *Link) readRing(q *queue, bufs [][]byte, sizes []int) (n int, w waitFor, err error) {
	defer l.unguard(q, debug.SetPanicOnFault(true), &n, &err)
	q.mu.Lock()
	defer q.mu.Unlock()
	if l.isEnded() {
		return 0, w, l.endErr
	}
	w = waitFor{kick: q.kick, poll: q.poll, wake: q.wake}
	if !q.usable() {
		w.poll = false // nothing to poll until the front-end acts
		return 0, w, nil
	}
	r := q.ring
	// A started but disabled ring is drained and its frames dropped
	// (vhost-user.rst, "Ring states").
	discard := !l.enabledNow(q)
	took := 0
	limit := l.hdrLen + link.MaxFrameLen
	for n < len(bufs) {
		pending, perr := r.pending()
		if perr != nil {
			q.breakRing(perr)
			l.counters.RxBadRing.Add(1)
			l.log.Warn("guest broke its transmit ring; ring stopped", "link", l.name, "err", perr)
			break
		}
		if pending == 0 {
			if n > 0 {
				break // back soon for more: kicks can stay off
			}
			// About to wait (even if chains were taken: dropped
			// ones return nothing): ask for a kick, then look once
			// more for what came before the driver saw the ask.
			again, perr := r.notifyOn()
			if perr == nil && again {
				continue
			}
			break
		}
		r.notifyOff()
		c := &q.chain
		r.walk(r.headAt(0), c, false, limit)
		r.take(1)
		r.putUsed(c.head, 0)
		took++
		if c.err != nil {
			if errors.Is(c.err, errChainTooLarge) {
				l.counters.RxOversized.Add(1)
			} else {
				l.counters.RxBadRing.Add(1)
			}
			l.log.Debug("transmit chain dropped", "link", l.name, "head", c.head, "err", c.err)
			continue
		}
		if discard {
			continue
		}
		if size, ok := l.takeFrame(c, bufs[n]); ok {
			sizes[n] = size
			n++
		}
	}
	if took > 0 {
		r.publish()
		if r.needSignal() {
			signal(q.call)
		}
	}
	return n, w, nil
}

// Write puts frames into the guest's receive ring. A frame that finds no
// room (the guest has not given enough buffers, or its ring is not
// running) is dropped with the rest of the batch: ErrQueueFull, as a
// full NIC ring drops. It never waits.
func (l *Link) Write(frames []link.Frame) (n int, err error) {
	if l.Queues() == 1 {
		n, err := l.writeQueue(l.rxq(0), frames)
		if errors.Is(err, errRingOff) {
			err = link.ErrQueueFull
		}
		return n, err
	}
	// Runs of frames bound for the same pair go in one call.
	for len(frames) > 0 {
		pair := l.steer(&frames[0])
		run := 1
		for run < len(frames) && l.steer(&frames[run]) == pair {
			run++
		}
		sent, err := l.writeQueue(l.rxq(pair), frames[:run])
		if errors.Is(err, errRingOff) && pair != 0 {
			// The guest runs fewer pairs than offered (Linux
			// enables one per CPU): its first pair takes the rest.
			sent, err = l.writeQueue(l.rxq(0), frames[:run])
		}
		n += sent
		if err != nil {
			if errors.Is(err, errRingOff) {
				err = link.ErrQueueFull
			}
			return n, err
		}
		frames = frames[run:]
	}
	return n, nil
}

// errRingOff is writeQueue's answer for a receive ring that is not
// running or not enabled.
var errRingOff = fmt.Errorf("receive ring not running: %w", link.ErrQueueFull)

// steer picks the queue pair for a frame by its flow (link.Frame.FlowHash),
// so that a flow stays on one pair; frames that are not IP go to the first.
func (l *Link) steer(f *link.Frame) int {
	return int(f.FlowHash() % uint32(l.Queues()))
}

// writeQueue puts frames into one receive ring.
func (l *Link) writeQueue(q *queue, frames []link.Frame) (n int, err error) {
	defer l.unguard(q, debug.SetPanicOnFault(true), &n, &err)
	q.mu.Lock()
	defer q.mu.Unlock()
	if l.isEnded() {
		return 0, net.ErrClosed
	}
	if !q.usable() || !l.enabledNow(q) {
		return 0, errRingOff
	}
	r := q.ring
	before := r.usedIdx
	sent := 0
	var werr error
	for i := range frames {
		res := l.putFrame(q, r, &frames[i])
		if res == putNoRoom || res == putBroken {
			werr = link.ErrQueueFull
			break
		}
		if res == putDone {
			sent++
		}
	}
	if r.usedIdx != before {
		r.publish()
		if r.needSignal() {
			signal(q.call)
		}
	}
	return sent, werr
}

// BatchSize is how many frames a Read may return.
func (l *Link) BatchSize() int { return batchSize }

var (
	_ link.MultiQueue = (*Link)(nil)
	_ link.Carrier    = (*Link)(nil)
)

// Offloads reports whether Write takes partial checksums and TCP
// super-frames: whether the guest acknowledged GUEST_CSUM, GUEST_TSO4
// and GUEST_TSO6. It changes when the guest's driver renegotiates (a
// reboot into iPXE, say).
func (l *Link) Offloads() bool { return l.offloads.Load() }

// Counters are the link's own drops.
func (l *Link) Counters() *link.Counters { return &l.counters }

// Close ends the link and its connection and waits until the message
// loop has let go of everything.
func (l *Link) Close() error {
	err := l.conn.Close()
	<-l.loopDone
	l.end(net.ErrClosed)
	return err
}

func (l *Link) String() string { return l.name }

// MAC is the address the device reports in its configuration space.
func (l *Link) MAC() net.HardwareAddr { return l.mac }

// serve runs the message loop until the connection ends.
func (l *Link) serve() {
	defer close(l.loopDone)
	err := l.loop()
	switch {
	case errors.Is(err, io.EOF):
		l.log.Debug("front-end closed the connection", "link", l.name)
	case errors.Is(err, net.ErrClosed):
	default:
		l.log.Warn("front-end refused", "link", l.name, "err", err)
	}
	l.conn.Close()
	l.end(err)
}

var _ link.Link = (*Link)(nil)
