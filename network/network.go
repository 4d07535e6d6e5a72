// Package network is slipway's public Go API: it builds one virtual network
// (switch, stack, forwarders, DHCP and DNS) from a config.Config, and
// attaches guest links to it. The slipway command is a thin user of it; a Go
// VMM can embed it the same way.
package network

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/slipway-net/slipway/config"
	"github.com/slipway-net/slipway/internal/accept"
	"github.com/slipway-net/slipway/internal/flow"
	"github.com/slipway-net/slipway/internal/frame"
	"github.com/slipway-net/slipway/internal/netstack"
	"github.com/slipway-net/slipway/internal/outbound"
	"github.com/slipway-net/slipway/internal/pcap"
	"github.com/slipway-net/slipway/internal/policy"
	"github.com/slipway-net/slipway/internal/publish"
	"github.com/slipway-net/slipway/internal/vswitch"
	"github.com/slipway-net/slipway/link"
	"github.com/slipway-net/slipway/services/dhcp4"
	"github.com/slipway-net/slipway/services/dhcp6"
	"github.com/slipway-net/slipway/services/dns"
	"github.com/slipway-net/slipway/services/ra"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// guestGoneGrace is how long a guest's flows outlive its link, so a VMM that
// reconnects (QEMU reconnect=) finds them still open.
const guestGoneGrace = 15 * time.Second

// seams are what tests of this package change about a network; New uses
// none.
type seams struct {
	// dialTCP replaces the host dial of guests' TCP flows.
	dialTCP func(ctx context.Context, target netip.AddrPort) (flow.HostConn, error)
	// guestGoneGrace replaces guestGoneGrace when not zero.
	guestGoneGrace time.Duration
	// now replaces the flow table's clock (its new-flow rate limit) when
	// not nil, so a test can move time on without waiting for it.
	now func() time.Time
}

// Network is one running virtual network.
type Network struct {
	cfg config.Config
	log *slog.Logger

	sw    *vswitch.Switch
	st    *netstack.Stack
	flows *flow.Table
	fwd   *outbound.Forwarder
	svc   *services
	pub   *publish.Publisher
	pcap  *pcap.Writer
	gwMAC net.HardwareAddr

	rules   *policy.Rules
	egress  egressRules
	events  *events
	started time.Time
	seams   seams
	host    Host
	// stateHook is told when State changed (OnStateChange).
	stateHook stateHook

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu        sync.Mutex
	listeners []Listener
	closed    bool
	// draining is set by Drain: no new link is attached.
	draining bool
}

// New builds a network from cfg (completed and validated here) and starts
// its services. Close releases everything.
func New(cfg config.Config, log *slog.Logger) (*Network, error) {
	return build(cfg, log, Host{}, seams{})
}

// Host is what a network otherwise opens or reads on the host itself. A
// launcher that runs the network in a sandbox, where no file can be
// opened and no port below 1024 bound, provides it.
type Host struct {
	// Resolv, if set, stands for the host's /etc/resolv.conf.
	Resolv *Resolv
	// PCAP, if set, is the open --pcap file.
	PCAP *os.File
	// ListenTCP and ListenUDP, if set, open published ports' host
	// sockets.
	ListenTCP func(netip.AddrPort) (*net.TCPListener, error)
	ListenUDP func(netip.AddrPort) (*net.UDPConn, error)
	// DialTCP, DialUDP and PingSocket, if set, open the host sockets of
	// guests' outbound flows, and DialDNS the DNS forwarder's upstream
	// sockets: a strict sandbox's engine, in an empty network namespace,
	// can open none itself.
	DialTCP    func(ctx context.Context, target netip.AddrPort) (*net.TCPConn, error)
	DialUDP    func(target netip.AddrPort) (*net.UDPConn, error)
	PingSocket func(v6 bool) (int, error)
	DialDNS    func(ctx context.Context, network, addr string) (net.Conn, error)
	// DialGuestLoopback, if set, carries published ports' clients from
	// the host's loopback to the guest's own loopback instead of through
	// the network: it opens a connection ("tcp" or "udp") to target, the
	// guest's 127.0.0.1 or ::1 at the published port, inside the guest,
	// which must then be a network namespace (pasta's --host-lo-to-ns-lo).
	DialGuestLoopback func(ctx context.Context, network string, target netip.AddrPort) (net.Conn, error)
	// ReadResolvers, if set, reads the host's resolv.conf nameservers
	// each time the network looks whether they changed (a sandboxed
	// engine cannot read the file).
	ReadResolvers func() ([]netip.AddrPort, error)
	// OpenTFTP, if set, opens a file of the TFTP root (a path relative
	// to it, which OpenTFTP keeps inside) for the TFTP server, which then
	// opens nothing itself (a sandboxed process may open no file).
	OpenTFTP func(name string) (*os.File, error)
}

