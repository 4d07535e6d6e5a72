// Package hostnet opens slipway's listening host sockets, all one way:
// with MPTCP off. Since Go 1.24 net.Listen asks for MPTCP, which Landlock
// does not restrict; a plain TCP socket is what the sandbox reasons about.
package hostnet

import (
	"context"
	"fmt"
	"net"
	"net/netip"
)

func listenConfig() *net.ListenConfig {
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	return &lc
}

// ListenTCP listens on ap (TCP, of ap's family).
func ListenTCP(ap netip.AddrPort) (*net.TCPListener, error) {
	l, err := listenConfig().Listen(context.Background(), "tcp"+family(ap), ap.String())
	if err != nil {
		return nil, err
	}
	return l.(*net.TCPListener), nil
}

// ListenUDP binds a UDP socket to ap.
func ListenUDP(ap netip.AddrPort) (*net.UDPConn, error) {
	c, err := listenConfig().ListenPacket(context.Background(), "udp"+family(ap), ap.String())
	if err != nil {
		return nil, err
	}
	return c.(*net.UDPConn), nil
}

// Listen listens on a "tcp", "tcp4" or "tcp6" address as net.Listen does,
// or on a unix socket path ("unix").
func Listen(network, address string) (net.Listener, error) {
	switch network {
	case "tcp", "tcp4", "tcp6", "unix":
		return listenConfig().Listen(context.Background(), network, address)
	}
	return nil, fmt.Errorf("hostnet: network %q", network)
}

func family(ap netip.AddrPort) string {
	if ap.Addr().Is4() || ap.Addr().Is4In6() {
		return "4"
	}
	return "6"
}
