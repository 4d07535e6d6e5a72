package publish

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"syscall"

	"github.com/slipway-net/slipway/config"
	"github.com/slipway-net/slipway/internal/flow"
	"github.com/slipway-net/slipway/internal/splice"
)

// DefaultMaxLoopbackConns is Options.MaxLoopbackConns's default.
const DefaultMaxLoopbackConns = 1024

// viaLoopback reports whether client goes to the guest's loopback
// (Options.DialLoopback) rather than through the stack.
func (p *Publisher) viaLoopback(client netip.AddrPort) bool {
	return p.o.DialLoopback != nil && client.Addr().IsLoopback()
}

// guestLoopback is the guest's loopback address of client's family, at
// port.
func guestLoopback(client netip.Addr, port uint16) netip.AddrPort {
	if client.Is6() {
		return netip.AddrPortFrom(netip.IPv6Loopback(), port)
	}
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), port)
}

// loopSlot takes a slot of MaxLoopbackConns, without waiting, and
// returns its release (safe to call more than once), or nil at the bound.
func (p *Publisher) loopSlot() func() {
	select {
	case p.loopSlots <- struct{}{}:
	default:
		return nil
	}
	var once sync.Once
	return func() { once.Do(func() { <-p.loopSlots }) }
}

// dialLoopback opens a connection to target inside the guest, within
// ConnectTimeout.
func (p *Publisher) dialLoopback(network string, target netip.AddrPort) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(p.ctx, p.o.ConnectTimeout)
	defer cancel()
	return p.o.DialLoopback(ctx, network, target)
}

// localAddr is c's local address, the guest's side of a loopback
// connection: where the guest sees the client come from.
func localAddr(c net.Conn) netip.AddrPort {
	switch a := c.LocalAddr().(type) {
	case *net.TCPAddr:
		return unmapped(a.AddrPort())
	case *net.UDPAddr:
		return unmapped(a.AddrPort())
	}
	return netip.AddrPort{}
}

// serveLoopbackTCP carries a client from the host's loopback to the
// guest's loopback at port, as a flow of fw like any other: it counts
// against the flow table, shows its bytes, and ends with the forward.
// The caller holds a pending slot, released here once the guest's side
// is connected (or is not).
func (p *Publisher) serveLoopbackTCP(fw *forward, c *net.TCPConn, client netip.AddrPort, port uint16) {
	target := guestLoopback(client.Addr(), port)
	release := p.loopSlot()
	if release == nil {
		<-p.pending
		p.refused.Add(1)
		p.log.Warn("refusing connection to published port: too many carried to the guest's loopback", "id", fw.ID, "client", client, "max", p.o.MaxLoopbackConns)
		resetConn(c)
		return
	}
	g, err := p.dialLoopback("tcp", target)
	<-p.pending
	if err != nil {
		release()
		p.connectFailed.Add(1)
		p.log.Debug("published connection refused by the guest's loopback", "id", fw.ID, "client", client, "guest", target, "err", err)
		resetConn(c)
		return
	}
	fl, err := p.o.Flows.Reserve(flow.Ends{Proto: config.TCP, Guest: target, Remote: localAddr(g), Host: client, Forward: fw.ID})
	if err != nil && err != flow.ErrClosed {
		p.refused.Add(1)
		p.log.Warn("refusing connection to published port", "id", fw.ID, "client", client, "err", err)
	}
	// Remove marks the forward gone before it closes the forward's flows:
	// a flow reserved after that sweep sees the mark here.
	if fl == nil || fw.gone.Load() {
		if fl != nil {
			fl.Close()
		}
		g.Close()
		release()
		resetConn(c)
		return
	}
	if !fl.Start(func() { c.Close(); g.Close(); release() }) {
		return
	}
	fl.SetState("established")
	splice.Counted(fl.Context(), c, g,
		func(n int64) { fl.ToGuest.Add(uint64(n)); fl.Touch() },
		func(n int64) { fl.ToHost.Add(uint64(n)); fl.Touch() })
	fl.Close()
}

// loopbackClient opens the flow of a UDP client from the host's loopback:
// a socket connected to the guest's loopback at the published port, whose
// answers go back to the client from the published port's socket. nil
// when at a bound or the guest's side cannot be opened. Only serve calls
// it (through client).
func (u *udpPort) loopbackClient(from netip.AddrPort) *udpClient {
	p := u.p
	target := guestLoopback(from.Addr(), u.guest.Port())
	release := p.loopSlot()
	if release == nil {
		p.refused.Add(1)
		p.log.Debug("dropping datagrams to published port: too many clients carried to the guest's loopback", "id", u.fw.ID, "client", from)
		return nil
	}
	ns, err := p.dialLoopback("udp", target)
	if err != nil {
		release()
		p.connectFailed.Add(1)
		p.log.Debug("published UDP: cannot reach the guest's loopback", "client", from, "guest", target, "err", err)
		return nil
	}
	c := &udpClient{port: u, addr: from, ns: ns, nsRelease: release}
	c.flow, err = p.o.Flows.Reserve(flow.Ends{Proto: config.UDP, Guest: target, Remote: localAddr(ns), Host: from, Forward: u.fw.ID})
	if err != nil {
		p.refused.Add(1)
		p.log.Debug("dropping datagrams to published port", "id", u.fw.ID, "client", from, "err", err)
		ns.Close()
		release()
		return nil
	}
	u.mu.Lock()
	if u.closed {
		u.mu.Unlock()
		c.flow.Close()
		ns.Close()
		release()
		return nil
	}
	u.clients[from] = c
	u.mu.Unlock()
	c.timer = c.flow.CloseWhenIdle(p.o.UDPIdleTimeout)
	if !c.flow.Start(c.release) {
		return nil
	}
	// Remove marks the forward gone before it closes the forward's
	// flows: a flow reserved after that sweep sees the mark here.
	if u.fw.gone.Load() {
		c.flow.Close()
		return nil
	}
	go c.answerFromLoopback()
	c.flow.SetState("active")
	u.fw.conns.Add(1)
	return c
}

// answerFromLoopback sends what the guest's loopback answers to the
// client, until the flow closes (and with it the socket).
func (c *udpClient) answerFromLoopback() {
	buf := make([]byte, 65535)
	for {
		n, err := c.ns.Read(buf)
		if errors.Is(err, syscall.ECONNREFUSED) {
			continue // nothing listened for an earlier datagram
		}
		if err != nil {
			return
		}
		if _, err := c.port.conn.WriteToUDPAddrPort(buf[:n], c.addr); err == nil {
			c.flow.Touch()
			c.flow.ToHost.Add(uint64(n))
		}
	}
}
