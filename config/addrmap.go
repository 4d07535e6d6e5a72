package config

import (
	"net/netip"
)

// AddrMap lists addresses a guest may use beyond the network's own, for
// front-ends whose guests copy the host's addressing (pasta's personality:
// the namespace has the host's address, prefix and gateway, and reaches the
// host through addresses of its own choosing).
type AddrMap struct {
	// HostLoopback are addresses whose flows reach the host's loopback, as
	// the gateway's do (pasta's --map-host-loopback).
	HostLoopback []netip.Addr `yaml:"host-loopback"`
	// Guest are addresses whose flows reach the host at the guest's own
	// address (DHCPStart, or GuestIPv6 for IPv6), which in pasta's model is
	// one of the host's (pasta's --map-guest-addr).
	Guest []netip.Addr `yaml:"guest"`
	// GuestIPv6 is the guest's IPv6 address, where Guest's IPv6 entries
	// lead; the zero Addr when the guest has none of its own.
	GuestIPv6 netip.Addr `yaml:"guest-ipv6"`
	// DNS are further addresses the DNS forwarder answers at, inside the
	// networks or not (pasta's --dns-forward).
	DNS []netip.Addr `yaml:"dns"`
	// GatewayIsRouter makes the gateway addresses plain routers: flows to
	// them go to those addresses on the host's network instead of to the
	// host's loopback (pasta's --no-map-gw).
	GatewayIsRouter bool `yaml:"gateway-is-router"`
	// Routed says the guest's networks are the host's own: their other
	// addresses are the host's neighbours, reached through host sockets
	// like any destination, rather than other guests (pasta copies the
	// host's network).
	Routed bool `yaml:"routed"`
}

// validateMap checks the map's addresses against the network's own.
func (c *Config) validateMap() error {
	m := c.Map
	own := map[netip.Addr]string{c.Gateway: "gateway", c.DNSAddress: "dns-address", c.DHCPStart: "dhcp-start"}
	if !c.NoIPv6 {
		own[c.IPv6Gateway] = "ipv6-gateway"
		own[c.IPv6DNS] = "ipv6-dns"
	}
	seen := map[netip.Addr]bool{}
	for _, set := range []struct {
		key   string
		addrs []netip.Addr
	}{{"map.host-loopback", m.HostLoopback}, {"map.guest", m.Guest}, {"map.dns", m.DNS}} {
		for _, a := range set.addrs {
			switch {
			case !a.IsValid() || a.IsUnspecified() || a.IsLoopback() || a.IsMulticast() || a.Zone() != "" || a.Is4In6():
				return fieldErr(set.key, a, "must be a unicast address")
			case a.Is6() && c.NoIPv6:
				return fieldErr(set.key, a, "is IPv6, but IPv6 is off")
			case own[a] != "" && !(set.key == "map.dns" && (own[a] == "dns-address" || own[a] == "ipv6-dns")):
				return fieldErr(set.key, a, "is the network's %s address", own[a])
			case seen[a]:
				return fieldErr(set.key, a, "is mapped twice")
			}
			seen[a] = true
		}
	}
	if m.GuestIPv6.IsValid() && !c.NoIPv6 && !c.IPv6Prefix.Contains(m.GuestIPv6) {
		return fieldErr("map.guest-ipv6", m.GuestIPv6, "not inside --ipv6-prefix %s", c.IPv6Prefix)
	}
	return nil
}
