package dhcp6

import (
	"context"
	"net"
	"net/netip"

	"github.com/slipway-net/slipway/services/internal/packetloop"
)

// Serve answers the DHCPv6 messages arriving on conn (bound to port 547
// and joined to ff02::1:2) until ctx is done or conn is closed, which both
// return nil. conn is not closed. Each reply goes back to the address it
// came from, zone included, so a link-local client is reached on its own
// link. A failed write is logged and the loop goes on: one client's
// trouble must not stop the server.
func (s *Server) Serve(ctx context.Context, conn net.PacketConn) error {
	return packetloop.Serve(ctx, conn, "dhcp6", s.log, func(pkt []byte, from net.Addr) ([]byte, net.Addr, bool) {
		reply, ok := s.Handle(pkt, addrPort(from))
		return reply, from, ok
	})
}

// addrPort is from as an AddrPort, for logs; the zero value when it is not
// a UDP address.
func addrPort(from net.Addr) netip.AddrPort {
	if u, ok := from.(*net.UDPAddr); ok {
		return u.AddrPort()
	}
	ap, _ := netip.ParseAddrPort(from.String())
	return ap
}
