package endpoint

import (
	"sync"

	"github.com/slipway-net/slipway/link"
)

// Watch wraps l so that done is closed once l is closed, which the switch
// does when the link ends for any reason. The caller learns that its VM
// went away without polling the switch.
func Watch(l link.Link) (link.Link, <-chan struct{}) {
	w := &watchedLink{Link: l, done: make(chan struct{})}
	if mq, ok := l.(link.MultiQueue); ok {
		// The switch must still see the queues.
		return watchedMultiQueue{w, mq}, w.done
	}
	return w, w.done
}

type watchedMultiQueue struct {
	*watchedLink
	mq link.MultiQueue
}

func (w watchedMultiQueue) Queues() int { return w.mq.Queues() }
func (w watchedMultiQueue) ReadQueue(i int, bufs [][]byte, sizes []int) (int, error) {
	return w.mq.ReadQueue(i, bufs, sizes)
}

type watchedLink struct {
	link.Link
	once sync.Once
	done chan struct{}
}

// SetCarrier passes the link's status on, if the link takes it.
func (w *watchedLink) SetCarrier(up bool) {
	if c, ok := w.Link.(link.Carrier); ok {
		c.SetCarrier(up)
	}
}

func (w *watchedLink) Close() error {
	err := w.Link.Close()
	w.once.Do(func() { close(w.done) })
	return err
}
