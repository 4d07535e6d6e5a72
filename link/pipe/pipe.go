// Package pipe is an in-process link: two connected ends, each a link.Link,
// so a Go program (or a test) can put its own frames on a slipway network
// without a socket.
package pipe

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"

	"github.com/slipway-net/slipway/link"
)

// DefaultDepth is how many frames may wait in one direction.
const DefaultDepth = 256

// End is one end of a pipe.
type End struct {
	name    string
	in      *queue // frames for this end to read
	out     *queue // the peer's in
	offload bool
	// Dropped counts frames written while the peer's queue was full, as
	// a NIC ring overflows.
	Dropped atomic.Uint64
}

// New returns two connected ends. With offloads, frames keep their
// virtio-net header (partial checksums pass through); without, the switch
// completes checksums before writing, as for a real peer without offloads.
func New(name string, offloads bool) (a, b *End) {
	qa, qb := newQueue(DefaultDepth), newQueue(DefaultDepth)
	a = &End{name: name + "/a", in: qa, out: qb, offload: offloads}
	b = &End{name: name + "/b", in: qb, out: qa, offload: offloads}
	return a, b
}

// Read returns queued frames, blocking for the first.
func (e *End) Read(bufs [][]byte, sizes []int) (int, error) {
	return e.in.get(bufs, sizes)
}

// Write copies frames to the peer's queue; frames that do not fit are
// dropped and counted.
func (e *End) Write(frames [][]byte) (int, error) {
	n, err := e.out.put(frames)
	if err == nil && n < len(frames) {
		e.Dropped.Add(uint64(len(frames) - n))
	}
	return len(frames), err
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
}

func newQueue(depth int) *queue {
	q := &queue{slots: make([][]byte, depth), lens: make([]int, depth)}
	q.cond = sync.NewCond(&q.mu)
	return q
}

var errClosed = net.ErrClosed

func (q *queue) put(frames [][]byte) (int, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return 0, errClosed
	}
	n := 0
	for _, f := range frames {
		if q.count == len(q.slots) {
			break
		}
		i := (q.head + q.count) % len(q.slots)
		if cap(q.slots[i]) < len(f) {
			q.slots[i] = make([]byte, link.BufSize)
		}
		q.lens[i] = copy(q.slots[i][:len(f)], f)
		q.count++
		n++
	}
	if n > 0 {
		q.cond.Broadcast()
	}
	return n, nil
}

func (q *queue) get(bufs [][]byte, sizes []int) (int, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.count == 0 && !q.closed {
		q.cond.Wait()
	}
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
