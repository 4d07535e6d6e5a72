// Package publish carries connections from host ports into guests: a host
// listener per published port, and for each client a connection (TCP) or a
// flow (UDP) opened from the stack to the guest. The guest sees the real
// client's address as the peer wherever it can be kept (the stack's NIC
// spoofs), the gateway's otherwise.
package publish

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/slipway-net/slipway/config"
	"github.com/slipway-net/slipway/internal/flow"
	"github.com/slipway-net/slipway/internal/hostnet"
	"github.com/slipway-net/slipway/internal/netstack"
)

// Errors of Add and Remove, wrapped with details.
var (
	ErrNotFound = errors.New("no such forward")
	ErrConflict = errors.New("host port already published")
	ErrLimit    = errors.New("published port limit reached")
	ErrClosed   = errors.New("network closed")
)

// Options configures a Publisher.
type Options struct {
	Stack *netstack.Stack
	// Flows is the network's flow table: published flows count against
	// its limit like the guests' own.
	Flows *flow.Table
	// KeepSource makes the guest see the real client address; otherwise
	// every connection comes from Gateway.
	KeepSource bool
	// Gateway and Gateway6 are the guest-side sources, for IPv4 and IPv6
	// guests, when the client's address is not kept or cannot be (see
	// Publisher.source).
	Gateway, Gateway6 netip.Addr
	// Subnet and Subnet6 are the guest networks: a client with an address
	// inside one would be confused with a guest, so it comes from the
	// gateway.
	Subnet, Subnet6 netip.Prefix
	// MaxPorts bounds host ports published at once.
	MaxPorts int
	// MaxPendingConnects bounds connections to guests in progress.
	MaxPendingConnects int
	ConnectTimeout     time.Duration
	UDPIdleTimeout     time.Duration
	// ListenTCP and ListenUDP, if set, open the host sockets of published
	// ports instead of the publisher itself: a sandboxed engine asks its
	// launcher (internal/broker).
	ListenTCP func(netip.AddrPort) (*net.TCPListener, error)
	ListenUDP func(netip.AddrPort) (*net.UDPConn, error)
	// DialLoopback, if set, carries the clients that come from the
	// host's loopback (127.0.0.0/8, ::1) past the stack, to the guest's
	// own loopback: each reaches 127.0.0.1 (::1 for IPv6 clients) at the
	// published guest port through a connection DialLoopback opens inside
	// the guest, network "tcp" or "udp". That is pasta's
	// --host-lo-to-ns-lo, for a guest that is a network namespace.
	DialLoopback func(ctx context.Context, network string, target netip.AddrPort) (net.Conn, error)
	// MaxLoopbackConns bounds the TCP connections and UDP clients
	// DialLoopback carries at once (DefaultMaxLoopbackConns when zero);
	// more are reset (TCP) or their datagrams dropped (UDP).
	MaxLoopbackConns int
	// OnChange, if set, is told of every forward added or removed. It is
	// called with the publisher's lock held and must not block.
	OnChange func(f Forward, added bool)
	Logger   *slog.Logger
}

// Forward is one published rule as the API shows it.
type Forward struct {
	ID uint64 `json:"id"`
	config.PublishRule
	Added time.Time `json:"added"`
	// Connections counts TCP connections accepted and UDP clients seen.
	Connections uint64 `json:"connections"`
}

// Stats counts what the publisher did.
type Stats struct {
	Forwards int `json:"forwards" counter:"forwards,gauge"`
	Ports    int `json:"ports" counter:"ports,gauge"`
	// Refused counts clients turned away because the flow table was full.
	Refused uint64 `json:"refused" counter:"refused"`
	// ConnectFailed counts connections the guest did not accept.
	ConnectFailed uint64 `json:"connect_failed" counter:"connect_failed"`
}

// Publisher owns the published ports of one network.
type Publisher struct {
	o      Options
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	nextID   uint64
	forwards map[uint64]*forward
	ports    int
	closed   bool

	// pending holds a slot per connection to a guest in progress.
	pending chan struct{}
	// loopSlots holds a slot per client DialLoopback carries.
	loopSlots chan struct{}

	refused, connectFailed atomic.Uint64
}

type forward struct {
	Forward
	tcp   []*net.TCPListener
	udp   []*udpPort
	conns atomic.Uint64
	gone  atomic.Bool
}

// New returns a publisher with nothing published.
func New(o Options) *Publisher {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if o.ListenTCP == nil {
		o.ListenTCP = hostnet.ListenTCP
	}
	if o.ListenUDP == nil {
		o.ListenUDP = hostnet.ListenUDP
	}
	if o.MaxLoopbackConns <= 0 {
		o.MaxLoopbackConns = DefaultMaxLoopbackConns
	}
	return &Publisher{o: o, log: log, ctx: ctx, cancel: cancel, forwards: map[uint64]*forward{},
		pending:   make(chan struct{}, max(o.MaxPendingConnects, 1)),
		loopSlots: make(chan struct{}, o.MaxLoopbackConns)}
}

