package dhcp6

import (
	"encoding/hex"
	"fmt"

	"github.com/slipway-net/slipway/services/internal/leases"
)

// Saved returns every lease worth keeping across a restart: each IA_NA
// granted, expired ones included (they still give their client the same
// address back).
func (s *Server) Saved() []Lease {
	s.mu.Lock()
	defer s.mu.Unlock()
	return leases.Known(s.table, toLease)
}

// Restore takes back the IA_NAs Saved gave, every one or none (the
// rules are leases.Table.Restore's); with apply false it changes nothing
// and only reports whether it could.
func (s *Server) Restore(ls []Lease, apply bool) error {
	es, err := entries(ls)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.table.Restore(es, apply); err != nil {
		return fmt.Errorf("dhcp6: %w", err)
	}
	return nil
}

// entries turns saved leases into table entries, checking their DUIDs.
func entries(ls []Lease) ([]entry, error) {
	es := make([]entry, 0, len(ls))
	for _, l := range ls {
		duid, err := hex.DecodeString(l.DUID)
		if err != nil || len(duid) < minDUIDLen || len(duid) > maxDUIDLen {
			return nil, fmt.Errorf("dhcp6: %w %v: DUID %q is not %d to %d bytes of hex", leases.ErrRestore, l.Addr, l.DUID, minDUIDLen, maxDUIDLen)
		}
		es = append(es, entry{Key: key{duid: string(duid), iaid: l.IAID}, Addr: l.Addr, Expires: l.Expires})
	}
	return es, nil
}
