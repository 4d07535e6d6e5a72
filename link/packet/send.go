package packet

import (
	"errors"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/slipway-net/slipway/link"
)

// When the peer's receive queue is full the writer backs off instead of
// waiting for the poller: a unix datagram socket that is not connected
// reports itself writable even while its peer's queue is full (Linux looks
// at the peer only for connected sockets), and macOS answers ENOBUFS rather
// than blocking, so a poller wait would spin. The writer sleeps, 50µs
// doubling to 2ms, for at most 20ms per Write; frames that still do not fit
// are dropped, as a full NIC ring drops them (link.ErrQueueFull). A peer that used its budget up is marked stalled
// and gets one attempt per Write until a send goes through again, so a VM
// that stopped reading costs the switch almost nothing.
const (
	backoffStart  = 50 * time.Microsecond
	backoffMax    = 2 * time.Millisecond
	backoffBudget = 20 * time.Millisecond
)

// sender writes batches to one peer. It belongs to one link and is used
// under that link's write lock.
type sender struct {
	tx       txBatch
	flags    int
	maxFrame int
	stalled  bool
	counters *link.Counters

	// One send call's arguments and results, and the method value that
	// makes it, bound once so the poller callback does not allocate.
	next, n int
	serr    error
	sendFn  func(fd uintptr) bool
}

func (s *sender) sendOnce(fd uintptr) bool {
	s.n, s.serr = s.tx.send(int(fd), s.next, s.flags)
	return true
}

// write sends frames (header+frame each) to the peer, to on an unconnected
// socket or nil on a connected one. It returns how many were sent. Frames
// too large are counted and skipped; frames a full peer did not take are
// reported with link.ErrQueueFull (the switch counts them). Any other
// error means the socket or the peer is gone.
func (s *sender) write(rc syscall.RawConn, frames [][]byte, to *sockname) (int, error) {
	if skipped := s.tx.prepare(frames, s.maxFrame, to); skipped > 0 {
		s.counters.TxTooLarge.Add(uint64(skipped))
	}
	return s.flush(rc)
}

// writeVec is write for frames in pieces (the stack's, unflattened).
func (s *sender) writeVec(rc syscall.RawConn, frames []link.VecFrame, to *sockname) (int, error) {
	if skipped := s.tx.prepareVec(frames, s.maxFrame, to); skipped > 0 {
		s.counters.TxTooLarge.Add(uint64(skipped))
	}
	return s.flush(rc)
}

// flush sends the prepared batch, backing off while the peer is full.
func (s *sender) flush(rc syscall.RawConn) (int, error) {
	defer s.tx.release()
	if s.sendFn == nil {
		s.sendFn = s.sendOnce
	}
	total := s.tx.count()
	s.next = 0
	sent := 0
	wait := backoffStart
	var slept time.Duration
	for s.next < total {
		if err := rc.Write(s.sendFn); err != nil {
			return sent, err
		}
		s.next += s.n
		sent += s.n
		serr := s.serr
		s.serr = nil
		switch {
		case serr == nil:
			s.stalled = false
			wait = backoffStart
		case errors.Is(serr, unix.EINTR):
		case errors.Is(serr, unix.EAGAIN), errors.Is(serr, unix.ENOBUFS):
			if s.stalled || slept >= backoffBudget {
				s.stalled = true
				return sent, link.ErrQueueFull
			}
			time.Sleep(wait)
			slept += wait
			wait = min(2*wait, backoffMax)
		case errors.Is(serr, unix.EMSGSIZE):
			// The kernel refused this one message (larger than the
			// socket's send buffer); the rest may still fit.
			s.counters.TxTooLarge.Add(1)
			s.next++
		default:
			return sent, serr
		}
	}
	return sent, nil
}

// peerGone reports send errors meaning the peer's socket no longer exists:
// a datagram peer whose path was removed or whose socket was closed, or a
// connection that was reset.
func peerGone(err error) bool {
	return errors.Is(err, unix.ECONNREFUSED) || errors.Is(err, unix.ENOENT) ||
		errors.Is(err, unix.EPIPE) || errors.Is(err, unix.ECONNRESET) || errors.Is(err, unix.ENOTCONN)
}
