// Package pipe is an in-process link: two connected ends, each a link.Link,
// so a Go program (or a test) can put its own frames on a slipway network
// without a socket.
package pipe

import (
	"errors"
	"net"
	"sync"

	"github.com/slipway-net/slipway/link"
)

// DefaultDepth is how many frames may wait in one direction.
const DefaultDepth = 256

// End is one end of a pipe.
type End struct {
	name     string
	in       *queue // frames for this end to read
	out      *queue // the peer's in
	offload  bool
	counters link.Counters
}

// New returns two connected ends. With offloads, frames keep their
// virtio-net header (partial checksums pass through); without, the switch
// completes checksums before writing, as for a real peer without offloads.
func New(name string, offloads bool) (a, b *End) {
	return NewDepth(name, offloads, DefaultDepth)
}

// NewDepth is New with depth frames of room each way (at least 1). A slot
// holds memory only once a frame used it, as much as its largest frame.
func NewDepth(name string, offloads bool, depth int) (a, b *End) {
	depth = max(depth, 1)
	qa, qb := newQueue(depth), newQueue(depth)
	a = &End{name: name + "/a", in: qa, out: qb, offload: offloads}
	b = &End{name: name + "/b", in: qb, out: qa, offload: offloads}
	return a, b
}

// Read returns queued frames, blocking for the first.
func (e *End) Read(bufs [][]byte, sizes []int) (int, error) {
	return e.in.get(bufs, sizes)
}

// TryRead is Read that does not block: it returns 0 frames at once when
// none wait. A host that polls (the libslirp ABI, whose caller owns the
// thread) reads this way, woken by OnReadable.
func (e *End) TryRead(bufs [][]byte, sizes []int) (int, error) {
	return e.in.tryGet(bufs, sizes)
}

// OnReadable sets fn, called when frames arrive for this end while none
// were waiting (not for every frame): an edge, after which the reader
// drains with TryRead until it gets 0. fn runs on the writer's goroutine,
// outside the queue's lock, and must not block. nil removes it.
func (e *End) OnReadable(fn func()) {
	e.in.mu.Lock()
	e.in.onReadable = fn
	e.in.mu.Unlock()
}

// Write copies frames to the peer's queue. Frames that do not fit are
// dropped, as a full NIC ring drops them, and reported with
// link.ErrQueueFull (the switch counts them).
func (e *End) Write(frames []link.Frame) (int, error) {
	n, tooLarge, err := e.out.put(frames)
	e.counters.TxTooLarge.Add(uint64(tooLarge))
	if err == nil && n < len(frames) {
		err = link.ErrQueueFull
	}
	return n, err
}

// BatchSize is how many frames one Read may return.
func (e *End) BatchSize() int { return 32 }

// Offloads reports whether partial checksums pass through.
func (e *End) Offloads() bool { return e.offload }

// Close closes both directions: the peer's reads end too.
func (e *End) Close() error {
	e.in.close()
	e.out.close()
	return nil
}

func (e *End) String() string { return "pipe:" + e.name }

// Counters are the end's own counters (a pipe drops nothing itself).
func (e *End) Counters() *link.Counters { return &e.counters }

var _ link.Link = (*End)(nil)

// queue is a bounded FIFO of frames (header+frame each) with preallocated
// slots, so steady traffic allocates nothing.
type queue struct {
	mu     sync.Mutex
	cond   *sync.Cond
	slots  [][]byte
	lens   []int
	head   int
	count  int
	closed bool
	// onReadable is called when the queue goes from empty to non-empty.
	onReadable func()
}

func newQueue(depth int) *queue {
	q := &queue{slots: make([][]byte, depth), lens: make([]int, depth)}
	q.cond = sync.NewCond(&q.mu)
	return q
}

var errClosed = net.ErrClosed

// put queues frames while there is room; it returns how many it consumed
// (queued, or skipped as larger than any frame), of which tooLarge were
// skipped.
func (q *queue) put(frames []link.Frame) (n, tooLarge int, err error) {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return 0, 0, errClosed
	}
	wasEmpty := q.count == 0
	for k := range frames {
		f := &frames[k]
		if q.count == len(q.slots) {
			break
		}
		i := (q.head + q.count) % len(q.slots)
		size := link.VnetHdrLen + f.Len()
		if size > link.BufSize {
			tooLarge++
			n++
			continue
		}
		if cap(q.slots[i]) < size {
			// Rounded up, so a slot fits a few frame sizes before it
			// grows again.
			q.slots[i] = make([]byte, min((size+2047)&^2047, link.BufSize))
		}
		q.lens[i] = f.CopyTo(q.slots[i][:size])
		q.count++
		n++
	}
	if n > tooLarge {
		q.cond.Broadcast()
	}
	notify := q.onReadable
	if !wasEmpty || q.count == 0 {
		notify = nil
	}
	q.mu.Unlock()
	if notify != nil {
		notify()
	}
	return n, tooLarge, nil
}

func (q *queue) get(bufs [][]byte, sizes []int) (int, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.count == 0 && !q.closed {
		q.cond.Wait()
	}
	return q.takeLocked(bufs, sizes)
}

func (q *queue) tryGet(bufs [][]byte, sizes []int) (int, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.count == 0 && !q.closed {
		return 0, nil
	}
	return q.takeLocked(bufs, sizes)
}

func (q *queue) takeLocked(bufs [][]byte, sizes []int) (int, error) {
	if q.count == 0 {
		return 0, errClosed
	}
	n := 0
	for n < len(bufs) && q.count > 0 {
		l := q.lens[q.head]
		if l < link.VnetHdrLen || len(bufs[n]) < l {
			return n, errors.New("pipe: frame larger than the read buffer")
		}
		copy(bufs[n], q.slots[q.head][:l])
		sizes[n] = l - link.VnetHdrLen
		q.head = (q.head + 1) % len(q.slots)
		q.count--
		n++
	}
	return n, nil
}

func (q *queue) close() {
	q.mu.Lock()
	q.closed = true
	q.cond.Broadcast()
	q.mu.Unlock()
}
