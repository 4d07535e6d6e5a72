package dhcp4

import (
	"net/netip"
	"time"

	"github.com/slipway-net/slipway/services/internal/leases"
)

const (
	// offerHold is how long an offered address stays set aside for the
	// client while it decides (RFC 2131 section 4.3.1 asks for a while).
	offerHold = time.Minute
	// declineHold is how long an address a client declined (someone else
	// answered ARP for it) is kept out of the pool.
	declineHold = 10 * time.Minute
)

// The lease database binds clients, by chaddr as a MAC address string, to
// addresses; Server serialises access.
type (
	entry = leases.Entry[string]
	table = leases.Table[string]
)

// newTable hands out RangeStart up to the last host address of the
// subnet.
func newTable(cfg Config, p plan) *table {
	// Addresses the network itself uses are never leased, whether or not
	// the user listed them.
	reserved := append([]netip.Addr{cfg.ServerIP, cfg.Router}, cfg.DNS...)
	reserved = append(reserved, cfg.Reserved...)
	return leases.NewTable[string](cfg.RangeStart, uintToAddr(p.broadcast-1), cfg.MaxLeases, reserved)
}

func toLease(e *entry) Lease {
	return Lease{MAC: e.Key, Addr: e.Addr, Hostname: e.Hostname, Expires: e.Expires, Static: e.Static}
}
