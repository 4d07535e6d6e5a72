package network

import (
	"net/netip"
	"time"

	"github.com/slipway-net/slipway/config"
	"github.com/slipway-net/slipway/internal/flow"
	"github.com/slipway-net/slipway/internal/publish"
)

// What the network shows of itself: its links, flows and published ports
// as values an embedder (or the control API) can keep.

// LinkInfo is one guest link attached to the network.
type LinkInfo struct {
	Port  int
	Name  string
	Since time.Time
	// Up is false while the link is set down (SetLinkUp).
	Up bool
	// Counters are the link's traffic (rx_frames, rx_bytes, tx_frames,
	// tx_bytes; rx is from the guest) and its drops by reason, the
	// switch's and the link's own.
	Counters []Counter
}

// Links lists the guest links attached now.
func (n *Network) Links() []LinkInfo {
	ports := n.sw.Ports()
	out := make([]LinkInfo, 0, len(ports))
	for _, p := range ports {
		out = append(out, linkInfo(p))
	}
	return out
}

// SetLinkUp takes the link on port down or up again, as unplugging and
// plugging a cable would: while down, frames from it and to it are
// dropped (counted as link_down), and a link that can tell its VM (a
// vhost-user device) reports the status change to it.
func (n *Network) SetLinkUp(port int, up bool) error {
	p, err := n.port(port)
	if err != nil {
		return err
	}
	p.SetUp(up)
	n.log.Info("link state set", "port", port, "link", p.Name(), "up", up)
	n.events.emit(Event{Type: EventLinkState, Port: port, Link: p.Name(), Up: &up})
	return nil
}

// FlowInfo is one flow between a guest and the host.
type FlowInfo struct {
	ID    uint64
	Proto config.Proto
	// Guest is the guest's end; Remote is the peer as the guest sees it;
	// Host is the host socket's far end (the outbound destination or the
	// published port's client).
	Guest, Remote, Host netip.AddrPort
	// Forward is the published port a host client came in through, 0 for
	// flows the guest opened.
	Forward uint64
	State   string
	// ToHost and ToGuest count payload bytes each way.
	ToHost, ToGuest uint64
	Started         time.Time
}

// Flows lists the live flows, ordered by ID.
func (n *Network) Flows() []FlowInfo {
	list := n.flows.List()
	out := make([]FlowInfo, 0, len(list))
	for _, f := range list {
		out = append(out, flowInfo(f))
	}
	return out
}

func flowInfo(f *flow.Flow) FlowInfo {
	return FlowInfo{
		ID: f.ID, Proto: f.Proto, Guest: f.Guest, Remote: f.Remote, Host: f.Host, Forward: f.Forward,
		State: f.State(), ToHost: f.ToHost.Load(), ToGuest: f.ToGuest.Load(), Started: f.Started,
	}
}

// Forward is one published rule.
type Forward struct {
	ID uint64 `json:"id"`
	config.PublishRule
	Added time.Time `json:"added"`
	// Connections counts TCP connections accepted and UDP clients seen.
	Connections uint64 `json:"connections"`
}

func forwardOf(f publish.Forward) Forward {
	return Forward{ID: f.ID, PublishRule: f.PublishRule, Added: f.Added, Connections: f.Connections}
}

// Errors of Publish and Unpublish, wrapped with details.
var (
	// ErrNotFound: no forward with that ID.
	ErrNotFound = publish.ErrNotFound
	// ErrConflict: the host port is published already.
	ErrConflict = publish.ErrConflict
	// ErrLimit: --max-published-ports are published.
	ErrLimit = publish.ErrLimit
)

// ErrClosed is returned by calls on a closed network.
var ErrClosed = publish.ErrClosed

// Counter is the value of the link's counter called name (0 if none).
func (l LinkInfo) Counter(name string) uint64 {
	return sum(l.Counters, name)
}

// Counter is the value of a counter of section (0 if none), summed over
// reasons for a count kept by reason.
func (n *Network) Counter(section, name string) uint64 {
	for _, s := range n.Counters() {
		if s.Name == section {
			return sum(s.Counters, name)
		}
	}
	return 0
}

func sum(cs []Counter, name string) uint64 {
	var v uint64
	for _, c := range cs {
		if c.Name == name {
			v += c.Value
		}
	}
	return v
}