// Resolv is the host's resolver configuration, as read from
// /etc/resolv.conf (Err says why it could not be).
type Resolv struct {
	Servers []netip.AddrPort `json:"servers"`
	Search  []string         `json:"search"`
	Domain  string           `json:"domain"`
	Err     string           `json:"err,omitempty"`
}

// ReadResolv reads the host's resolver configuration.
func ReadResolv() *Resolv {
	servers, search, domain, err := dns.ReadResolvConf(hostResolvConf)
	r := &Resolv{Servers: servers, Search: search, Domain: domain}
	if err != nil {
		r.Err = err.Error()
	}
	return r
}

// NewWithHost is New with what host provides in place of the host's own
// files and sockets.
func NewWithHost(cfg config.Config, log *slog.Logger, host Host) (*Network, error) {
	return build(cfg, log, host, seams{})
}

func build(cfg config.Config, log *slog.Logger, host Host, sm seams) (*Network, error) {
	if sm.guestGoneGrace == 0 {
		sm.guestGoneGrace = guestGoneGrace
	}
	if err := cfg.Complete(); err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	n := &Network{cfg: cfg, log: log, gwMAC: GatewayMAC(cfg.Gateway), events: newEvents(), started: time.Now(), seams: sm, host: host}
	if cfg.GatewayMAC != "" {
		n.gwMAC, _ = net.ParseMAC(cfg.GatewayMAC) // validated
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	if cfg.PCAP != "" || host.PCAP != nil {
		f := host.PCAP
		if f == nil {
			var err error
			if f, err = os.OpenFile(cfg.PCAP, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600); err != nil {
				return nil, fmt.Errorf("--pcap: %w", err)
			}
		}
		var err error
		if n.pcap, err = pcap.NewWriter(f); err != nil {
			f.Close()
			return nil, fmt.Errorf("--pcap: %w", err)
		}
	}
	n.sw = vswitch.New(vswitch.Options{Logger: log, PCAP: n.pcap, OnPort: n.onPort})
	bits := cfg.CIDR.Bits()
	addrs := []netip.Prefix{netip.PrefixFrom(cfg.Gateway, bits)}
	if cfg.DNSAddress != cfg.Gateway { // gvproxy serves DNS at its gateway
		addrs = append(addrs, netip.PrefixFrom(cfg.DNSAddress, bits))
	}
	if !cfg.NoIPv6 {
		addrs = append(addrs, netip.PrefixFrom(cfg.IPv6Gateway, 64), netip.PrefixFrom(cfg.IPv6DNS, 64),
			netip.PrefixFrom(ra.LinkLocal(n.gwMAC), 64))
	}
	for _, a := range ownedMapAddrs(cfg) {
		addrs = append(addrs, netip.PrefixFrom(a, a.BitLen()))
	}
	so := netstack.Options{
		MTU:       cfg.MTU,
		MAC:       n.gwMAC,
		Addresses: addrs,
		Output:    n.sw,
		IPv6:      !cfg.NoIPv6,
		Logger:    log,
	}
	if cfg.Map.Routed {
		so.ProxyNeighbors, so.NotProxied = routedNeighbors(cfg)
	}
	st, err := netstack.New(so)
	if err != nil {
		n.closePCAP()
		return nil, err
	}
	n.st = st
	n.sw.SetStack(n.gwMAC, st.Deliver)
	rules := policy.FromConfig(cfg)
	n.rules = rules
	n.setEgress(cfg.Egress)
	local := []netip.Addr{cfg.Gateway, cfg.DNSAddress}
	if !cfg.NoIPv6 {
		local = append(local, cfg.IPv6Gateway, cfg.IPv6DNS, ra.LinkLocal(n.gwMAC))
	}
	local = mapLocal(cfg, local)
	n.flows = flow.NewTable(flow.Limits{
		Max:          cfg.Limits.MaxFlows,
		UDPPerGuest:  cfg.Limits.MaxUDPFlowsPerGuest,
		NewPerSecond: cfg.Limits.MaxNewFlowsPerSecond,
		Now:          sm.now,
	})
	fo := outbound.Options{
		Stack:               st,
		Policy:              rules,
		Flows:               n.flows,
		DialTCP:             sm.dialTCP,
		DialUDP:             n.host.DialUDP,
		PingSocket:          n.host.PingSocket,
		MaxPendingConnects:  cfg.Limits.MaxPendingConnects,
		ConnectTimeout:      cfg.Limits.ConnectTimeout,
		UDPIdleTimeout:      cfg.Limits.UDPIdleTimeout,
		UDPUnrepliedTimeout: cfg.Limits.UDPUnrepliedTimeout,
		MaxICMPFlows:        cfg.Limits.MaxICMPFlows,
		Inject:              n.sw.FromStack,
		LocalAddrs:          local,
		Gateway4:            cfg.Gateway,
		Logger:              log,
	}
	if !cfg.NoIPv6 {
		fo.Gateway6 = cfg.IPv6Gateway
	}
	if d := n.host.DialTCP; d != nil && fo.DialTCP == nil {
		fo.DialTCP = func(ctx context.Context, target netip.AddrPort) (flow.HostConn, error) {
			ctx, cancel := context.WithTimeout(ctx, cfg.Limits.ConnectTimeout)
			defer cancel()
			return d(ctx, target)
		}
	}
	if cfg.OutboundAddr.Is4() {
		fo.OutboundAddr4 = cfg.OutboundAddr
	} else if cfg.OutboundAddr.IsValid() {
		fo.OutboundAddr6 = cfg.OutboundAddr
	}
	n.fwd = outbound.New(fo)
	if n.svc, err = startServices(n); err != nil {
		n.Close()
		return nil, err
	}
	// Before the stack, in order: router messages to the router, echo
	// requests to the outside to the forwarder. They run on the link
	// readers' goroutines.
	var take []netstack.Interceptor
	if r := n.svc.router; r != nil {
		take = append(take, func(v *frame.View) bool {
			_, ok := v.ICMPType()
			return ok && v.EtherType == header.IPv6ProtocolNumber &&
				r.Take(v.Src, v.Dst, header.IPv6(v.L3).HopLimit(), v.L4())
		})
	}
	st.SetInterceptors(append(take, n.fwd.InterceptICMP)...)
	n.svc.dhcp.OnLease(func(l dhcp4.Lease) {
		li := leaseInfo(l)
		n.events.emit(Event{Type: EventLeaseGranted, Lease: &li})
		n.stateChanged()
	})
	if d6 := n.svc.dhcp6; d6 != nil {
		d6.OnLease(func(l dhcp6.Lease) {
			li := lease6Info(l)
			n.events.emit(Event{Type: EventLeaseGranted, Lease: &li})
			n.stateChanged()
		})
	}
	if err := n.startPublish(); err != nil {
		n.Close()
		return nil, err
	}
	for _, l := range cfg.DHCPStatic {
		if err := n.Reserve(l.MAC, l.IP); err != nil {
			n.Close()
			return nil, fmt.Errorf("--dhcp-static %s: %w", l, err)
		}
	}
	n.watchResolvConf()
	return n, nil
}

// GatewayMAC is the gateway's Ethernet address: 52:55 followed by its IPv4
// address, as libslirp does, so captures look familiar.
func GatewayMAC(gw netip.Addr) net.HardwareAddr {
	b := gw.As4()
	return net.HardwareAddr{0x52, 0x55, b[0], b[1], b[2], b[3]}
}

// Config returns the network's completed configuration.
func (n *Network) Config() config.Config { return n.cfg }

// Attach connects a guest link to the network and serves it until the link
// fails or the network closes. It returns at once, with the link's port
// number (as Links shows it); on a closed network it closes l and returns
// 0.
func (n *Network) Attach(l link.Link) (port int) { return n.attach(l, false) }

// AttachUplink connects a link to a real LAN (a host TAP device bridged to
// the host's network) as Attach does, but as an uplink: the guests and the
// LAN share one L2, while the network's own services (DHCP, DNS, the
// gateway and its flows to the host) serve the guests only and never
// answer the LAN.
func (n *Network) AttachUplink(l link.Link) (port int) { return n.attach(l, true) }

func (n *Network) attach(l link.Link, uplink bool) (port int) {
	// Under the lock, so that Close either sees the port or Attach sees
	// the network closed.
	n.mu.Lock()
	if n.closed || n.draining {
		n.mu.Unlock()
		l.Close()
		return 0
	}
	add := n.sw.AddLink
	if uplink {
		add = n.sw.AddUplink
	}
	p := add(l)
	n.wg.Add(1)
	n.mu.Unlock()
	go func() {
		defer n.wg.Done()
		switch err := p.Run(); {
		case err == nil, errors.Is(err, net.ErrClosed):
		case errors.Is(err, io.EOF):
			// The VMM hung up: a VM that shut down, nothing wrong.
			n.log.Info("link closed by its peer", "port", p.ID(), "link", p.Name())
		default:
			n.log.Warn("link ended", "port", p.ID(), "link", p.Name(), "err", err)
		}
	}()
	return p.ID()
}

// Listener yields the links of guests as they connect (or as a VMM is
// redialled); the endpoints of `slipway serve` are Listeners.
type Listener interface {
	Accept() (link.Link, error)
	Close() error
}

// Serve accepts guests on l until the network closes or l fails for good;
// every guest joins this network. Failures that pass (out of file
// descriptors) only pause it. The listener is closed by Close.
func (n *Network) Serve(l Listener) error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		l.Close()
		return ErrClosed
	}
	n.listeners = append(n.listeners, l)
	n.mu.Unlock()
	name := fmt.Sprint(l)
	if err := accept.Loop(n.ctx, n.log, name, l.Accept, func(lk link.Link) { n.Attach(lk) }); err != nil {
		return fmt.Errorf("%s: accept: %w", name, err)
	}
	return nil
}

