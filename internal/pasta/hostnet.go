package pasta

import "net/netip"

// HostNet is the host's addressing that pasta copies into the namespace:
// the interface of the first default route, its first global address of
// each family with the prefix, and the default gateways; and the
// nameservers of its /etc/resolv.conf, which --dhcp-dns tells of unless
// -D names others.
type HostNet struct {
	IfName    string
	Addr4     netip.Prefix
	Gw4       netip.Addr
	Addr6     netip.Prefix
	Gw6       netip.Addr
	Resolvers []netip.Addr
}
