package dhcp4

import (
	"context"
	"net"

	"github.com/slipway-net/slipway/services/internal/packetloop"
)

// Serve answers the DHCP messages arriving on conn (bound to port 67) until
// ctx is done or conn is closed, which both return nil. conn is not closed.
// A failed write (for instance a broadcast the socket may not send) is
// logged and the loop goes on: one client's trouble must not stop the
// server.
func (s *Server) Serve(ctx context.Context, conn net.PacketConn) error {
	return packetloop.Serve(ctx, conn, "dhcp4", s.log, func(pkt []byte, _ net.Addr) ([]byte, net.Addr, bool) {
		reply, dst, ok := s.Handle(pkt)
		return reply, net.UDPAddrFromAddrPort(dst), ok
	})
}
