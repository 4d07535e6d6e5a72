package pasta

import "net/netip"

// HostNet is the host's addressing that pasta copies into the namespace:
// the interface of the first default route, its first global address of
// each family with the prefix, and the default gateways.
type HostNet struct {
	IfName string
	Addr4  netip.Prefix
	Gw4    netip.Addr
	Addr6  netip.Prefix
	Gw6    netip.Addr
}
