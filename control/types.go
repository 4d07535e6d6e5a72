package control

import (
	"time"

	"github.com/slipway-net/slipway/config"
	"github.com/slipway-net/slipway/internal/flow"
	"github.com/slipway-net/slipway/internal/publish"
	"github.com/slipway-net/slipway/internal/vswitch"
	"github.com/slipway-net/slipway/network"
)

// The API's JSON shapes; `slipway ctl` decodes the same types.

// ErrorResponse is the body of every error answer.
type ErrorResponse struct {
	Error string `json:"error"`
}

// ForwardRequest is the body of POST /v1/forwards: either Spec, in the
// syntax of --publish, or the rule's fields.
type ForwardRequest struct {
	Spec string `json:"spec,omitempty"`
	config.PublishRule
}

// Link is one guest link and its counters (rx is from the guest).
type Link struct {
	Port     int               `json:"port"`
	Name     string            `json:"name"`
	Since    time.Time         `json:"since"`
	RxFrames uint64            `json:"rx_frames"`
	RxBytes  uint64            `json:"rx_bytes"`
	TxFrames uint64            `json:"tx_frames"`
	TxBytes  uint64            `json:"tx_bytes"`
	Drops    map[string]uint64 `json:"drops"`
}

// Flow is one flow between a guest and the host.
type Flow struct {
	ID    uint64 `json:"id"`
	Proto string `json:"proto"`
	// Direction is "outbound" (the guest opened it) or "published" (a
	// host client came in through forward Forward).
	Direction string `json:"direction"`
	Forward   uint64 `json:"forward,omitempty"`
	// Guest is the guest's end. Remote is the peer as the guest sees it;
	// Host is the host socket's far end (the outbound destination or the
	// published port's client).
	Guest        string    `json:"guest"`
	Remote       string    `json:"remote"`
	Host         string    `json:"host"`
	State        string    `json:"state"`
	ToHostBytes  uint64    `json:"to_host_bytes"`
	ToGuestBytes uint64    `json:"to_guest_bytes"`
	Started      time.Time `json:"started"`
	AgeSeconds   float64   `json:"age_seconds"`
}

// Stats is the body of GET /v1/stats.
type Stats struct {
	UptimeSeconds float64           `json:"uptime_seconds"`
	Links         int               `json:"links"`
	Flows         FlowStats         `json:"flows"`
	Forwarder     ForwarderStats    `json:"forwarder"`
	Publish       publish.Stats     `json:"publish"`
	StackDrops    map[string]uint64 `json:"stack_drops"`
	DHCP          DHCPStats         `json:"dhcp"`
	DNS           DNSStats          `json:"dns"`
}

// FlowStats counts live flows and refusals for a full table.
type FlowStats struct {
	Total       int    `json:"total"`
	TCP         int    `json:"tcp"`
	UDP         int    `json:"udp"`
	Published   int    `json:"published"`
	Max         int    `json:"max"`
	RefusedFull uint64 `json:"refused_full"`
}

// ForwarderStats counts outbound flows refused (by policy reason) and host
// connects that failed.
type ForwarderStats struct {
	Refused       map[string]uint64 `json:"refused"`
	ConnectFailed uint64            `json:"connect_failed"`
}

// DHCPStats summarises the DHCP server.
type DHCPStats struct {
	Leases   int               `json:"leases"`
	Received uint64            `json:"received"`
	Replied  uint64            `json:"replied"`
	Dropped  map[string]uint64 `json:"dropped"`
}

// DNSStats summarises the DNS outbound.
type DNSStats struct {
	Queries          uint64            `json:"queries"`
	Local            uint64            `json:"local"`
	Forwarded        uint64            `json:"forwarded"`
	ServFail         uint64            `json:"servfail"`
	Overload         uint64            `json:"overload"`
	FormErr          uint64            `json:"formerr"`
	UpstreamFailures uint64            `json:"upstream_failures"`
	Dropped          map[string]uint64 `json:"dropped"`
}

// Health is the body of GET /v1/health.
type Health struct {
	Status        string  `json:"status"`
	UptimeSeconds float64 `json:"uptime_seconds"`
}

