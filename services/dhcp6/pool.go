package dhcp6

import (
	"encoding/hex"
	"net/netip"
	"time"

	"github.com/slipway-net/slipway/services/internal/leases"
)

const (
	// advertiseHold is how long an address in an ADVERTISE stays set
	// aside for the client, so its REQUEST gets that same address.
	advertiseHold = time.Minute
	// declineHold is how long an address a client declined (DAD found it
	// in use) stays out of the pool.
	declineHold = 10 * time.Minute
)

// key identifies an IA_NA: the client's DUID and the IAID it chose. A
// client with two interfaces, or two IA_NAs, gets two addresses.
type key struct {
	duid string
	iaid uint32
}

// The lease database binds IA_NAs to addresses; Server serialises access.
type (
	entry = leases.Entry[key]
	table = leases.Table[key]
)

// newTable hands out RangeStart up to the last address of the prefix.
func newTable(cfg Config) *table {
	// Addresses the network itself uses are never leased, whether or not
	// the user listed them.
	reserved := append(append([]netip.Addr(nil), cfg.DNS...), cfg.Reserved...)
	return leases.NewTable[key](cfg.RangeStart, lastAddr(cfg.Prefix), cfg.MaxLeases, reserved)
}

// lastAddr is the highest address of p: all host bits set.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As16()
	for i := p.Bits(); i < 128; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	return netip.AddrFrom16(b)
}

func toLease(e *entry) Lease {
	return Lease{DUID: hex.EncodeToString([]byte(e.Key.duid)), IAID: e.Key.iaid, Addr: e.Addr, Expires: e.Expires}
}
