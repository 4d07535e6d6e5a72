// Package packetloop is the datagram read loop shared by slipway's UDP
// services: it reads from a net.PacketConn until a context ends or the
// socket is closed, which a plain ReadFrom loop cannot notice by itself.
package packetloop

import (
	"context"
	"errors"
	"net"
	"os"
	"time"
)

// Run calls handle for each datagram read from conn into buf until ctx is
// done or conn is closed, and then returns nil; any other read error is
// returned. handle runs on the calling goroutine and must not keep pkt,
// which is overwritten by the next read. conn is not closed.
func Run(ctx context.Context, conn net.PacketConn, buf []byte, handle func(pkt []byte, from net.Addr)) error {
	// A blocked ReadFrom only returns on a deadline or close; move the
	// deadline into the past when ctx ends.
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
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
			return err
		}
		handle(buf[:n], from)
	}
}
