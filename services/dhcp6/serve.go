package dhcp6

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"github.com/slipway-net/slipway/services/internal/packetloop"
)

// maxDatagram is the read buffer: a UDP payload can be this large, and a
// truncated read would be mistaken for a malformed message.
const maxDatagram = 65535

// Serve answers the DHCPv6 messages arriving on conn (bound to port 547
// and joined to ff02::1:2) until ctx is done or conn is closed, which both
// return nil. conn is not closed. Each reply goes back to the address it
// came from, zone included, so a link-local client is reached on its own
// link. A failed write is logged and the loop goes on: one client's
// trouble must not stop the server.
func (s *Server) Serve(ctx context.Context, conn net.PacketConn) error {
	err := packetloop.Run(ctx, conn, make([]byte, maxDatagram), func(pkt []byte, from net.Addr) {
		reply, ok := s.Handle(pkt, addrPort(from))
		if !ok {
			return
		}
		if _, err := conn.WriteTo(reply, from); err != nil {
			s.log.Debug("dhcp6: write reply", "to", from, "err", err)
		}
	})
	if err != nil {
		return fmt.Errorf("dhcp6: read: %w", err)
	}
	return nil
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
