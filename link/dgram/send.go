package dgram

import (
	"errors"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/slipway-net/slipway/link"
)

// When the peer's receive queue is full (QEMU's unix datagram socket holds
// ten datagrams; a busy guest empties it in bursts) the frames the peer did
// not take are copied into a queue of up to queueLimit bytes, and a drain
// goroutine sends them, sleeping 50µs doubling to 2ms between attempts:
// back-off rather than the poller, because an unconnected unix datagram
// socket reports itself writable even while its peer's queue is full, and
// macOS answers ENOBUFS rather than blocking, so a poller wait would spin.
// The caller (the stack, or another VM's reader) never waits. Frames past
// the queue limit are dropped as a full NIC ring drops them
// (link.ErrQueueFull), the newest first: what the queue holds reaches the
// peer in order once it reads again. A paused VM keeps its queue (after
// idleAfter without progress the drain looks only every backoffIdle):
// dropping the queue would leave holes in TCP flights whose senders have
// backed off for a minute, and gVisor's recovery from such a tail loss
// sends one or two segments per retransmission timeout. The queue is
// dropped (counted as TxStalled) when the peer is gone, the link closes,
// or the peer took nothing for the stall timeout (Options.StallTimeout,
// DefaultStallTimeout).
const (
	backoffStart = 50 * time.Microsecond
	backoffMax   = 2 * time.Millisecond
	backoffIdle  = 50 * time.Millisecond
	idleAfter    = time.Second
	queueLimit   = 2 << 20
	drainBatch   = 64
)

// DefaultStallTimeout is how long a peer may take nothing before the
// frames queued for it are dropped: as long as a silent peer is kept
// (DefaultIdleTimeout).
const DefaultStallTimeout = DefaultIdleTimeout

// smallCopy is the size of the buffers frames up to an MTU of 1500 (and
// bhyve's 2048) are queued in; larger frames take a link.BufSize buffer.
// A queue of small frames in 64 KiB buffers would hold 40 times the bytes
// it counts.
const smallCopy = link.VnetHdrLen + 2048

// maxIOV is the most pieces one message may have (IOV_MAX).
const maxIOV = 1024

var (
	frameCopies = sync.Pool{New: func() any { b := make([]byte, 0, link.BufSize); return &b }}
	smallCopies = sync.Pool{New: func() any { b := make([]byte, 0, smallCopy); return &b }}
)

// putCopy returns a queued frame's buffer to its pool.
func putCopy(bp *[]byte) {
	if cap(*bp) == smallCopy {
		smallCopies.Put(bp)
		return
	}
	frameCopies.Put(bp)
}

// errFull reports that the peer's queue is full; what was not sent waits
// in the sender's queue.
var errFull = errors.New("peer queue full")

// sender writes batches to one peer. Its write methods belong to one link
// and are used under that link's write lock; the queue has its own lock,
// shared with the drain goroutine.
type sender struct {
	tx       txBatch
	flags    int
	maxFrame int
	counters *link.Counters
	// stallTimeout is how long the peer may take nothing before the queue
	// is dropped; closed ends the drain (the link is closed).
	stallTimeout time.Duration
	closed       atomic.Bool

	// One send call's arguments and results, and the method value that
	// makes it, bound once so the poller callback does not allocate.
	next, n int
	serr    error
	sendFn  func(fd uintptr) bool

	qmu      sync.Mutex
	queue    []*[]byte // header+frame copies, oldest first
	queued   int       // bytes in queue
	draining bool      // a drain goroutine runs; writes go to the queue
	rc       syscall.RawConn
	to       *sockname
	dtx      txBatch // the drain goroutine's
}

func (s *sender) sendOnce(fd uintptr) bool {
	s.n, s.serr = s.tx.send(int(fd), s.next, s.flags)
	return true
}

// write sends frames to the peer, to on an unconnected socket or nil on a
// connected one, without copying them together. It returns how many were
// sent or queued. Frames too large are counted and skipped; frames neither
// sent nor queued are reported with link.ErrQueueFull (the switch counts
// them). Any other error means the socket or the peer is gone.
func (s *sender) write(rc syscall.RawConn, frames []link.Frame, to *sockname) (int, error) {
	k := 0
	for i := range frames {
		if f := &frames[i]; len(f.Segs) == 0 || len(f.Segs) > maxIOV || f.Len() > s.maxFrame {
			s.counters.TxTooLarge.Add(1)
			continue
		}
		if k != i {
			frames[k] = frames[i]
		}
		k++
	}
	frames = frames[:k]
	if s.isDraining() {
		return s.enqueue(rc, to, frames)
	}
	s.tx.prepare(frames, s.maxFrame, to)
	next, err := s.flush(rc)
	if err == errFull {
		q, qerr := s.enqueue(rc, to, frames[next:])
		return next + q, qerr
	}
	return next, err
}

func (s *sender) isDraining() bool {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	return s.draining
}