// Add publishes a rule, which must be resolved (config.Config.Resolve).
// Every host port of the rule is bound before Add returns, or none is and
// the error names the rule and the cause; nothing changes on error.
func (p *Publisher) Add(r config.PublishRule) (Forward, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return Forward{}, ErrClosed
	}
	for _, f := range p.forwards {
		if config.PublishConflict(r, f.PublishRule) {
			return Forward{}, fmt.Errorf("publish %s: %w by forward %d (%s)", r, ErrConflict, f.ID, f.PublishRule)
		}
	}
	if p.ports+r.HostPorts() > p.o.MaxPorts {
		return Forward{}, fmt.Errorf("publish %s: %w (%d ports published, at most %d)", r, ErrLimit, p.ports, p.o.MaxPorts)
	}
	fw := &forward{Forward: Forward{PublishRule: r, Added: time.Now()}}
	if err := p.listen(fw); err != nil {
		fw.closeListeners()
		return Forward{}, fmt.Errorf("publish %s: %w", r, err)
	}
	p.nextID++
	fw.ID = p.nextID
	p.forwards[fw.ID] = fw
	p.ports += r.HostPorts()
	p.start(fw)
	p.log.Info("port published", "id", fw.ID, "rule", r.String())
	if p.o.OnChange != nil {
		p.o.OnChange(fw.snapshot(), true)
	}
	return fw.snapshot(), nil
}

// listen binds every host port of fw's rule.
func (p *Publisher) listen(fw *forward) error {
	r := fw.PublishRule
	for i := 0; i < r.HostPorts(); i++ {
		ap := netip.AddrPortFrom(r.HostAddr, r.HostPort+uint16(i))
		if r.Proto == config.UDP {
			c, err := p.o.ListenUDP(ap)
			if err != nil {
				return err
			}
			guest := netip.AddrPortFrom(r.GuestAddr, r.GuestPort+uint16(i))
			fw.udp = append(fw.udp, newUDPPort(p, fw, c, guest))
			continue
		}
		l, err := p.o.ListenTCP(ap)
		if err != nil {
			return err
		}
		fw.tcp = append(fw.tcp, l)
	}
	return nil
}

// start runs fw's listeners.
func (p *Publisher) start(fw *forward) {
	for i, l := range fw.tcp {
		guest := netip.AddrPortFrom(fw.GuestAddr, fw.GuestPort+uint16(i))
		p.wg.Add(1)
		go p.acceptTCP(fw, l, guest)
	}
	for _, u := range fw.udp {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			u.serve()
		}()
	}
}

func (fw *forward) closeListeners() {
	for _, l := range fw.tcp {
		l.Close()
	}
	for _, u := range fw.udp {
		u.close()
	}
}

func (fw *forward) snapshot() Forward {
	f := fw.Forward
	f.Connections = fw.conns.Load()
	return f
}

// Remove unpublishes forward id: its host ports close at once, and so do
// the connections and flows that came through them.
func (p *Publisher) Remove(id uint64) (Forward, error) {
	p.mu.Lock()
	fw := p.forwards[id]
	if fw == nil {
		p.mu.Unlock()
		return Forward{}, fmt.Errorf("forward %d: %w", id, ErrNotFound)
	}
	delete(p.forwards, id)
	p.ports -= fw.HostPorts()
	fw.gone.Store(true)
	if p.o.OnChange != nil {
		p.o.OnChange(fw.snapshot(), false)
	}
	p.mu.Unlock()
	fw.closeListeners()
	p.o.Flows.CloseWhere(func(f *flow.Flow) bool { return f.Forward == id })
	p.log.Info("port unpublished", "id", id, "rule", fw.PublishRule.String())
	return fw.snapshot(), nil
}

// List returns the forwards ordered by ID.
func (p *Publisher) List() []Forward {
	p.mu.Lock()
	out := make([]Forward, 0, len(p.forwards))
	for _, fw := range p.forwards {
		out = append(out, fw.snapshot())
	}
	p.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Stats returns the publisher's counters.
func (p *Publisher) Stats() Stats {
	p.mu.Lock()
	st := Stats{Forwards: len(p.forwards), Ports: p.ports}
	p.mu.Unlock()
	st.Refused = p.refused.Load()
	st.ConnectFailed = p.connectFailed.Load()
	return st
}

// Close unpublishes everything and waits for the listeners to stop.
func (p *Publisher) Close() {
	p.mu.Lock()
	p.closed = true
	ids := make([]uint64, 0, len(p.forwards))
	for id := range p.forwards {
		ids = append(ids, id)
	}
	p.mu.Unlock()
	p.cancel()
	for _, id := range ids {
		p.Remove(id)
	}
	p.wg.Wait()
}

// source is the address a guest at guest sees a client come from. The
// client's own is kept unless the user asked for the gateway, or the guest
// could not answer it: a loopback or link-local source is a martian to a
// guest kernel and is dropped, an address inside the guest network belongs
// to a guest, and a client of the other IP family cannot be the guest's
// peer. Port 0 lets the stack pick one.
func (p *Publisher) source(client netip.AddrPort, guest netip.Addr) netip.AddrPort {
	a := client.Addr()
	gw, subnet := p.o.Gateway, p.o.Subnet
	if guest.Is6() {
		gw, subnet = p.o.Gateway6, p.o.Subnet6
	}
	if p.o.KeepSource && a.Is4() == guest.Is4() && !a.IsLoopback() && !a.IsUnspecified() && !a.IsMulticast() &&
		!a.IsLinkLocalUnicast() && a != netip.AddrFrom4([4]byte{255, 255, 255, 255}) && !subnet.Contains(a) {
		return client
	}
	return netip.AddrPortFrom(gw, 0)
}

// unmapped normalises an address a dual-stack socket reports.
func unmapped(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
