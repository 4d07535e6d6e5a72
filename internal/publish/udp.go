package publish

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/slipway-net/slipway/config"
	"github.com/slipway-net/slipway/internal/flow"
)

// udpPort is one published UDP host port: one host socket shared by every
// client, and per client a flow whose stack endpoint is connected to the
// guest, so the guest's replies find their way back to the right client.
type udpPort struct {
	p     *Publisher
	fw    *forward
	conn  *net.UDPConn
	guest netip.AddrPort

	mu      sync.Mutex
	clients map[netip.AddrPort]*udpClient
	closed  bool
}

// udpClient is one host client of a published UDP port: a flow whose
// stack endpoint is connected to the guest, or (a client from the host's
// loopback, with Options.DialLoopback) whose socket in the guest is
// connected to the guest's loopback.
type udpClient struct {
	port   *udpPort
	addr   netip.AddrPort // the client on the host
	flow   *flow.Flow
	ep     tcpip.Endpoint
	wq     waiter.Queue
	timer  *time.Timer
	sender *flow.GuestSender
	// ns and nsRelease, instead of ep, are the socket to the guest's
	// loopback and its MaxLoopbackConns slot.
	ns        net.Conn
	nsRelease func()
}

func newUDPPort(p *Publisher, fw *forward, c *net.UDPConn, guest netip.AddrPort) *udpPort {
	return &udpPort{p: p, fw: fw, conn: c, guest: guest, clients: map[netip.AddrPort]*udpClient{}}
}

// serve reads datagrams from host clients and passes each to its client's
// flow, until the socket closes.
func (u *udpPort) serve() {
	rc, err := u.conn.SyscallConn()
	if err != nil {
		u.close()
		return
	}
	r := flow.NewDatagramReader(rc, true)
	for {
		b, from, err := r.Read()
		if err != nil {
			if flow.IsTransient(err) {
				continue
			}
			u.close()
			return
		}
		if c := u.client(from); c != nil {
			if c.ns != nil {
				if _, err := c.ns.Write(b); err == nil {
					c.flow.Touch()
					c.flow.ToGuest.Add(uint64(len(b)))
				}
				continue
			}
			// A full send buffer drops the datagram, as UDP may.
			if r.WriteTo(c.ep) == nil {
				c.flow.Touch()
				c.flow.ToGuest.Add(uint64(len(b)))
			}
		}
	}
}

// client returns the flow of a host client, opening one for a new client;
// nil when the flow table is full or the port is closing. Only serve calls
// it.
func (u *udpPort) client(from netip.AddrPort) *udpClient {
	u.mu.Lock()
	c, closed := u.clients[from], u.closed
	u.mu.Unlock()
	if c != nil || closed || !from.IsValid() {
		return c
	}
	p := u.p
	if p.viaLoopback(from) {
		return u.loopbackClient(from)
	}
	c = &udpClient{port: u, addr: from}
	ep, err := p.o.Stack.NewUDPEndpoint(u.guest.Addr().Is6(), &c.wq)
	if err != nil {
		p.log.Debug("published UDP: no stack endpoint", "client", from, "err", err)
		return nil
	}
	local, err := bindSource(ep, p.source(from, u.guest.Addr()))
	if err == nil {
		if terr := ep.Connect(tcpip.FullAddress{Addr: tcpip.AddrFromSlice(u.guest.Addr().AsSlice()), Port: u.guest.Port()}); terr != nil {
			err = fmt.Errorf("connect to %s: %s", u.guest, terr)
		}
	}
	if err != nil {
		p.log.Debug("published UDP: cannot reach the guest", "client", from, "err", err)
		ep.Close()
		return nil
	}
	c.ep = ep
	c.flow, err = p.o.Flows.Reserve(flow.Ends{Proto: config.UDP, Guest: u.guest, Remote: local, Host: from, Forward: u.fw.ID})
	if err != nil {
		p.refused.Add(1)
		p.log.Debug("dropping datagrams to published port", "id", u.fw.ID, "client", from, "err", err)
		ep.Close()
		return nil
	}
	u.mu.Lock()
	if u.closed {
		u.mu.Unlock()
		c.flow.Close()
		ep.Close()
		return nil
	}
	u.clients[from] = c
	u.mu.Unlock()
	c.timer = c.flow.CloseWhenIdle(p.o.UDPIdleTimeout)
	// The guest's answers go back to this client from the published
	// port's socket.
	c.sender = flow.SendGuestDatagrams(c.flow, ep, &c.wq, func(b []byte) error {
		_, err := u.conn.WriteToUDPAddrPort(b, from)
		return err
	}, nil)
	if !c.flow.Start(c.release) {
		return nil
	}
	// Remove marks the forward gone before it closes the forward's
	// flows: a flow reserved after that sweep sees the mark here.
	if u.fw.gone.Load() {
		c.flow.Close()
		return nil
	}
	c.flow.SetState("active")
	u.fw.conns.Add(1)
	return c
}

// release undoes the client; the flow's Close runs it.
func (c *udpClient) release() {
	u := c.port
	u.mu.Lock()
	if u.clients[c.addr] == c {
		delete(u.clients, c.addr)
	}
	u.mu.Unlock()
	c.timer.Stop()
	if c.ns != nil {
		c.ns.Close()
		c.nsRelease()
		return
	}
	c.sender.Stop()
	c.ep.Close()
}

// close stops the port: its socket and every client's flow.
func (u *udpPort) close() {
	u.mu.Lock()
	if u.closed {
		u.mu.Unlock()
		return
	}
	u.closed = true
	clients := make([]*udpClient, 0, len(u.clients))
	for _, c := range u.clients {
		clients = append(clients, c)
	}
	u.mu.Unlock()
	u.conn.Close()
	for _, c := range clients {
		c.flow.Close()
	}
}
