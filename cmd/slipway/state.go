package main

import (
	"fmt"
	"log/slog"

	"github.com/slipway-net/slipway/internal/statefile"
	"github.com/slipway-net/slipway/network"
)

// keepState loads --state-file into n and keeps the file up to date until
// stop. A file that cannot be used is an error naming it: never a silent
// fresh start.
func keepState(n *network.Network, log *slog.Logger) (stop func(), err error) {
	path := n.Config().StateFile
	if path == "" {
		return func() {}, nil
	}
	store := statefile.New(statefile.OS{}, path)
	st, ok, err := store.Load()
	if err != nil {
		return nil, fmt.Errorf("--state-file: %w", err)
	}
	if ok {
		if err := n.Restore(st); err != nil {
			return nil, fmt.Errorf("--state-file %s: %w", path, err)
		}
		log.Info("state restored", "file", path, "dhcp4_leases", len(st.DHCP4), "dhcp6_leases", len(st.DHCP6), "forwards", len(st.Forwards))
	}
	sv, err := statefile.Start(n, store, log)
	if err != nil {
		return nil, fmt.Errorf("--state-file: %w", err)
	}
	return sv.Close, nil
}
