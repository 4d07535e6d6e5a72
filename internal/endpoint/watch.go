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
	// Keep the stack's zero-copy path to links that have one.
	if v, ok := l.(link.VecWriter); ok {
		return &watchedVecLink{watchedLink: w, vec: v}, w.done
	}
	return w, w.done
}

type watchedVecLink struct {
	*watchedLink
	vec link.VecWriter
}

func (w *watchedVecLink) WriteVec(frames []link.VecFrame) (int, error) { return w.vec.WriteVec(frames) }

type watchedLink struct {
	link.Link
	once sync.Once
	done chan struct{}
}

func (w *watchedLink) Close() error {
	err := w.Link.Close()
	w.once.Do(func() { close(w.done) })
	return err
}

// Counters passes on the wrapped link's counters, if it keeps any.
func (w *watchedLink) Counters() *link.Counters {
	if c, ok := w.Link.(link.Counted); ok {
		return c.Counters()
	}
	return nil
}
