// Package policy decides, once per flow, where a guest's outbound flow goes
// on the host: to the destination it named, to the host's loopback (the
// gateway address), or nowhere. Every address rule lives here.
package policy

import (
	"net/netip"
	"sync/atomic"

	"github.com/slipway-net/slipway/config"
)

// Rules describe the virtual network's addresses and the user's choices.
// The fields are fixed once the network runs; the egress rules can change
// at any time (SetEgress), and Outbound, called on many goroutines at
// once, always sees one whole list, the old or the new.
type Rules struct {
	// Subnets are the guest networks (IPv4 and optionally IPv6).
	Subnets []netip.Prefix
	// Gateways are the addresses that stand for the host; flows to them
	// reach the host's loopback (127.0.0.1 / ::1) unless NoHostLoopback.
	Gateways []netip.Addr
	// Services are addresses slipway itself serves (DNS); flows to other
	// ports there have nowhere to go.
	Services []netip.Addr
	// NoHostLoopback refuses flows to the gateway addresses.
	NoHostLoopback bool
	// Restrict refuses every outbound flow.
	Restrict bool
	// HostOnly refuses every flow beyond the host (config.ModeHostOnly):
	// the gateways (the host's loopback) and the aliases (the host's own
	// addresses) still answer, subject to the other rules; Restrict and
	// NoHostLoopback, being stricter, win where they apply.
	HostOnly bool
	// AllowLinkLocal lets flows reach link-local destinations
	// (169.254.0.0/16, cloud metadata among them, and fe80::/10).
	AllowLinkLocal bool

	// Deny are destinations refused (other than the gateways and aliases,
	// which stand for the host).
	Deny []netip.Prefix
	// Aliases send flows to an address (the key) to another (the value)
	// on the host: pasta's --map-guest-addr, which stands for the host at
	// one of its own addresses.
	Aliases map[netip.Addr]netip.Addr

	// egress is the user's rule list, replaced whole, never changed in
	// place.
	egress atomic.Pointer[[]config.EgressRule]
}

// SetEgress replaces the egress rules; flows decided from now on see the
// new list. The caller must not change rules afterwards.
func (r *Rules) SetEgress(rules []config.EgressRule) { r.egress.Store(&rules) }

// Egress returns the egress rules in force (not to be changed).
func (r *Rules) Egress() []config.EgressRule {
	if p := r.egress.Load(); p != nil {
		return *p
	}
	return nil
}

// egressVerdict applies the first egress rule that matches.
func (r *Rules) egressVerdict(proto config.Proto, dst netip.AddrPort) Reason {
	for _, e := range r.Egress() {
		if e.Matches(proto, dst) {
			if e.Action == config.EgressDeny {
				return DeniedByRule
			}
			return Allowed
		}
	}
	return Allowed
}

// Reason says why a flow was refused; the empty Reason means allowed.
type Reason string

// Reasons a flow is refused.
const (
	Allowed         Reason = ""
	Restricted      Reason = "restricted mode"
	HostOnlyMode    Reason = "host-only mode"
	NoLoopback      Reason = "host loopback disabled"
	NotRoutable     Reason = "destination not routable (broadcast, multicast, unspecified or loopback)"
	InsideSubnet    Reason = "destination is inside the guest network"
	Denied          Reason = "destination denied"
	ServiceAddrPort Reason = "no service on this port of slipway's address"
	LinkLocal       Reason = "link-local destination (cloud metadata); --allow-link-local permits it"
	DeniedByRule    Reason = "denied by an egress rule"
)

// Verdict is the decision for one flow.
type Verdict struct {
	// Target is where the host socket connects or sends.
	Target netip.AddrPort
	// Reason is empty when the flow is allowed.
	Reason Reason
}

// Allowed reports whether the flow may proceed.
func (v Verdict) Allowed() bool { return v.Reason == Allowed }