// Started is when the network was created.
func (n *Network) Started() time.Time { return n.started }

// onPort reports links coming and going, and releases a departed guest's
// flows once it has not come back.
func (n *Network) onPort(p *vswitch.Port, up bool, macs []vswitch.MAC) {
	typ := EventLinkDown
	if up {
		typ = EventLinkUp
	}
	n.events.emit(Event{Type: typ, Port: p.ID(), Link: p.Name()})
	if up && n.svc != nil && n.svc.router != nil {
		// A new guest need not wait for the next periodic advertisement.
		n.svc.router.LinkUp()
	}
	if up || len(macs) == 0 {
		return
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		select {
		case <-time.After(n.seams.guestGoneGrace):
		case <-n.ctx.Done():
			return
		}
		n.releaseGuests(macs)
	}()
}

// releaseGuests closes the flows of guests whose MACs are no longer on any
// port, finding their addresses in the stack's neighbour table.
func (n *Network) releaseGuests(macs []vswitch.MAC) {
	gone := map[[6]byte]bool{}
	for _, m := range macs {
		if !n.sw.Has(m) {
			gone[m] = true
		}
	}
	if len(gone) == 0 {
		return
	}
	addrs := map[netip.Addr]bool{}
	for _, a := range n.st.AddrsOf(gone) {
		addrs[a] = true
	}
	if k := n.flows.CloseWhere(func(f *flow.Flow) bool { return addrs[f.Guest.Addr()] }); k > 0 {
		n.log.Info("released flows of departed guest", "flows", k)
	}
}

// Close stops the network: listeners, links, flows, services, stack.
func (n *Network) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	ls := n.listeners
	n.mu.Unlock()
	n.cancel()
	for _, l := range ls {
		l.Close()
	}
	for _, p := range n.sw.Ports() {
		n.sw.Remove(p)
	}
	if n.pub != nil {
		n.pub.Close()
	}
	if n.svc != nil {
		n.svc.close()
	}
	n.fwd.Close()
	n.flows.Close()
	n.wg.Wait()
	n.st.Close()
	n.closePCAP()
	n.events.close()
	return nil
}

func (n *Network) closePCAP() {
	if n.pcap != nil {
		n.pcap.Close()
	}
}
