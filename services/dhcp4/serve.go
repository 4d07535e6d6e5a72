package dhcp4

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"time"
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
	// A blocked ReadFrom only returns on a deadline or close; move the
	// deadline into the past when ctx ends.
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()

	buf := make([]byte, maxDatagram)
	for {
		n, from, err := conn.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				// Someone else's deadline while ctx is live: clear it, then
				// look at ctx again in case it ended in between and our
				// own deadline was the one cleared.
				conn.SetReadDeadline(time.Time{})
				if ctx.Err() != nil {
					return nil
				}
				continue
			}
			return fmt.Errorf("dhcp4: read: %w", err)
		}
		reply, dst, ok := s.Handle(buf[:n])
		if !ok {
			continue
		}
		if _, err := conn.WriteTo(reply, net.UDPAddrFromAddrPort(dst)); err != nil {
			s.log.Debug("dhcp4: write reply", "from", from, "to", dst, "err", err)
		}
	}
}