// flush sends the prepared batch without waiting. It returns how many
// messages were consumed (sent, or refused one by one as too large), and
// errFull when the peer took no more.
func (s *sender) flush(rc syscall.RawConn) (int, error) {
	defer s.tx.release()
	if s.sendFn == nil {
		s.sendFn = s.sendOnce
	}
	total := s.tx.count()
	s.next = 0
	for s.next < total {
		if err := rc.Write(s.sendFn); err != nil {
			return s.next, err
		}
		s.next += s.n
		serr := s.serr
		s.serr = nil
		switch {
		case serr == nil, errors.Is(serr, unix.EINTR):
		case errors.Is(serr, unix.EAGAIN), errors.Is(serr, unix.ENOBUFS):
			return s.next, errFull
		case errors.Is(serr, unix.EMSGSIZE):
			// The kernel refused this one message (larger than the
			// socket's send buffer); the rest may still fit.
			s.counters.TxTooLarge.Add(1)
			s.next++
		default:
			return s.next, serr
		}
	}
	return s.next, nil
}

// enqueue copies frames into the queue while it has room, and starts the
// drain. It returns how many were queued, and link.ErrQueueFull if not all.
// Only frames that must wait are copied.
func (s *sender) enqueue(rc syscall.RawConn, to *sockname, frames []link.Frame) (int, error) {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	queued := 0
	for i := range frames {
		f := &frames[i]
		bp := s.slot(link.VnetHdrLen + f.Len())
		if bp == nil {
			break
		}
		*bp = (*bp)[:f.CopyTo((*bp)[:cap(*bp)])]
		s.push(bp)
		queued++
	}
	return s.started(rc, to, queued, len(frames))
}

// slot returns a buffer for a frame of size bytes, or nil when the queue
// has no room for it. s.qmu is held.
func (s *sender) slot(size int) *[]byte {
	if s.queued+size > queueLimit {
		return nil
	}
	if size <= smallCopy {
		return smallCopies.Get().(*[]byte)
	}
	return frameCopies.Get().(*[]byte)
}

// push appends a filled buffer to the queue. s.qmu is held.
func (s *sender) push(bp *[]byte) {
	s.queue = append(s.queue, bp)
	s.queued += len(*bp)
}

// started starts the drain if needed and reports frames left out. s.qmu
// is held.
func (s *sender) started(rc syscall.RawConn, to *sockname, queued, n int) (int, error) {
	s.rc, s.to = rc, to
	if len(s.queue) > 0 && !s.draining {
		s.draining = true
		go s.drain()
	}
	if queued < n {
		return queued, link.ErrQueueFull
	}
	return queued, nil
}

// drain sends the queued frames, backing off while the peer is full,
// until the queue is empty, the peer is gone, the link is closed, or the
// peer took nothing for the stall timeout.
func (s *sender) drain() {
	wait := backoffStart
	progress := time.Now()
	var segs [drainBatch][1][]byte
	frames := make([]link.Frame, drainBatch)
	sendFn := func(rc syscall.RawConn, to *sockname, batch []*[]byte) (int, error) {
		for i, bp := range batch {
			frames[i] = link.OnePiece(*bp, &segs[i])
		}
		s.dtx.prepare(frames[:len(batch)], s.maxFrame, to)
		defer s.dtx.release()
		next := 0
		var serr error
		for next < s.dtx.count() {
			var n int
			err := rc.Write(func(fd uintptr) bool {
				n, serr = s.dtx.send(int(fd), next, s.flags)
				return true
			})
			if err != nil {
				return next, err
			}
			next += n
			switch {
			case serr == nil, errors.Is(serr, unix.EINTR):
			case errors.Is(serr, unix.EAGAIN), errors.Is(serr, unix.ENOBUFS):
				return next, errFull
			case errors.Is(serr, unix.EMSGSIZE):
				s.counters.TxTooLarge.Add(1)
				next++
			default:
				return next, serr
			}
		}
		return next, nil
	}
	for {
		s.qmu.Lock()
		if len(s.queue) == 0 {
			s.draining = false
			s.qmu.Unlock()
			return
		}
		batch := s.queue[:min(len(s.queue), drainBatch)]
		rc, to := s.rc, s.to
		s.qmu.Unlock()
		next, err := sendFn(rc, to, batch)
		s.qmu.Lock()
		for _, bp := range s.queue[:next] {
			s.queued -= len(*bp)
			putCopy(bp)
		}
		s.queue = s.queue[next:]
		stalled := time.Since(progress)
		giveUp := err != nil && err != errFull || s.closed.Load() ||
			err == errFull && next == 0 && stalled > s.stallTimeout
		if giveUp {
			s.counters.TxStalled.Add(uint64(len(s.queue)))
			for _, bp := range s.queue {
				putCopy(bp)
			}
			s.queue, s.queued, s.draining = nil, 0, false
		}
		s.qmu.Unlock()
		if giveUp {
			return
		}
		if next > 0 {
			progress = time.Now()
			wait = backoffStart
		}
		if err == errFull {
			time.Sleep(wait)
			wait = min(2*wait, backoffMax)
			if next == 0 && stalled > idleAfter {
				wait = backoffIdle // a paused VM: look now and then
			}
		}
	}
}

// peerGone reports send errors meaning the peer's socket no longer exists:
// a datagram peer whose path was removed or whose socket was closed, or a
// connection that was reset.
func peerGone(err error) bool {
	return errors.Is(err, unix.ECONNREFUSED) || errors.Is(err, unix.ENOENT) ||
		errors.Is(err, unix.EPIPE) || errors.Is(err, unix.ECONNRESET) || errors.Is(err, unix.ENOTCONN)
}
