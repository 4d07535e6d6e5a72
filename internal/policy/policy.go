// Package policy decides, once per flow, where a guest's outbound flow goes
// on the host: to the destination it named, to the host's loopback (the
// gateway address), or nowhere. Every address rule lives here.
package policy

import (
	"net/netip"

	"github.com/slipway-net/slipway/config"
)

// Rules describe the virtual network's addresses and the user's choices.
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
	// Deny are destinations refused (other than the gateways and aliases,
	// which stand for the host).
	Deny []netip.Prefix
	// Aliases send flows to an address (the key) to another (the value)
	// on the host: pasta's --map-guest-addr, which stands for the host at
	// one of its own addresses.
	Aliases map[netip.Addr]netip.Addr
}

// Reason says why a flow was refused; the empty Reason means allowed.
type Reason string

// Reasons a flow is refused.
const (
	Allowed         Reason = ""
	Restricted      Reason = "restricted mode"
	NoLoopback      Reason = "host loopback disabled"
	NotRoutable     Reason = "destination not routable (broadcast, multicast, unspecified or loopback)"
	InsideSubnet    Reason = "destination is inside the guest network"
	Denied          Reason = "destination denied"
	ServiceAddrPort Reason = "no service on this port of slipway's address"
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
	return Verdict{Target: netip.AddrPortFrom(a, dst.Port())}
}

func isBroadcast(a netip.Addr) bool {
	return a == netip.AddrFrom4([4]byte{255, 255, 255, 255})
}
