package dhcp4

import (
	"fmt"
	"net"

	"github.com/slipway-net/slipway/services/internal/leases"
)

// ErrRestore is a saved lease that cannot be taken back (DHCPv6's too).
var ErrRestore = leases.ErrRestore

// Saved returns every lease worth keeping across a restart: static
// bindings and every lease granted, expired ones included (they still give
// their client the same address back).
func (s *Server) Saved() []Lease {
	s.mu.Lock()
	defer s.mu.Unlock()
	return leases.Known(s.table, toLease)
}

// Restore puts saved leases back, all or none (see leases.Table.Restore);
// without apply it only checks that it could. A static one must be an address Reserve would take.
func (s *Server) Restore(ls []Lease, apply bool) error {
	es := make([]entry, 0, len(ls))
	for _, l := range ls {
		mac, err := net.ParseMAC(l.MAC)
		if err != nil || len(mac) != hlenEthernet {
			return fmt.Errorf("dhcp4: %w: %q is not an Ethernet MAC address", ErrRestore, l.MAC)
		}
		if l.Static && (!s.plan.isHost(l.Addr) || s.table.IsReserved(l.Addr)) {
			return fmt.Errorf("dhcp4: %w %v for %v: %w", ErrRestore, l.Addr, mac, errNotInSubnet)
		}
		es = append(es, entry{Key: mac.String(), Addr: l.Addr, Hostname: l.Hostname, Expires: l.Expires, Static: l.Static})
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.table.Restore(es, apply); err != nil {
		return fmt.Errorf("dhcp4: %w", err)
	}
	return nil
}
