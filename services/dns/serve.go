package dns

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/slipway-net/slipway/internal/accept"
	"github.com/slipway-net/slipway/services/internal/packetloop"
)

// ServeUDP answers the queries arriving on conn until ctx is done or conn
// is closed, which both return nil once the queries in flight have
// finished. conn is not closed. Each forwarded query runs on its own
// goroutine, and only after taking an in-flight slot, so the goroutines are
// bounded by MaxInFlight.
func (f *Forwarder) ServeUDP(ctx context.Context, conn net.PacketConn) error {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()

	send := func(reply []byte, to net.Addr) {
		if _, err := conn.WriteTo(reply, to); err != nil {
			f.log.Debug("dns: write reply", "to", to, "err", err)
		}
	}
	err := packetloop.Run(ctx, conn, make([]byte, packetloop.MaxDatagram), func(pkt []byte, from net.Addr) {
		q, reply := f.accept(pkt)
		switch {
		case q == nil && reply != nil:
			send(reply, from)
		case q == nil:
		case !f.acquire():
			send(f.overloaded(q), from)
		default:
			wg.Add(1)
			go func() {
				defer wg.Done()
				// The slot is held until the reply is written, so the
				// goroutines (and buffers) a guest can cause stay bounded
				// even when writing back is slow.
				defer f.release()
				send(f.forward(ctx, q, "udp"), from)
			}()
		}
	})
	if err != nil {
		return fmt.Errorf("dns: read: %w", err)
	}
	return nil
}

// ServeTCP answers queries on the guest's TCP connections (RFC 7766) until
// ctx is done or l is closed; then it closes l and every connection, waits
// for them, and returns nil. Several queries may be sent on one
// connection, also without waiting for answers; answers go back as they
// come, matched by ID as RFC 7766 allows. Connections are bounded, and one
// idle for a while is closed.
func (f *Forwarder) ServeTCP(ctx context.Context, l net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()

	err := accept.Loop(ctx, f.log, "dns/tcp "+l.Addr().String(), l.Accept, func(c net.Conn) {
		if f.stats.tcpConns.Load() >= f.maxTCPConns {
			f.stats.tcpRejected.Add(1)
			f.log.Debug("dns: too many TCP connections, closing new one", "max", f.maxTCPConns, "from", c.RemoteAddr())
			c.Close()
			return
		}
		f.stats.tcpConns.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer f.stats.tcpConns.Add(-1)
			f.serveConn(ctx, c)
		}()
	})
	if err != nil {
		return fmt.Errorf("dns: accept: %w", err)
	}
	return nil
}

// serveConn reads framed queries from one connection until it is closed,
// idle for tcpIdle, or ctx ends, then waits for the answers still owed.
func (f *Forwarder) serveConn(ctx context.Context, c net.Conn) {
	defer c.Close()
	var pending sync.WaitGroup
	defer pending.Wait()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()

	var wmu sync.Mutex
	send := func(reply []byte) {
		wmu.Lock()
		defer wmu.Unlock()
		c.SetWriteDeadline(time.Now().Add(writeTimeout))
		if err := writeFramed(c, reply); err != nil {
			// A guest that does not read its answers loses the connection,
			// which also ends the read loop.
			f.log.Debug("dns: write TCP reply", "err", err)
			c.Close()
		}
	}
	for {
		c.SetReadDeadline(time.Now().Add(f.tcpIdle))
		raw, err := readFramed(c)
		if err != nil {
			return
		}
		if len(raw) == 0 {
			f.drop("tcp-framing")
			return
		}
		q, reply := f.accept(raw)
		switch {
		case q == nil && reply != nil:
			send(reply)
		case q == nil:
		case !f.acquire():
			send(f.overloaded(q))
		default:
			pending.Add(1)
			go func() {
				defer pending.Done()
				defer f.release()
				send(f.forward(ctx, q, "tcp"))
			}()
		}
	}
}
