package network

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"

	"github.com/slipway-net/slipway/internal/netstack"
	"github.com/slipway-net/slipway/internal/vswitch"
	"github.com/slipway-net/slipway/link"
	"github.com/slipway-net/slipway/services/dhcp4"
	"github.com/slipway-net/slipway/services/dhcp6"
	"github.com/slipway-net/slipway/services/dns"
	"github.com/slipway-net/slipway/services/ra"
	"github.com/slipway-net/slipway/services/tftp"
)

// HostName is the DNS name under which guests find the host (its
// loopback, through the gateway address).
const HostName = "host.slipway.internal."

// hostResolvConf is where the host's resolvers and search list come from
// when the config does not name them.
const hostResolvConf = "/etc/resolv.conf"

// services runs DHCP and DNS on the stack's addresses.
type services struct {
	dhcp   *dhcp4.Server
	dhcp6  *dhcp6.Server // nil with IPv6 off
	router *ra.Router    // nil with IPv6 off
	dns    *dns.Forwarder
	tftp   *tftp.Server // nil without TFTPRoot
	search []string
	// hostResolvers says the upstreams are the host's, to be followed.
	hostResolvers bool
	cancel        context.CancelFunc
	closer        []interface{ Close() error }
	wg            sync.WaitGroup
}

func startServices(n *Network) (*services, error) {
	cfg := n.cfg
	var hostServers []netip.AddrPort
	search, domain := cfg.DNSSearch, cfg.Domain
	if len(cfg.DNSUpstreams) == 0 || len(search) == 0 || domain == "" {
		hr := n.host.Resolv
		if hr == nil {
			hr = ReadResolv()
		}
		if hr.Err != "" && len(cfg.DNSUpstreams) == 0 {
			n.log.Warn("cannot read the host's resolvers; DNS answers SERVFAIL until --dns-upstream is given", "err", hr.Err)
		}
		hostServers = hr.Servers
		if len(search) == 0 {
			search = hr.Search
		}
		if domain == "" {
			domain = hr.Domain
		}
	}
	upstreams := hostServers
	if len(cfg.DNSUpstreams) > 0 {
		upstreams = nil
		for _, u := range cfg.DNSUpstreams {
			upstreams = append(upstreams, u.AddrPort)
		}
	}
	dns4, _ := cfg.AdvertisedDNS()
	dhcp, err := dhcp4.New(dhcp4.Config{
		ServerIP:   cfg.Gateway,
		Subnet:     cfg.CIDR,
		Router:     cfg.Gateway,
		DNS:        dns4,
		RangeStart: cfg.DHCPStart,
		MaxLeases:  cfg.Limits.DHCPMaxLeases,
		MTU:        cfg.MTU,
		Domain:     domain,
		Search:     search,
		Hostname:   cfg.Hostname,
		BootFile:   cfg.BootFile,
		// Option 66 is sent only when named: PXE firmware uses siaddr.
		TFTPServerName: cfg.TFTPServerName,
		// Slipway's DNS address is its own whether or not it is told.
		Reserved: append(reservedV4(cfg), cfg.DNSAddress),
		// Only MACs the switch has learned (at most 64 per link) get a
		// lease, so one guest inventing MACs cannot empty the pool.
		Known: func(mac net.HardwareAddr) bool { return len(mac) == 6 && n.sw.Has(vswitch.MAC(mac)) },
	}, n.log.With("service", "dhcp"))
	if err != nil {
		return nil, fmt.Errorf("dhcp: %w", err)
	}
	fwd, err := dns.New(dns.Config{
		Upstreams:   upstreams,
		MaxInFlight: cfg.Limits.DNSMaxInFlight,
		Local:       localNames(cfg),
		Dial:        n.host.DialDNS,
	}, n.log.With("service", "dns"))
	if err != nil {
		return nil, fmt.Errorf("dns: %w", err)
	}
	ctx, cancel := context.WithCancel(n.ctx)
	s := &services{dhcp: dhcp, dns: fwd, search: search, cancel: cancel, hostResolvers: len(cfg.DNSUpstreams) == 0}
	list := []service{
		udpService("dhcp", netip.AddrPortFrom(netip.IPv4Unspecified(), 67), dhcp.Serve),
		udpService("dns/udp", netip.AddrPortFrom(cfg.DNSAddress, 53), fwd.ServeUDP),
		tcpService("dns/tcp", netip.AddrPortFrom(cfg.DNSAddress, 53), fwd.ServeTCP),
	}
	if cfg.TFTPRoot != "" {
		srv, err := tftp.New(tftp.Config{Root: cfg.TFTPRoot, Open: n.host.OpenTFTP, MaxBlockSize: min(cfg.MTU-tftpOverhead, tftp.MaxBlockSize)}, n.log.With("service", "tftp"))
		if err != nil {
			return nil, err
		}
		s.tftp = srv
		// Each transfer gets a port of its own on the gateway (its TID).
		transferConn := func() (net.PacketConn, error) {
			return n.st.ListenUDP(netip.AddrPortFrom(cfg.Gateway, 0))
		}
		list = append(list, udpService("tftp", netip.AddrPortFrom(cfg.Gateway, 69),
			func(ctx context.Context, pc net.PacketConn) error { return srv.Serve(ctx, pc, transferConn) }))
	}
	if !cfg.NoIPv6 {
		d6, err := s.startIPv6(n, search)
		if err != nil {
			s.close()
			return nil, err
		}
		list = append(list,
			udpService("dhcp6", netip.AddrPortFrom(netip.IPv6Unspecified(), 547), d6.Serve),
			udpService("dns/udp6", netip.AddrPortFrom(cfg.IPv6DNS, 53), fwd.ServeUDP),
			tcpService("dns/tcp6", netip.AddrPortFrom(cfg.IPv6DNS, 53), fwd.ServeTCP))
	}
	for _, a := range extraDNS(cfg) {
		list = append(list,
			udpService("dns/udp "+a.String(), netip.AddrPortFrom(a, 53), fwd.ServeUDP),
			tcpService("dns/tcp "+a.String(), netip.AddrPortFrom(a, 53), fwd.ServeTCP))
	}
	for _, svc := range list {
		c, serve, err := svc.open(n.st)
		if err != nil {
			s.close()
			return nil, fmt.Errorf("%s: %w", svc.name, err)
		}
		s.closer = append(s.closer, c)
		s.run(func() error { return serve(ctx) }, n, svc.name)
	}
	n.log.Debug("services up", "dns-upstreams", upstreams, "search", search, "domain", domain)
	return s, nil
}

