package sandbox

import (
	"errors"
	"fmt"

	"github.com/landlock-lsm/go-landlock/landlock"
	llsys "github.com/landlock-lsm/go-landlock/landlock/syscall"
)

// Landlock access rights to handle (deny unless a rule allows).
const (
	netBindTCP = landlock.AccessNetSet(1 << 0)
	netBindUDP = landlock.AccessNetSet(1 << 2)
)

// landlockRestrict denies every file access (V7's rights: ABI 9's
// RESOLVE_UNIX is left out, a datagram endpoint answers its VMs by
// path), every TCP and UDP bind but to the ports given, and scopes
// abstract unix sockets and signals to the engine. It needs no user
// namespace, so it holds where a distribution restricts those. It
// returns the kernel's ABI version.
func landlockRestrict(bind []uint16) (int, error) {
	if cgoBuild {
		// go-landlock falls back to libpsx there, which hung here.
		return 0, errCgo
	}
	abi, err := llsys.LandlockGetABIVersion()
	if err != nil || abi < 1 {
		return 0, fmt.Errorf("not available in this kernel (%v)", err)
	}
	c := landlock.V7
	c.HandledAccessNet = netBindTCP | netBindUDP
	var rules []landlock.Rule
	for _, p := range bind {
		rules = append(rules, landlock.BindTCP(p), landlock.BindUDP(p))
	}
	if err := c.BestEffort().Restrict(rules...); err != nil {
		return abi, err
	}
	if abi < 6 {
		return abi, errors.New("only file access restricted: this kernel lacks ABI 4 (TCP bind) or 6 (scopes)")
	}
	return abi, nil
}
