package publish

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/slipway-net/slipway/config"
	"github.com/slipway-net/slipway/internal/accept"
	"github.com/slipway-net/slipway/internal/flow"
)

func (p *Publisher) acceptTCP(fw *forward, l *net.TCPListener, guest netip.AddrPort) {
	defer p.wg.Done()
	// A slot first: while MaxPendingConnects connections to guests are in
	// progress, clients wait in the host's listen backlog.
	next := func() (*net.TCPConn, error) {
		select {
		case p.pending <- struct{}{}:
		case <-p.ctx.Done():
			return nil, net.ErrClosed
		}
		c, err := l.AcceptTCP()
		if err != nil {
			<-p.pending
		}
		return c, err
	}
	serve := func(c *net.TCPConn) {
		fw.conns.Add(1)
		// In the wait group: Close waits for connections being set up.
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.serveTCP(fw, c, guest)
		}()
	}
	what := fmt.Sprintf("published port %s (forward %d)", l.Addr(), fw.ID)
	if err := accept.Loop(p.ctx, p.log, what, next, serve); err != nil {
		p.log.Error("published port stopped accepting", "id", fw.ID, "listen", l.Addr().String(), "err", err)
	}
}

// serveTCP connects the guest for one accepted client and pumps between
// them. A client the guest does not accept is reset, as a refused
// connection would be.
func (p *Publisher) serveTCP(fw *forward, c *net.TCPConn, guest netip.AddrPort) {
	client := unmapped(c.RemoteAddr().(*net.TCPAddr).AddrPort())
	if p.viaLoopback(client) {
		p.serveLoopbackTCP(fw, c, client, guest.Port())
		return
	}
	ep, wq, local, err := p.dialGuest(p.source(client, guest.Addr()), guest)
	<-p.pending
	if err != nil {
		p.connectFailed.Add(1)
		p.log.Debug("published connection refused by guest", "id", fw.ID, "client", client, "guest", guest, "err", err)
		resetConn(c)
		return
	}
	fl, err := p.o.Flows.Reserve(flow.Ends{Proto: config.TCP, Guest: guest, Remote: local, Host: client, Forward: fw.ID})
	if err != nil && err != flow.ErrClosed {
		p.refused.Add(1)
		p.log.Warn("refusing connection to published port", "id", fw.ID, "client", client, "err", err)
	}
	// Remove marks the forward gone before it closes the forward's
	// flows: a flow reserved after that sweep sees the mark here.
	if fl == nil || fw.gone.Load() {
		if fl != nil {
			fl.Close()
		}
		ep.Abort()
		resetConn(c)
		return
	}
	flow.PumpTCP(fl, ep, wq, c)
}

// errTupleInUse: the stack still has a connection with the same addresses
// and ports.
var errTupleInUse = errors.New("the stack still holds a connection from this address and port")

// dialGuest connects a new stack endpoint from src to the guest. If the
// host reused the client's port while the stack still holds an earlier
// connection from it (in TIME-WAIT: the host's own TIME-WAIT is shorter or
// skipped on loopback), the client's address is kept with a port the stack
// picks.
func (p *Publisher) dialGuest(src, guest netip.AddrPort) (tcpip.Endpoint, *waiter.Queue, netip.AddrPort, error) {
	ep, wq, local, err := p.bindTCP(src)
	if err != nil {
		return nil, nil, netip.AddrPort{}, err
	}
	err = p.connectTCP(ep, wq, guest)
	if errors.Is(err, errTupleInUse) && src.Port() != 0 {
		ep.Close()
		return p.dialGuest(netip.AddrPortFrom(src.Addr(), 0), guest)
	}
	if err != nil {
		ep.Close()
		return nil, nil, netip.AddrPort{}, err
	}
	return ep, wq, local, nil
}

func resetConn(c *net.TCPConn) {
	c.SetLinger(0)
	c.Close()
}

// bindTCP opens a stack endpoint bound to src, the address the guest will
// see; it returns the address actually bound.
func (p *Publisher) bindTCP(src netip.AddrPort) (tcpip.Endpoint, *waiter.Queue, netip.AddrPort, error) {
	wq := new(waiter.Queue)
	ep, err := p.o.Stack.NewTCPEndpoint(src.Addr().Is6(), wq)
	if err != nil {
		return nil, nil, netip.AddrPort{}, err
	}
	local, err := bindSource(ep, src)
	if err != nil {
		ep.Close()
		return nil, nil, netip.AddrPort{}, err
	}
	return ep, wq, local, nil
}

// bindSource binds ep to src. The NIC spoofs, so any address can be bound,
// not only the stack's own. Address reuse lets one client address and
// port reach several published ports at once (the 4-tuples differ); if the
// port is still taken (an earlier connection in TIME-WAIT) the address is
// kept with a port the stack picks.
func bindSource(ep tcpip.Endpoint, src netip.AddrPort) (netip.AddrPort, error) {
	ep.SocketOptions().SetReuseAddress(true)
	addr := tcpip.AddrFromSlice(src.Addr().AsSlice())
	terr := ep.Bind(tcpip.FullAddress{Addr: addr, Port: src.Port()})
	if _, inUse := terr.(*tcpip.ErrPortInUse); inUse && src.Port() != 0 {
		terr = ep.Bind(tcpip.FullAddress{Addr: addr})
	}
	if terr != nil {
		return netip.AddrPort{}, fmt.Errorf("bind %s: %s", src, terr)
	}
	la, terr := ep.GetLocalAddress()
	if terr != nil {
		return netip.AddrPort{}, fmt.Errorf("local address: %s", terr)
	}
	a, _ := netip.AddrFromSlice(la.Addr.AsSlice())
	return netip.AddrPortFrom(a, la.Port), nil
}

// connectTCP connects ep to the guest, waiting at most ConnectTimeout.
func (p *Publisher) connectTCP(ep tcpip.Endpoint, wq *waiter.Queue, guest netip.AddrPort) error {
	entry, ch := waiter.NewChannelEntry(waiter.WritableEvents | waiter.EventHUp | waiter.EventErr)
	wq.EventRegister(&entry)
	defer wq.EventUnregister(&entry)
	terr := ep.Connect(tcpip.FullAddress{Addr: tcpip.AddrFromSlice(guest.Addr().AsSlice()), Port: guest.Port()})
	if _, inUse := terr.(*tcpip.ErrBadLocalAddress); inUse {
		// What gVisor answers when the 4-tuple is registered already.
		return errTupleInUse
	}
	if _, started := terr.(*tcpip.ErrConnectStarted); started {
		t := time.NewTimer(p.o.ConnectTimeout)
		defer t.Stop()
		select {
		case <-ch:
		case <-t.C:
			return fmt.Errorf("connect to %s: timed out after %s", guest, p.o.ConnectTimeout)
		case <-p.ctx.Done():
			return p.ctx.Err()
		}
		terr = ep.LastError()
	}
	if terr != nil {
		return fmt.Errorf("connect to %s: %s", guest, terr)
	}
	return nil
}
