package network

import (
	"net/netip"

	"github.com/slipway-net/slipway/config"
	"github.com/slipway-net/slipway/internal/policy"
)

// mapLocal adds to the stack's local addresses the extra DNS ones of the
// address map (policy.FromConfig lays the map over the flow rules).
func mapLocal(cfg config.Config, local []netip.Addr) []netip.Addr {
	return append(local, extraDNS(cfg)...)
}

// routedNeighbors are the prefixes whose addresses the stack answers
// address resolution for in a routed network, and the guests' own
// addresses, which it leaves to them.
func routedNeighbors(cfg config.Config) (proxy []netip.Prefix, guests []netip.Addr) {
	proxy = []netip.Prefix{cfg.CIDR}
	guests = []netip.Addr{cfg.DHCPStart}
	if !cfg.NoIPv6 {
		proxy = append(proxy, cfg.IPv6Prefix)
		if cfg.Map.GuestIPv6.IsValid() {
			guests = append(guests, cfg.Map.GuestIPv6)
		}
	}
	return proxy, guests
}

// extraDNS are the DNS forwarder's addresses beyond the network's own.
func extraDNS(cfg config.Config) []netip.Addr { return policy.MapDNS(cfg) }

// ownedMapAddrs are the map's addresses the stack takes as its own: the
// extra DNS addresses it serves at, and those standing for the host, so
// that it answers address resolution for them where they lie in the
// guests' network (gvproxy's host at .254).
func ownedMapAddrs(cfg config.Config) []netip.Addr {
	seen := map[netip.Addr]bool{cfg.Gateway: true, cfg.DNSAddress: true, cfg.IPv6Gateway: true, cfg.IPv6DNS: true}
	var out []netip.Addr
	for _, set := range [][]netip.Addr{extraDNS(cfg), cfg.Map.HostLoopback, cfg.Map.Guest} {
		for _, a := range set {
			if !seen[a] {
				seen[a] = true
				out = append(out, a)
			}
		}
	}
	return out
}

// reservedV4 are the IPv4 addresses DHCP must not hand out: the map's
// that lie in the network (they stand for the host or serve DNS).
func reservedV4(cfg config.Config) []netip.Addr {
	var out []netip.Addr
	for _, a := range ownedMapAddrs(cfg) {
		if a.Is4() && cfg.CIDR.Contains(a) {
			out = append(out, a)
		}
	}
	return out
}
