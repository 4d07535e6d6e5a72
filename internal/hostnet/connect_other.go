//go:build !linux

package hostnet

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"

	"github.com/slipway-net/slipway/config"
)

// Connect and PingSocket serve --sandbox=strict's launcher, which only
// Linux has (its engine is in an empty network namespace); elsewhere the
// engine opens its own sockets.
var errStrictLinuxOnly = fmt.Errorf("hostnet: sockets for a strict engine are Linux-only (this is %s): %w", runtime.GOOS, errors.ErrUnsupported)

// Connect fails here.
func Connect(config.Proto, netip.Addr, netip.AddrPort) (*os.File, error) {
	return nil, errStrictLinuxOnly
}

// PingSocket fails here.
func PingSocket(bool) (*os.File, error) { return nil, errStrictLinuxOnly }
