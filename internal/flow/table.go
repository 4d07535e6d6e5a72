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

// ErrClosed reports a table (or its poller) that was closed.
var ErrClosed = errors.New("flow table closed")

// Table holds every live flow and bounds how many there are.
type Table struct {
	max int

	ctx    context.Context // parent of every flow's context
	cancel context.CancelFunc

	mu     sync.Mutex
	closed bool
	nextID uint64
	flows  map[uint64]*Flow
	// Refused counts flows refused because the table was full.
	Refused atomic.Uint64

	pollMu     sync.Mutex
	poll       *poller
	pollClosed bool // no poller from now on
}

// NewTable returns a table allowing up to max flows.
func NewTable(max int) *Table {
	ctx, cancel := context.WithCancel(context.Background())
	return &Table{max: max, ctx: ctx, cancel: cancel, flows: make(map[uint64]*Flow)}
}

// Max is the table's limit.
func (t *Table) Max() int { return t.max }

// Reserve takes a slot for a new flow (see the package comment for what
// follows). It returns nil when the table is full (counted in Refused) or
// closed.
func (t *Table) Reserve(e Ends) *Flow {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	if len(t.flows) >= t.max {
		t.Refused.Add(1)
		return nil
	}
	t.nextID++
	f := &Flow{Ends: e, ID: t.nextID, Started: time.Now(), table: t}
	f.ctx, f.cancel = context.WithCancel(t.ctx)
	f.last.Store(f.Started.UnixNano())
	f.SetState("connecting")
	t.flows[f.ID] = f
	return f
}

func (t *Table) remove(f *Flow) {
	t.mu.Lock()
	delete(t.flows, f.ID)
	t.mu.Unlock()
}

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
// Afterwards Reserve refuses and the poller is gone.
func (t *Table) Close() {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	t.cancel()
	t.CloseWhere(func(*Flow) bool { return true })
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
