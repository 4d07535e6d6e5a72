package outbound

import (
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/slipway-net/slipway/config"
)

// Flow is one guest flow carried to a host socket.
type Flow struct {
	ID    uint64
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
	Started time.Time
	// ToHost and ToGuest count payload bytes each way.
	ToHost, ToGuest atomic.Uint64
	state           atomic.Value // string

	closeOnce sync.Once
	closeFn   func()
	table     *Table
}

// State is a short description ("connecting", "established", ...).
func (f *Flow) State() string {
	s, _ := f.state.Load().(string)
	return s
}

func (f *Flow) setState(s string) { f.state.Store(s) }

// SetState sets the flow's state description.
func (f *Flow) SetState(s string) { f.setState(s) }

// Close ends the flow, releasing its sockets and its slot in the table.
func (f *Flow) Close() {
	f.closeOnce.Do(func() {
		if f.closeFn != nil {
			f.closeFn()
		}
		f.table.remove(f)
	})
}

// Table holds every live flow and bounds how many there are.
type Table struct {
	max int

	mu     sync.Mutex
	nextID uint64
	flows  map[uint64]*Flow
	// Refused counts flows refused because the table was full.
	Refused atomic.Uint64

	pollOnce sync.Once
	poll     *poller
	pollErr  error
}

// poller returns the table's poller, which wakes idle flows' pumps when
// their host socket has data; it starts with the first flow that needs it.
func (t *Table) poller() (*poller, error) {
	t.pollOnce.Do(func() { t.poll, t.pollErr = newPoller() })
	return t.poll, t.pollErr
}

// Close ends every flow and the table's poller.
func (t *Table) Close() {
	t.CloseWhere(func(*Flow) bool { return true })
	t.pollOnce.Do(func() {}) // no poller from now on
	if t.poll != nil {
		t.poll.close()
	}
}

// NewTable returns a table allowing up to max flows.
func NewTable(max int) *Table {
	return &Table{max: max, flows: make(map[uint64]*Flow)}
}

// open registers a new flow, or returns nil when the table is full.
func (t *Table) open(proto config.Proto, guest, remote, host netip.AddrPort) *Flow {
	return t.OpenPublished(proto, guest, remote, host, 0, nil)
}

// OpenPublished registers a flow a host client opened through published
// port forward, sharing the table's limit with the guests' flows; it
// returns nil when the table is full. closer, if not nil, is what Close
// releases; it is set before the flow is visible, so a concurrent Close
// cannot miss it.
func (t *Table) OpenPublished(proto config.Proto, guest, remote, host netip.AddrPort, forward uint64, closer func()) *Flow {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.flows) >= t.max {
		t.Refused.Add(1)
		return nil
	}
	t.nextID++
	f := &Flow{ID: t.nextID, Proto: proto, Guest: guest, Remote: remote, Host: host, Forward: forward, Started: time.Now(), table: t, closeFn: closer}
	f.setState("connecting")
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

// CloseWhere closes every flow for which match is true.
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