// service is one server on the stack's addresses: open binds its socket
// and returns it (closed when the network closes) and the loop serving it.
type service struct {
	name string
	open func(st *netstack.Stack) (io.Closer, func(context.Context) error, error)
}

func udpService(name string, addr netip.AddrPort, serve func(context.Context, net.PacketConn) error) service {
	return newService(name, func(st *netstack.Stack) (net.PacketConn, error) { return st.ListenUDP(addr) }, serve)
}

func tcpService(name string, addr netip.AddrPort, serve func(context.Context, net.Listener) error) service {
	return newService(name, func(st *netstack.Stack) (net.Listener, error) { return st.ListenTCP(addr) }, serve)
}

// newService is a service whose socket (a C) listen opens and serve runs.
func newService[C io.Closer](name string, listen func(*netstack.Stack) (C, error), serve func(context.Context, C) error) service {
	return service{name: name, open: func(st *netstack.Stack) (io.Closer, func(context.Context) error, error) {
		c, err := listen(st)
		if err != nil {
			return nil, nil, err
		}
		return c, func(ctx context.Context) error { return serve(ctx, c) }, nil
	}}
}

// tftpOverhead is what the IPv4, UDP and TFTP headers take of the MTU.
const tftpOverhead = 20 + 8 + 4

// dhcp6Start is the first DHCPv6 address (::100 of the prefix), clear of
// the gateway, DNS and SLAAC's EUI-64 addresses.
const dhcp6Start = 0x100