// Outbound decides a flow a guest opens to dst.
func (r *Rules) Outbound(proto config.Proto, dst netip.AddrPort) Verdict {
	a := dst.Addr().Unmap()
	for _, g := range r.Gateways {
		if a == g {
			if r.NoHostLoopback {
				return Verdict{Reason: NoLoopback}
			}
			if r.Restrict {
				return Verdict{Reason: Restricted}
			}
			// The rules see the gateway as the guest named it.
			if why := r.egressVerdict(proto, dst); why != Allowed {
				return Verdict{Reason: why}
			}
			lo := netip.IPv6Loopback()
			if a.Is4() {
				lo = netip.AddrFrom4([4]byte{127, 0, 0, 1})
			}
			return Verdict{Target: netip.AddrPortFrom(lo, dst.Port())}
		}
	}
	if to, ok := r.Aliases[a]; ok {
		if r.Restrict {
			return Verdict{Reason: Restricted}
		}
		return Verdict{Target: netip.AddrPortFrom(to, dst.Port())}
	}
	for _, s := range r.Services {
		if a == s {
			return Verdict{Reason: ServiceAddrPort}
		}
	}
	if r.Restrict {
		return Verdict{Reason: Restricted}
	}
	// Everything past here leaves the host (or would, like the host's
	// loopback named directly): host-only mode refuses it all, with a
	// reason of its own so the counters tell it from restrict.
	if r.HostOnly {
		return Verdict{Reason: HostOnlyMode}
	}
	// A guest must not reach the host's loopback by naming it directly:
	// that would bypass NoHostLoopback.
	if !a.IsValid() || a.IsUnspecified() || a.IsLoopback() || a.IsMulticast() || isBroadcast(a) {
		return Verdict{Reason: NotRoutable}
	}
	for _, p := range r.Subnets {
		if p.Contains(a) {
			return Verdict{Reason: InsideSubnet}
		}
	}
	for _, p := range r.Deny {
		if p.Contains(a) {
			return Verdict{Reason: Denied}
		}
	}
	// Link-local addresses are the host's own links: on a cloud VM,
	// 169.254.169.254 hands out the instance's credentials.
	if !r.AllowLinkLocal && a.IsLinkLocalUnicast() {
		return Verdict{Reason: LinkLocal}
	}
	if why := r.egressVerdict(proto, dst); why != Allowed {
		return Verdict{Reason: why}
	}
	return Verdict{Target: netip.AddrPortFrom(a, dst.Port())}
}

func isBroadcast(a netip.Addr) bool {
	return a == netip.AddrFrom4([4]byte{255, 255, 255, 255})
}

// FromConfig returns the rules of cfg's network, its egress rules in
// force and its address map (config.AddrMap) laid over: the network's
// own rules, and those a strict sandbox's launcher checks each host
// destination against, which must be the same.
func FromConfig(cfg config.Config) *Rules {
	r := &Rules{
		Subnets:        []netip.Prefix{cfg.CIDR},
		Gateways:       []netip.Addr{cfg.Gateway},
		Services:       []netip.Addr{cfg.DNSAddress},
		NoHostLoopback: cfg.NoHostLoopback,
		Restrict:       cfg.Restrict,
		HostOnly:       cfg.Mode == config.ModeHostOnly,
		AllowLinkLocal: cfg.AllowLinkLocal,
		Deny:           cfg.Deny,
	}
	if !cfg.NoIPv6 {
		r.Subnets = append(r.Subnets, cfg.IPv6Prefix)
		r.Gateways = append(r.Gateways, cfg.IPv6Gateway)
		r.Services = append(r.Services, cfg.IPv6DNS)
	}
	r.SetEgress(cfg.Egress)
	r.applyMap(cfg)
	return r
}

// applyMap lays the address map over the rules.
func (r *Rules) applyMap(cfg config.Config) {
	m := cfg.Map
	if m.Routed {
		// The guest's networks are the host's: every other address in
		// them is a neighbour of the host, reached like any other.
		r.Subnets = nil
	}
	if m.GatewayIsRouter {
		r.Gateways = nil
	}
	r.Gateways = append(r.Gateways, m.HostLoopback...)
	for _, a := range m.Guest {
		to := cfg.DHCPStart
		if a.Is6() {
			to = m.GuestIPv6
		}
		if !to.IsValid() {
			continue
		}
		if r.Aliases == nil {
			r.Aliases = map[netip.Addr]netip.Addr{}
		}
		r.Aliases[a] = to
	}
	r.Services = append(r.Services, MapDNS(cfg)...)
}

// MapDNS are the DNS forwarder's addresses beyond the network's own: the
// address map's.
func MapDNS(cfg config.Config) []netip.Addr {
	var out []netip.Addr
	for _, a := range cfg.Map.DNS {
		if a != cfg.DNSAddress && a != cfg.IPv6DNS {
			out = append(out, a)
		}
	}
	return out
}

// HostTarget decides a host destination as the strict sandbox's broker
// sees it, after the engine translated the guest's: allowed only if some
// flow a guest may open goes there. The host's loopback stands for the
// gateway of its family.
func (r *Rules) HostTarget(proto config.Proto, target netip.AddrPort) Reason {
	a := target.Addr().Unmap()
	if a.IsLoopback() {
		for _, g := range r.Gateways {
			if g.Is4() == a.Is4() {
				v := r.Outbound(proto, netip.AddrPortFrom(g, target.Port()))
				if v.Allowed() && v.Target.Addr() != a {
					return NotRoutable // 127.0.0.2 and the like
				}
				return v.Reason
			}
		}
		return NotRoutable
	}
	v := r.Outbound(proto, netip.AddrPortFrom(a, target.Port()))
	return v.Reason
}
