package slirpabi

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
)

// maxGuestFwdBuffer bounds the bytes waiting each way on one guest
// forward: the host takes the guest's bytes only on its main loop's
// turns, and hands the guest's bytes only as fast as the guest reads.
const maxGuestFwdBuffer = 64 << 10

// maxGuestFwds bounds the guest forwards of one instance.
const maxGuestFwds = 64

// guestFwd is one guestfwd= target: a listener inside the network whose
// connections are joined to the host's byte stream (a QEMU chardev). The
// stream has room for one connection: the newest is joined, and one it
// replaces is closed (libslirp, too, hands the host's bytes to one).
//
// State: mu guards conn, toHost, toGuest and closed; cond (on mu) wakes
// a reader when the host took bytes, a writer when the host gave some,
// and both when their connection is replaced or the forward ends. Each
// connection has a reader goroutine (ending at the guest's FIN, which
// leaves the connection joined: the host may still answer) and a writer
// goroutine (ending when the connection is replaced or fails).
type guestFwd struct {
	id     int
	addr   netip.AddrPort
	ln     net.Listener
	notify func()

	mu      sync.Mutex
	cond    *sync.Cond
	conn    net.Conn // the joined connection, nil before the first
	toHost  []byte
	toGuest []byte
	closed  bool

	dropped *atomic.Uint64 // host bytes beyond the room canRecv gave
	wg      sync.WaitGroup
}

func (g *guestFwd) serve() {
	defer g.wg.Done()
	for {
		c, err := g.ln.Accept()
		if err != nil {
			return
		}
		g.mu.Lock()
		if g.closed {
			g.mu.Unlock()
			c.Close()
			return
		}
		if g.conn != nil {
			g.conn.Close()
		}
		g.conn, g.toHost, g.toGuest = c, nil, nil
		g.cond.Broadcast()
		g.mu.Unlock()
		g.wg.Add(2)
		go g.read(c)
		go g.write(c)
	}
}

// current reports whether c is still the joined connection (mu held).
func (g *guestFwd) current(c net.Conn) bool { return !g.closed && g.conn == c }

// read moves the guest's bytes to toHost, waiting while it is full.
func (g *guestFwd) read(c net.Conn) {
	defer g.wg.Done()
	buf := make([]byte, 16<<10)
	for {
		g.mu.Lock()
		for g.current(c) && len(g.toHost) >= maxGuestFwdBuffer {
			g.cond.Wait()
		}
		room := maxGuestFwdBuffer - len(g.toHost)
		cur := g.current(c)
		g.mu.Unlock()
		if !cur {
			return
		}
		n, err := c.Read(buf[:min(room, len(buf))])
		if n > 0 {
			g.mu.Lock()
			if g.current(c) {
				g.toHost = append(g.toHost, buf[:n]...)
			}
			g.mu.Unlock()
			g.notify()
		}
		if err != nil {
			return
		}
	}
}

// write hands the host's bytes to the guest's connection c.
func (g *guestFwd) write(c net.Conn) {
	defer g.wg.Done()
	for {
		g.mu.Lock()
		for g.current(c) && len(g.toGuest) == 0 {
			g.cond.Wait()
		}
		if !g.current(c) {
			g.mu.Unlock()
			return
		}
		b := g.toGuest
		g.toGuest = nil
		g.mu.Unlock()
		if _, err := c.Write(b); err != nil {
			g.mu.Lock()
			if g.conn == c {
				g.conn, g.toHost, g.toGuest = nil, nil, nil
			}
			g.cond.Broadcast()
			g.mu.Unlock()
			c.Close()
			return
		}
	}
}

// take moves up to len(p) of the guest's bytes into p.
func (g *guestFwd) take(p []byte) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := copy(p, g.toHost)
	if n > 0 {
		g.toHost = g.toHost[n:]
		if len(g.toHost) == 0 {
			g.toHost = nil
		}
		g.cond.Broadcast()
	}
	return n
}

func (g *guestFwd) canRecv() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.conn == nil || g.closed {
		return 0
	}
	return maxGuestFwdBuffer - len(g.toGuest)
}

func (g *guestFwd) recv(p []byte) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.conn == nil || g.closed {
		g.dropped.Add(uint64(len(p)))
		return
	}
	room := maxGuestFwdBuffer - len(g.toGuest)
	if len(p) > room {
		g.dropped.Add(uint64(len(p) - room))
		p = p[:room]
	}
	g.toGuest = append(g.toGuest, p...)
	g.cond.Broadcast()
}

