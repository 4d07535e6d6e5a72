package network

import (
	"fmt"

	"github.com/slipway-net/slipway/config"
	"github.com/slipway-net/slipway/internal/counters"
	"github.com/slipway-net/slipway/internal/flow"
	"github.com/slipway-net/slipway/services/dhcp4"
	"github.com/slipway-net/slipway/services/dhcp6"
)

// Counter is one counter of the network.
type Counter struct {
	Name  string
	Key   string
	Value uint64
	// Gauge marks a level (leases held, flows open) rather than a count
	// that only grows.
	Gauge bool
	// Map marks a count kept by reason (or by listener): Key is the
	// reason. One with nothing counted yet shows once, with no Key.
	Map bool
}

// Section is one group of counters, named as /v1/stats shows it.
type Section struct {
	Name     string
	Counters []Counter
}

// flowCounts are the flow table's levels and its refusals.
type flowCounts struct {
	Total     int `counter:"total,gauge"`
	TCP       int `counter:"tcp,gauge"`
	UDP       int `counter:"udp,gauge"`
	ICMP      int `counter:"icmp,gauge"`
	Published int `counter:"published,gauge"`
	Max       int `counter:"max,gauge"`
	flow.Refusals
}

// dhcpCounts are a DHCP server's counters and the leases it holds.
type dhcpCounts struct {
	Leases int `counter:"leases,gauge"`
	dhcp4.Stats
}

type dhcp6Counts struct {
	Leases int `counter:"leases,gauge"`
	dhcp6.Stats
}

// Counters returns every counter of the network, by section: the one
// table the control API's statistics and metrics are made from. Sections
// of parts that are off (IPv6) are left out.
func (n *Network) Counters() []Section {
	byProto, published := n.flows.Count()
	fc := flowCounts{
		Total: n.flows.Len(), TCP: byProto[config.TCP], UDP: byProto[config.UDP], ICMP: byProto[config.ICMP],
		Published: published, Max: n.flows.Max(), Refusals: n.flows.Refusals(),
	}
	fwd, pub := n.fwd.Stats(), n.pub.Stats()
	out := []Section{
		section("flows", &fc),
		section("forwarder", &fwd),
		section("publish", &pub),
		section("stack_drops", n.st.Drops()),
	}
	sr := n.st.Refusals()
	out = append(out, section("stack", &sr))
	if r := n.svc.router; r != nil {
		out = append(out, section("router", r.Stats()))
	}
	dc := dhcpCounts{Leases: len(n.svc.dhcp.Leases()), Stats: n.svc.dhcp.Stats()}
	out = append(out, section("dhcp", &dc))
	if d6 := n.svc.dhcp6; d6 != nil {
		c := dhcp6Counts{Leases: len(d6.Leases()), Stats: d6.Stats()}
		out = append(out, section("dhcp6", &c))
	}
	dns := n.svc.dns.Stats()
	out = append(out, section("dns", &dns))
	if l := n.listenerCounters(); len(l.Counters) > 0 {
		out = append(out, l)
	}
	return out
}

// CountedListener is a Listener that keeps counters of its own (a
// datagram socket serving many VMs counts what no VM could take): Counters
// returns a pointer to a struct of tagged counters.
type CountedListener interface {
	Listener
	Counters() any
}

// listenerCounters is the section of the listeners' own counters, each
// keyed by its listener.
func (n *Network) listenerCounters() Section {
	n.mu.Lock()
	ls := append([]Listener(nil), n.listeners...)
	n.mu.Unlock()
	s := Section{Name: "listeners"}
	for _, l := range ls {
		cl, ok := l.(CountedListener)
		if !ok {
			continue
		}
		for _, v := range counters.Walk(cl.Counters()) {
			s.Counters = append(s.Counters, Counter{Name: v.Name, Key: fmt.Sprint(l), Value: v.Value, Gauge: v.Gauge, Map: true})
		}
	}
	return s
}

func section(name string, of any) Section {
	return Section{Name: name, Counters: fromValues(counters.Walk(of))}
}

func fromValues(vs []counters.Value) []Counter {
	out := make([]Counter, len(vs))
	for i, v := range vs {
		out[i] = Counter(v)
	}
	return out
}
