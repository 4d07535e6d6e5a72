package flow

import (
	"context"
	"errors"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/slipway-net/slipway/config"
)

// Why Reserve refuses a flow.
var (
	// ErrClosed reports a table (or its poller) that was closed.
	ErrClosed = errors.New("flow table closed")
	// ErrFull: the table holds its maximum of flows.
	ErrFull = errors.New("flow limit reached")
	// ErrGuestUDPLimit: the guest has its maximum of UDP flows open.
	ErrGuestUDPLimit = errors.New("the guest's UDP flow limit reached")
	// ErrRate: the guest opens flows faster than its rate allows.
	ErrRate = errors.New("the guest's new-flow rate limit reached")
)

// Limits are a table's bounds.
type Limits struct {
	// Max bounds every flow, published ones included.
	Max int
	// UDPPerGuest and NewPerSecond bound the flows each guest address
	// opens itself (not those of published ports, which host clients
	// open): UDP flows open at once, and new flows per second.
	UDPPerGuest  int
	NewPerSecond int
	// Now is the clock of the rate limit; nil means time.Now.
	Now func() time.Time
}

// Table holds every live flow and bounds how many there are.
type Table struct {
	max int

	ctx    context.Context // parent of every flow's context
	cancel context.CancelFunc

	mu     sync.Mutex
	closed bool
	nextID uint64
	flows  map[uint64]*Flow
	guests guestLimits
	// drained, made by Close when flows are still being closed by other
	// goroutines, is closed by the remove that empties the table.
	drained chan struct{}

	refusedFull, refusedUDP, refusedRate atomic.Uint64

	pollMu     sync.Mutex
	poll       *poller
	pollClosed bool // no poller from now on
}

// NewTable returns a table with the given limits.
func NewTable(l Limits) *Table {
	now := l.Now
	if now == nil {
		now = time.Now
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Table{
		max: l.Max, ctx: ctx, cancel: cancel, flows: make(map[uint64]*Flow),
		guests: newGuestLimits(l.UDPPerGuest, l.NewPerSecond, now),
	}
}

// Refusals count the flows Reserve refused, by limit.
type Refusals struct {
	Full     uint64 `counter:"refused_full"`
	GuestUDP uint64 `counter:"refused_guest_udp"`
	Rate     uint64 `counter:"refused_rate"`
}

// Refusals returns the table's refusal counters.
func (t *Table) Refusals() Refusals {
	return Refusals{Full: t.refusedFull.Load(), GuestUDP: t.refusedUDP.Load(), Rate: t.refusedRate.Load()}
}

// Max is the table's limit.
func (t *Table) Max() int { return t.max }

// Reserve takes a slot for a new flow (see the package comment for what
// follows). It refuses with ErrClosed, or with the limit that was hit
// (counted in Refusals).
func (t *Table) Reserve(e Ends) (*Flow, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, ErrClosed
	}
	if len(t.flows) >= t.max {
		t.refusedFull.Add(1)
		return nil, ErrFull
	}
	if e.Forward == 0 {
		if err := t.guests.admit(e.Guest.Addr(), e.Proto); err != nil {
			if err == ErrRate {
				t.refusedRate.Add(1)
			} else {
				t.refusedUDP.Add(1)
			}
			return nil, err
		}
	}
	t.nextID++
	f := &Flow{Ends: e, ID: t.nextID, Started: time.Now(), table: t}
	f.ctx, f.cancel = context.WithCancel(t.ctx)
	f.last.Store(f.Started.UnixNano())
	f.SetState("connecting")
	t.flows[f.ID] = f
	return f, nil
}

func (t *Table) remove(f *Flow) {
	t.mu.Lock()
	delete(t.flows, f.ID)
	if f.Forward == 0 {
		t.guests.release(f.Guest.Addr(), f.Proto)
	}
	if t.drained != nil && len(t.flows) == 0 {
		close(t.drained)
		t.drained = nil
	}
	t.mu.Unlock()
}

// closeWait bounds how long Close waits for flows other goroutines are
// closing: a release that never returned must not hang a shutdown.
const closeWait = 5 * time.Second

// Len is the number of live flows.
func (t *Table) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.flows)
}

// List returns the live flows ordered by ID.
func (t *Table) List() []*Flow {
	t.mu.Lock()
	out := make([]*Flow, 0, len(t.flows))
	for _, f := range t.flows {
		out = append(out, f)
	}
	t.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Count is how many live flows of each protocol there are, and how many of
// them came through published ports.
func (t *Table) Count() (byProto map[config.Proto]int, published int) {
	byProto = map[config.Proto]int{}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, f := range t.flows {
		byProto[f.Proto]++
		if f.Forward != 0 {
			published++
		}
	}
	return byProto, published
}

// CloseWhere closes every flow for which match is true and reports how
// many it closed.
func (t *Table) CloseWhere(match func(*Flow) bool) int {
	n := 0
	for _, f := range t.List() {
		if match(f) {
			f.Close()
			n++
		}
	}
	return n
}

// Close ends every flow, including those still opening, and the poller.
// Afterwards Reserve refuses and the poller is gone. A flow that another
// goroutine had begun to close is waited for (within closeWait): its
// Flow.Close returns at once to everyone but the first caller, so without
// the wait Close could return with that flow still releasing.
func (t *Table) Close() {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	t.cancel()
	t.CloseWhere(func(*Flow) bool { return true })
	t.mu.Lock()
	var drained chan struct{}
	if len(t.flows) > 0 {
		if t.drained == nil {
			t.drained = make(chan struct{})
		}
		drained = t.drained
	}
	t.mu.Unlock()
	if drained != nil {
		select {
		case <-drained:
		case <-time.After(closeWait):
		}
	}
	t.pollMu.Lock()
	p := t.poll
	t.pollClosed = true
	t.pollMu.Unlock()
	if p != nil {
		p.close()
	}
}

// poller returns the table's poller, which wakes idle flows' pumps when
// their host socket has data; it starts with the first flow that needs it.
func (t *Table) poller() (*poller, error) {
	t.pollMu.Lock()
	defer t.pollMu.Unlock()
	if t.pollClosed {
		return nil, ErrClosed
	}
	if t.poll == nil {
		p, err := newPoller()
		if err != nil {
			return nil, err
		}
		t.poll = p
	}
	return t.poll, nil
}
