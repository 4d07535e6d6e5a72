// Package flow holds slipway's flows: the table of every flow between a
// guest and a host socket (those a guest opens and those a host client
// opens through a published port), each flow's life from its reservation to
// the release of its sockets, and the pumps that move its bytes: the TCP
// pump, the UDP datagram pumps and the poller that wakes idle flows.
//
// A flow's life has three phases:
//
//	opening  Reserve took a slot; the flow shows in List and counts
//	         against the limit, but owns nothing yet (its host socket is
//	         being dialled, its stack endpoint created). Close now cancels
//	         Context, so a dial in progress returns at once.
//	running  Start handed it its resources; Close releases them.
//	closed   Close ran (once); the slot is free. A Start that comes after
//	         Close releases what it was handed at once and reports false.
//
// So a close that lands while a flow is being set up (a forward removed, a
// guest gone, shutdown) can never leave a socket, an endpoint or a poller
// registration behind.
package flow

import (
	"context"
	"math"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/slipway-net/slipway/config"
)

// Ends are a flow's addresses.
type Ends struct {
	Proto config.Proto
	// Guest is the guest's end; Remote is the address the guest talked
	// to; Host is where the host socket really goes.
	//
	// For a flow through a published port (Forward != 0) the host client
	// opened it: Host is that client, and Remote is the address the guest
	// sees it coming from (the client itself, or the gateway).
	Guest, Remote, Host netip.AddrPort
	// Forward is the published port's forward ID, 0 for flows the guest
	// opened.
	Forward uint64
}

// Flow is one flow between a guest and a host socket.
type Flow struct {
	Ends
	ID      uint64
	Started time.Time
	// ToHost and ToGuest count payload bytes each way.
	ToHost, ToGuest atomic.Uint64

	state atomic.Value // string
	last  atomic.Int64 // unix nanoseconds of the last activity (Touch)

	table  *Table
	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	closed  bool
	release func() // set by Start, run by Close
}

// State is a short description ("connecting", "established", ...).
func (f *Flow) State() string {
	s, _ := f.state.Load().(string)
	return s
}

// SetState sets the flow's state description.
func (f *Flow) SetState(s string) { f.state.Store(s) }

// Context is done once the flow is closed: dials and waits made on the
// flow's behalf use it, so a Close during set-up ends them at once.
func (f *Flow) Context() context.Context { return f.ctx }

// Done is closed once the flow is closed.
func (f *Flow) Done() <-chan struct{} { return f.ctx.Done() }

// Touch records activity now (see CloseWhenIdle).
func (f *Flow) Touch() { f.last.Store(time.Now().UnixNano()) }

// LastActive is when Touch was last called (or the flow started).
func (f *Flow) LastActive() time.Time { return time.Unix(0, f.last.Load()) }

// Start hands the flow what Close must release. It reports false when the
// flow was closed while it was opening: release has then run already, and
// the caller must not use what it released. Start is called once.
func (f *Flow) Start(release func()) bool {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		release()
		return false
	}
	f.release = release
	f.mu.Unlock()
	return true
}

// Close ends the flow: it cancels Context, releases what Start handed over
// and frees the flow's slot in the table. It may be called any number of
// times, from any goroutine, in any phase.
func (f *Flow) Close() {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return
	}
	f.closed = true
	release := f.release
	f.release = nil
	f.mu.Unlock()
	f.cancel()
	if release != nil {
		release()
	}
	f.table.remove(f)
}

// Closed reports whether Close has been called.
func (f *Flow) Closed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.closed
}

// CloseWhenIdle closes the flow once Touch has not been called for idle.
// The timer re-arms itself for the time left since the last activity, so
// traffic costs an atomic store, not a timer reset. Stop the returned timer
// when the flow is released.
func (f *Flow) CloseWhenIdle(idle time.Duration) *time.Timer {
	return f.closeWhenIdleFor(func() time.Duration { return idle })
}

// closeWhenIdleFor is CloseWhenIdle with a timeout that may change over
// the flow's life (asked anew at every check).
func (f *Flow) closeWhenIdleFor(idle func() time.Duration) *time.Timer {
	var timer *time.Timer
	check := func() {
		limit := idle()
		since := time.Since(f.LastActive())
		if since >= limit {
			f.Close()
			return
		}
		timer.Reset(limit - since)
	}
	// Armed only once timer is assigned: check reads it.
	timer = time.AfterFunc(time.Duration(math.MaxInt64), check)
	timer.Reset(idle())
	return timer
}