func (g *guestFwd) close() {
	g.mu.Lock()
	g.closed = true
	if g.conn != nil {
		g.conn.Close()
	}
	g.cond.Broadcast()
	g.mu.Unlock()
	g.ln.Close()
	g.wg.Wait()
}

// guestFwds are an instance's guest forwards.
type guestFwds struct {
	mu   sync.Mutex
	next int
	all  map[int]*guestFwd
}

// AddGuestForward makes guests' TCP connections to addr (inside the
// network) a byte stream the host drives with TakeGuestForward,
// GuestForwardRoom and GuestForwardInput (libslirp's slirp_add_guestfwd,
// whose host end is a QEMU chardev). It returns the forward's id (> 0).
func (i *Instance) AddGuestForward(addr netip.AddrPort) (int, error) {
	i.gfwd.mu.Lock()
	defer i.gfwd.mu.Unlock()
	if len(i.gfwd.all) >= maxGuestFwds {
		return 0, fmt.Errorf("more than %d guest forwards: %w", maxGuestFwds, syscall.ENOSPC)
	}
	for _, g := range i.gfwd.all {
		if g.addr == addr {
			return 0, fmt.Errorf("guestfwd %s exists: %w", addr, syscall.EADDRINUSE)
		}
	}
	ln, err := i.net.ListenTCP(addr)
	if err != nil {
		return 0, fmt.Errorf("guestfwd %s: %w", addr, err)
	}
	i.gfwd.next++
	g := &guestFwd{id: i.gfwd.next, addr: addr, ln: ln, notify: i.notify, dropped: &i.stats.GuestFwdDropped}
	g.cond = sync.NewCond(&g.mu)
	if i.gfwd.all == nil {
		i.gfwd.all = map[int]*guestFwd{}
	}
	i.gfwd.all[g.id] = g
	g.wg.Add(1)
	go g.serve()
	i.log.Debug("guestfwd", "addr", addr, "id", g.id)
	return g.id, nil
}

func (i *Instance) guestFwd(addr netip.AddrPort) *guestFwd {
	i.gfwd.mu.Lock()
	defer i.gfwd.mu.Unlock()
	for _, g := range i.gfwd.all {
		if g.addr == addr {
			return g
		}
	}
	return nil
}

// RemoveGuestForward ends the guest forward of addr and its connection.
func (i *Instance) RemoveGuestForward(addr netip.AddrPort) error {
	g := i.guestFwd(addr)
	if g == nil {
		return fmt.Errorf("no guestfwd of %s: %w", addr, syscall.ENOENT)
	}
	i.gfwd.mu.Lock()
	delete(i.gfwd.all, g.id)
	i.gfwd.mu.Unlock()
	g.close()
	return nil
}

// TakeGuestForward moves bytes a guest sent on some guest forward into p
// and returns that forward's id and how many; 0, 0 when none wait.
func (i *Instance) TakeGuestForward(p []byte) (id, n int) {
	i.gfwd.mu.Lock()
	list := make([]*guestFwd, 0, len(i.gfwd.all))
	for _, g := range i.gfwd.all {
		list = append(list, g)
	}
	i.gfwd.mu.Unlock()
	for _, g := range list {
		if n := g.take(p); n > 0 {
			return g.id, n
		}
	}
	return 0, 0
}

// GuestForwardRoom is how many bytes the host may hand the guest forward
// of addr now (slirp_socket_can_recv): 0 with no guest connected.
func (i *Instance) GuestForwardRoom(addr netip.AddrPort) int {
	if g := i.guestFwd(addr); g != nil {
		return g.canRecv()
	}
	return 0
}

// GuestForwardInput queues the host's bytes for the guest connected to
// the forward of addr (slirp_socket_recv). Bytes beyond the room
// GuestForwardRoom gave, or with no guest connected, are dropped and
// counted.
func (i *Instance) GuestForwardInput(addr netip.AddrPort, p []byte) {
	if g := i.guestFwd(addr); g != nil {
		g.recv(p)
		return
	}
	i.stats.GuestFwdDropped.Add(uint64(len(p)))
}

func (i *Instance) closeGuestForwards() {
	i.gfwd.mu.Lock()
	all := i.gfwd.all
	i.gfwd.all = nil
	i.gfwd.mu.Unlock()
	for _, g := range all {
		g.close()
	}
}
