package flow

import (
	"sync/atomic"
	"time"
)

// direction is one way of a pump: a drain goroutine that runs only while
// there is something to move, so an idle flow holds no goroutine. Its
// states:
//
//	idle       busy is false and no goroutine runs. kick starts a drain
//	           (→ draining).
//	draining   busy is true; the drain moves what there is. kick only
//	           wakes it, if it lingers.
//	lingering  the drain found nothing and waits up to linger for a wake;
//	           woken, it drains again. After linger it clears busy
//	           (→ idle) and looks once more for work that a kick announced
//	           in the gap, to a drain that still looked busy: if there is
//	           some and it wins busy back, it drains again; otherwise it
//	           ends.
//	finished   the direction is over (its FIN or EOF was passed on): busy
//	           stays set for good, so kicks do nothing.
//
// A flow in active use (request and response) keeps its drains lingering,
// woken directly by the stack or the poller; only a flow idle for linger
// costs no goroutine.
type direction struct {
	busy    atomic.Bool
	wake    chan struct{}
	drain   func()      // the drain loop, bound once
	pending func() bool // whether there is work now, without waiting
}

// linger is how long a drain waits for more before it hands its
// direction back to the idle machinery.
const linger = 50 * time.Millisecond

func (d *direction) init(drain func(), pending func() bool) {
	d.drain, d.pending = drain, pending
	d.wake = make(chan struct{}, 1)
}

// kick starts the drain unless it runs already, and wakes it if it
// lingers. It never blocks: the stack's notifier and the poller call it.
func (d *direction) kick() {
	if d.busy.CompareAndSwap(false, true) {
		go d.drain()
		return
	}
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// idle is the drain's wait for more work, on the drain's own timer. It
// reports whether the drain goes on; false: the flow closed (done), or the
// direction is idle now. A drain that finishes its direction simply
// returns without calling it: busy stays set.
func (d *direction) idle(t *lingerTimer, done <-chan struct{}) bool {
	select {
	case <-d.wake:
		return true
	case <-done:
		return false
	case <-t.start():
	}
	d.busy.Store(false)
	return d.pending() && d.busy.CompareAndSwap(false, true)
}

// lingerTimer is one drain goroutine's linger timer, made on its first
// wait. It is the drain's own: a drain that ends after clearing busy must
// not touch a timer the next drain of its direction already uses.
type lingerTimer struct{ t *time.Timer }

func (l *lingerTimer) start() <-chan time.Time {
	if l.t == nil {
		l.t = time.NewTimer(linger)
	} else {
		l.t.Reset(linger)
	}
	return l.t.C
}

// stop releases the timer; the drain calls it as it ends.
func (l *lingerTimer) stop() {
	if l.t != nil {
		l.t.Stop()
	}
}
