package network

import (
	"net/netip"

	"github.com/slipway-net/slipway/config"
	"github.com/slipway-net/slipway/internal/policy"
)

// applyMap lays the config's address map (config.AddrMap) over the flow
// rules and returns the stack's local addresses with the extra DNS ones.
func applyMap(cfg config.Config, rules *policy.Rules, local []netip.Addr) []netip.Addr {
	m := cfg.Map
	if m.Routed {
		// The guest's networks are the host's: every other address in
		// them is a neighbour of the host, reached like any other.
		rules.Subnets = nil
	}
	if m.GatewayIsRouter {
		rules.Gateways = nil
	}
	rules.Gateways = append(rules.Gateways, m.HostLoopback...)
	for _, a := range m.Guest {
		to := cfg.DHCPStart
		if a.Is6() {
			to = m.GuestIPv6
		}
		if !to.IsValid() {
			continue
		}
		if rules.Aliases == nil {
			rules.Aliases = map[netip.Addr]netip.Addr{}
		}
		rules.Aliases[a] = to
	}
	rules.Services = append(rules.Services, extraDNS(cfg)...)
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
func extraDNS(cfg config.Config) []netip.Addr {
	var out []netip.Addr
	for _, a := range cfg.Map.DNS {
		if a != cfg.DNSAddress && a != cfg.IPv6DNS {
			out = append(out, a)
		}
	}
	return out
}
