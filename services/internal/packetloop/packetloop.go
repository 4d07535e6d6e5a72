// Package packetloop is the datagram read loop shared by slipway's UDP
// services: it reads from a net.PacketConn until a context ends or the
// socket is closed, which a plain ReadFrom loop cannot notice by itself,
// and, for services that answer each datagram in turn, writes the
// replies.
package packetloop

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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

// MaxDatagram is the read buffer Serve uses: a UDP payload can be this
// large, and a truncated read would be mistaken for a malformed message.
const MaxDatagram = 65535

// Serve is Run for a service that answers datagrams one at a time on the
// reading goroutine: handle returns the reply to pkt and where it goes,
// or ok false for none. A failed write (say, a broadcast the socket may
// not send) is logged at debug level and the loop goes on: one client's
// trouble must not stop the service. A read error Run returns comes back
// wrapped, prefixed with name.
func Serve(ctx context.Context, conn net.PacketConn, name string, log *slog.Logger, handle func(pkt []byte, from net.Addr) (reply []byte, to net.Addr, ok bool)) error {
	err := Run(ctx, conn, make([]byte, MaxDatagram), func(pkt []byte, from net.Addr) {
		reply, to, ok := handle(pkt, from)
		if !ok {
			return
		}
		if _, err := conn.WriteTo(reply, to); err != nil {
			log.Debug(name+": write reply", "from", from, "to", to, "err", err)
		}
	})
	if err != nil {
		return fmt.Errorf("%s: read: %w", name, err)
	}
	return nil
}
