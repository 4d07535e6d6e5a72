package dhcp4

import (
	"context"
	"fmt"
	"net"

	"github.com/slipway-net/slipway/services/internal/packetloop"
)

// maxDatagram is the read buffer: a UDP payload can be this large, and a
// truncated read would be mistaken for a malformed message.
const maxDatagram = 65535

// Serve answers the DHCP messages arriving on conn (bound to port 67) until
// ctx is done or conn is closed, which both return nil. conn is not closed.
// A failed write (for instance a broadcast the socket may not send) is
// logged and the loop goes on: one client's trouble must not stop the
// server.
func (s *Server) Serve(ctx context.Context, conn net.PacketConn) error {
	err := packetloop.Run(ctx, conn, make([]byte, maxDatagram), func(pkt []byte, from net.Addr) {
		reply, dst, ok := s.Handle(pkt)
		if !ok {
			return
		}
		if _, err := conn.WriteTo(reply, net.UDPAddrFromAddrPort(dst)); err != nil {
			s.log.Debug("dhcp4: write reply", "from", from, "to", dst, "err", err)
		}
	})
	if err != nil {
		return fmt.Errorf("dhcp4: read: %w", err)
	}
	return nil
}