// startIPv6 makes the router advertiser and the DHCPv6 server, which the
// caller then serves.
func (s *services) startIPv6(n *Network, search []string) (*dhcp6.Server, error) {
	cfg := n.cfg
	var mac [6]byte
	copy(mac[:], n.gwMAC)
	_, dns6 := cfg.AdvertisedDNS()
	adv, err := ra.New(ra.Config{
		Prefix:    cfg.IPv6Prefix,
		MTU:       cfg.MTU,
		RDNSS:     dns6,
		DNSSL:     search,
		RouterMAC: n.gwMAC,
		// Addresses by SLAAC, and by DHCPv6 for guests that ask.
		ManagedFlag: true,
		OtherFlag:   true,
	})
	if err != nil {
		return nil, fmt.Errorf("router advertisements: %w", err)
	}
	s.router = ra.NewRouter(adv, func(buf []byte) { n.sw.FromStack([]link.Frame{link.Contiguous(buf)}) })
	start := cfg.IPv6Prefix.Addr().As16()
	start[14], start[15] = dhcp6Start>>8, dhcp6Start&0xff
	d6, err := dhcp6.New(dhcp6.Config{
		ServerDUID: dhcp6.DUIDLL(n.gwMAC),
		Prefix:     cfg.IPv6Prefix,
		RangeStart: netip.AddrFrom16(start),
		DNS:        dns6,
		Search:     search,
		MaxLeases:  cfg.Limits.DHCPMaxLeases,
		Reserved:   []netip.Addr{cfg.IPv6Gateway, cfg.IPv6DNS},
	}, n.log.With("service", "dhcp6"))
	if err != nil {
		return nil, fmt.Errorf("dhcpv6: %w", err)
	}
	s.dhcp6 = d6
	if err := n.st.JoinGroup(netip.MustParseAddr("ff02::1:2")); err != nil {
		return nil, fmt.Errorf("dhcpv6: %w", err)
	}
	return d6, nil
}

func (s *services) run(f func() error, n *Network, name string) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := f(); err != nil {
			n.log.Error("service stopped", "service", name, "err", err)
		}
	}()
}

func (s *services) close() {
	s.cancel()
	if s.router != nil {
		s.router.Close()
	}
	for _, c := range s.closer {
		c.Close()
	}
	s.wg.Wait()
}

// Reserve pins a DHCP address to a MAC (the namespace of `slipway run`).
func (n *Network) Reserve(mac net.HardwareAddr, addr netip.Addr) error {
	return n.svc.dhcp.Reserve(mac, addr)
}

// SearchDomains is the DNS search list the guests get.
func (n *Network) SearchDomains() []string { return n.svc.search }

// Leases lists the DHCP leases.
func (n *Network) Leases() []dhcp4.Lease { return n.svc.dhcp.Leases() }

// DHCP is the network's DHCP server (leases, statistics, events).
func (n *Network) DHCP() *dhcp4.Server { return n.svc.dhcp }

// DHCP6 is the network's DHCPv6 server; nil with IPv6 off.
func (n *Network) DHCP6() *dhcp6.Server { return n.svc.dhcp6 }

// DNS is the network's DNS forwarder (statistics).
func (n *Network) DNS() *dns.Forwarder { return n.svc.dns }

// ListenTCP listens on addr inside the network for a service of the
// embedder's own (gvproxy's forwarder API on gateway:80, libslirp's
// guestfwd=): guests' connections to addr reach the listener instead of
// the host. addr must be in the network's IPv4
// range (or its IPv6 prefix) and be neither the network's nor its
// broadcast address; from then on the network answers ARP (or neighbour
// solicitations) for it. The listener is the caller's to close; Close of
// the network closes it too.
func (n *Network) ListenTCP(addr netip.AddrPort) (net.Listener, error) {
	a := addr.Addr().Unmap()
	in4 := a.Is4() && n.cfg.CIDR.Contains(a) && a != n.cfg.CIDR.Masked().Addr() && a != broadcast(n.cfg.CIDR)
	in6 := a.Is6() && !n.cfg.NoIPv6 && n.cfg.IPv6Prefix.Contains(a)
	if !in4 && !in6 || addr.Port() == 0 {
		return nil, fmt.Errorf("listen %s: not an address and port inside the network (%s): %w", addr, n.cfg.CIDR, ErrNotInNetwork)
	}
	n.mu.Lock()
	closed := n.closed
	n.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	if err := n.st.AddAddress(a); err != nil {
		return nil, err
	}
	l, err := n.st.ListenTCP(netip.AddrPortFrom(a, addr.Port()))
	if err != nil {
		return nil, err
	}
	return l, nil
}

// ErrNotInNetwork is an address ListenTCP cannot serve.
var ErrNotInNetwork = errors.New("address not inside the network")

func broadcast(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	host := ^uint32(0) >> p.Bits()
	for i := range 4 {
		b[i] |= byte(host >> (24 - 8*i))
	}
	return netip.AddrFrom4(b)
}