func linkView(p *vswitch.Port) Link {
	st := &p.Stats
	l := Link{
		Port: p.ID(), Name: p.Name(), Since: p.Since,
		RxFrames: st.RxFrames.Load(), RxBytes: st.RxBytes.Load(),
		TxFrames: st.TxFrames.Load(), TxBytes: st.TxBytes.Load(),
		Drops: map[string]uint64{
			"runt":     st.DropRunt.Load(),
			"bad_src":  st.DropBadSrc.Load(),
			"hairpin":  st.DropHairpin.Load(),
			"no_gso":   st.DropNoGSO.Load(),
			"checksum": st.DropChecksum.Load(),
			"tx_error": st.DropTxError.Load(),
			"tx_full":  st.DropTxFull.Load(),
			"router":   st.DropRouter.Load(),
		},
	}
	// Drops the transport saw itself, before or after the switch.
	if c := p.LinkCounters(); c != nil {
		l.Drops["rx_oversized"] = c.RxOversized.Load()
		l.Drops["rx_overrun"] = c.RxOverrun.Load()
		l.Drops["rx_bad_framing"] = c.RxBadFraming.Load()
		l.Drops["tx_too_large"] = c.TxTooLarge.Load()
	}
	return l
}

func links(n *network.Network) []Link {
	ports := n.Switch().Ports()
	out := make([]Link, 0, len(ports))
	for _, p := range ports {
		out = append(out, linkView(p))
	}
	return out
}

func flowView(f *flow.Flow, now time.Time) Flow {
	dir := "outbound"
	if f.Forward != 0 {
		dir = "published"
	}
	return Flow{
		ID: f.ID, Proto: string(f.Proto), Direction: dir, Forward: f.Forward,
		Guest: f.Guest.String(), Remote: f.Remote.String(), Host: f.Host.String(),
		State: f.State(), ToHostBytes: f.ToHost.Load(), ToGuestBytes: f.ToGuest.Load(),
		Started: f.Started, AgeSeconds: now.Sub(f.Started).Seconds(),
	}
}

func flows(n *network.Network) []Flow {
	now := time.Now()
	list := n.Flows().List()
	out := make([]Flow, 0, len(list))
	for _, f := range list {
		out = append(out, flowView(f, now))
	}
	return out
}

func stats(n *network.Network) Stats {
	st := Stats{
		UptimeSeconds: time.Since(n.Started()).Seconds(),
		Links:         len(n.Switch().Ports()),
		Publish:       n.Publisher().Stats(),
		Forwarder:     ForwarderStats{Refused: map[string]uint64{}, ConnectFailed: n.Forwarder().ConnectFailed.Load()},
	}
	table := n.Flows()
	st.Flows.Max = n.Config().Limits.MaxFlows
	st.Flows.RefusedFull = table.Refused.Load()
	for _, f := range table.List() {
		st.Flows.Total++
		switch f.Proto {
		case config.TCP:
			st.Flows.TCP++
		case config.UDP:
			st.Flows.UDP++
		}
		if f.Forward != 0 {
			st.Flows.Published++
		}
	}
	for reason, v := range n.Forwarder().Refused() {
		st.Forwarder.Refused[string(reason)] = v
	}
	d := n.Stack().Drops()
	st.StackDrops = map[string]uint64{
		"runt":          d.Runt.Load(),
		"unknown_type":  d.UnknownType.Load(),
		"bad_ip_header": d.BadIPHeader.Load(),
		"bad_checksum":  d.BadChecksum.Load(),
		"bad_l4_header": d.BadL4Header.Load(),
		"tx_too_large":  d.TxTooLarge.Load(),
	}
	ds := n.DHCP().Stats()
	st.DHCP = DHCPStats{Leases: len(n.LeaseInfos()), Received: ds.Received, Replied: ds.Replied, Dropped: ds.Dropped}
	ns := n.DNS().Stats()
	st.DNS = DNSStats{
		Queries: ns.Queries, Local: ns.Local, Forwarded: ns.Forwarded, ServFail: ns.ServFail,
		Overload: ns.Overload, FormErr: ns.FormErr, UpstreamFailures: ns.UpstreamFailures, Dropped: ns.Dropped,
	}
	return st
}
