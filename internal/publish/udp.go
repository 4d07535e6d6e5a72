package publish

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/slipway-net/slipway/config"
	"github.com/slipway-net/slipway/internal/outbound"
)

// maxDatagram is the largest UDP payload carried.
const maxDatagram = 65535

// datagrams are borrowed only while a datagram is in hand, so an idle
// published UDP port holds no buffer.
var datagrams = sync.Pool{New: func() any { b := make([]byte, maxDatagram); return &b }}

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

type udpClient struct {
	port  *udpPort
	addr  netip.AddrPort // the client on the host
	flow  *outbound.Flow
	ep    tcpip.Endpoint
	wq    waiter.Queue
	done  chan struct{}
	act   outbound.Activity
	timer *time.Timer
	once  sync.Once
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
	var rd bytes.Reader
	for {
		bp, n, from, err := recvFrom(rc)
		if err != nil {
			u.close()
			return
		}
		if c := u.client(from); c != nil {
			rd.Reset((*bp)[:n])
			if _, terr := c.ep.Write(&rd, tcpip.WriteOptions{}); terr == nil {
				c.act.Touch()
				c.flow.ToGuest.Add(uint64(n))
			}
			// A full send buffer drops the datagram, as UDP may.
		}
		datagrams.Put(bp)
	}
}

// recvFrom waits for a datagram, borrowing a buffer only once one is there.
func recvFrom(rc syscall.RawConn) (*[]byte, int, netip.AddrPort, error) {
	var bp *[]byte
	var n int
	var from unix.Sockaddr
	var rerr error
	err := rc.Read(func(fd uintptr) bool {
		bp = datagrams.Get().(*[]byte)
		var e error
		n, from, e = unix.Recvfrom(int(fd), *bp, 0)
		if e == unix.EAGAIN || e == unix.EINTR || e == nil && from == nil {
			datagrams.Put(bp)
			bp = nil
			return false
		}
		rerr = e
		return true
	})
	if err == nil {
		err = rerr
	}
	if err != nil {
		if bp != nil {
			datagrams.Put(bp)
		}
		return nil, 0, netip.AddrPort{}, err
	}
	var ap netip.AddrPort
	switch sa := from.(type) {
	case *unix.SockaddrInet4:
		ap = netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
	case *unix.SockaddrInet6:
		ap = netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), uint16(sa.Port))
	}
	return bp, n, ap, nil
}

// client returns the flow of a host client, opening one for a new client;
// nil when the flow table is full or the port is closing.
func (u *udpPort) client(from netip.AddrPort) *udpClient {
	u.mu.Lock()
	defer u.mu.Unlock()
	if c := u.clients[from]; c != nil {
		return c
	}
	if u.closed || !from.IsValid() {
		return nil
	}
	p := u.p
	c := &udpClient{port: u, addr: from, done: make(chan struct{})}
	ep, terr := p.o.Stack.Gvisor().NewEndpoint(udp.ProtocolNumber, netProto(u.guest.Addr()), &c.wq)
	if terr != nil {
		p.log.Debug("published UDP: no stack endpoint", "client", from, "err", terr)
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
	c.flow = p.o.Flows.OpenPublished(config.UDP, u.guest, local, from, u.fw.ID, c.close)
	if c.flow == nil {
		p.refused.Add(1)
		p.log.Debug("flow limit reached, dropping datagrams to published port", "id", u.fw.ID, "client", from)
		ep.Close()
		return nil
	}
	c.flow.SetState("active")
	u.fw.conns.Add(1)
	u.clients[from] = c
	c.act.Touch()
	c.timer = outbound.IdleTimer(c.flow, &c.act, p.o.UDPIdleTimeout)
	// The guest's answers go back to this client from the published
	// port's socket.
	go outbound.GuestDatagrams(c.flow, ep, &c.wq, c.done, &c.act, func(b []byte) error {
		_, err := u.conn.WriteToUDPAddrPort(b, from)
		return err
	})
	return c
}

// close releases the client's endpoint; the flow's Close calls it. The
// port's lock orders it after client() finished setting the client up.
func (c *udpClient) close() {
	c.once.Do(func() {
		u := c.port
		u.mu.Lock()
		if u.clients[c.addr] == c {
			delete(u.clients, c.addr)
		}
		timer := c.timer
		u.mu.Unlock()
		close(c.done)
		if timer != nil {
			timer.Stop()
		}
		c.ep.Close()
	})
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
