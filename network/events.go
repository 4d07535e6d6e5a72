package network

import (
	"errors"
	"net/netip"
	"sync"
	"time"

	"github.com/slipway-net/slipway/services/dhcp4"
	"github.com/slipway-net/slipway/services/dhcp6"
)

// Event types, as supervisors see them in the event stream.
const (
	EventLinkUp         = "link-up"
	EventLinkDown       = "link-down"
	EventLinkState      = "link-state"
	EventLeaseGranted   = "lease-granted"
	EventForwardAdded   = "forward-added"
	EventForwardRemoved = "forward-removed"
)

// MaxSubscribers bounds concurrent event subscriptions.
const MaxSubscribers = 16

// subscriptionBuffer is how many events a subscriber may fall behind
// before it is dropped: a supervisor that stops reading must not hold
// memory or slow the network down.
const subscriptionBuffer = 256

// ErrTooManySubscribers is returned by Subscribe at MaxSubscribers.
var ErrTooManySubscribers = errors.New("too many event subscribers")

// Event is one thing that happened on the network.
type Event struct {
	Time time.Time `json:"time"`
	Type string    `json:"type"`
	// Port and Link describe the link of link-up, link-down and
	// link-state.
	Port int    `json:"port,omitempty"`
	Link string `json:"link,omitempty"`
	// Up is a link's state after link-state (SetLinkDown).
	Up *bool `json:"up,omitempty"`
	// Lease is the lease of lease-granted (also sent on renewal).
	Lease *LeaseInfo `json:"lease,omitempty"`
	// Forward is the forward of forward-added and forward-removed.
	Forward *Forward `json:"forward,omitempty"`
}

// LeaseInfo is a DHCP or DHCPv6 lease as the API shows it. A DHCPv4
// client is known by its MAC, a DHCPv6 client by its DUID (hex) and IAID.
type LeaseInfo struct {
	MAC      string     `json:"mac,omitempty"`
	DUID     string     `json:"duid,omitempty"`
	IAID     uint32     `json:"iaid,omitempty"`
	Addr     netip.Addr `json:"addr"`
	Hostname string     `json:"hostname,omitempty"`
	Expires  time.Time  `json:"expires,omitzero"`
	Static   bool       `json:"static"`
}

// LeaseInfos converts DHCP leases for the API.
func LeaseInfos(ls []dhcp4.Lease) []LeaseInfo {
	out := make([]LeaseInfo, 0, len(ls))
	for _, l := range ls {
		out = append(out, leaseInfo(l))
	}
	return out
}

func lease6Info(l dhcp6.Lease) LeaseInfo {
	return LeaseInfo{DUID: l.DUID, IAID: l.IAID, Addr: l.Addr, Expires: l.Expires}
}

func leaseInfo(l dhcp4.Lease) LeaseInfo {
	return LeaseInfo{MAC: l.MAC, Addr: l.Addr, Hostname: l.Hostname, Expires: l.Expires, Static: l.Static}
}

// LeaseInfos lists every lease: DHCPv4's, then DHCPv6's.
func (n *Network) LeaseInfos() []LeaseInfo {
	out := LeaseInfos(n.Leases())
	if d6 := n.DHCP6(); d6 != nil {
		for _, l := range d6.Leases() {
			out = append(out, lease6Info(l))
		}
	}
	return out
}

// Subscription receives events on C until it is closed, the network
// closes, or it falls more than a buffer behind (C is then closed: the
// subscriber re-reads state and subscribes again).
type Subscription struct {
	C  <-chan Event
	c  chan Event
	ev *events
}

// Close ends the subscription.
func (s *Subscription) Close() { s.ev.drop(s) }

type events struct {
	mu     sync.Mutex
	subs   map[*Subscription]bool
	closed bool
}

func newEvents() *events { return &events{subs: map[*Subscription]bool{}} }

func (e *events) subscribe() (*Subscription, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil, ErrClosed
	}
	if len(e.subs) >= MaxSubscribers {
		return nil, ErrTooManySubscribers
	}
	c := make(chan Event, subscriptionBuffer)
	s := &Subscription{C: c, c: c, ev: e}
	e.subs[s] = true
	return s, nil
}

// emit hands ev to every subscriber without blocking.
func (e *events) emit(ev Event) {
	ev.Time = time.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	for s := range e.subs {
		select {
		case s.c <- ev:
		default:
			delete(e.subs, s)
			close(s.c)
		}
	}
}

func (e *events) drop(s *Subscription) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.subs[s] {
		delete(e.subs, s)
		close(s.c)
	}
}

func (e *events) close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.closed = true
	for s := range e.subs {
		delete(e.subs, s)
		close(s.c)
	}
}

// Subscribe starts a subscription to the network's events.
func (n *Network) Subscribe() (*Subscription, error) { return n.events.subscribe() }
