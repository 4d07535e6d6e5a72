package pasta

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/slipway-net/slipway/config"
	"github.com/slipway-net/slipway/internal/publish"
)

// DefaultMTU is pasta's: the largest 802.3 frame less its header, in
// 32-bit words.
const DefaultMTU = 65520

// maxNSListeners bounds -T's listeners, each a socket in the namespace.
const maxNSListeners = 1024

// Plan is what slipway does for one pasta command line.
type Plan struct {
	Config config.Config
	// IfName is the namespace's interface (pasta names it after the
	// host's, unless --ns-ifname).
	IfName string
	// Addr4/Gw4 and Addr6/Gw6 are the namespace's addresses and default
	// routes, each family zero when off.
	Addr4, Addr6 netip.Prefix
	Gw4, Gw6     netip.Addr
	// Auto are the forwards that follow the namespace's listening ports.
	Auto []AutoForward
	// NSForwards are -T's and -U's: sockets in the namespace, each to a
	// port of the host's loopback; the TCP ones first.
	NSForwards []NSForward
	// HostLoToNsLo (--host-lo-to-ns-lo): forwarded connections and
	// datagrams from the host's loopback go to the namespace's loopback,
	// through sockets opened inside it, not through its interface; the
	// automatic forwards then follow loopback-bound ports too.
	HostLoToNsLo bool
}

// AutoForward is an automatic -t or -u: while a port of Ports is bound in
// the namespace, the host's port of that number on each of HostAddrs
// leads to the namespace's port Ports[port].
type AutoForward struct {
	Proto     config.Proto
	Ports     *PortMap
	HostAddrs []netip.Addr
}

// NSForward is a socket inside the namespace forwarded to Target.
type NSForward struct {
	Proto          config.Proto
	Listen, Target netip.AddrPort
}

// Plan works out the network: the namespace copies the host's addresses
// and routes (from h) unless the options give them, and the forwards.
// ephemeral is the host's first ephemeral port.
func (o *Options) Plan(h HostNet, ephemeral uint16) (*Plan, error) {
	p := &Plan{IfName: o.NSIfName, HostLoToNsLo: o.HostLoToNsLo}
	if p.IfName == "" {
		p.IfName = h.IfName
	}
	if p.IfName == "" {
		p.IfName = "tap0"
	}
	a4, a6 := byFamily(o.Addresses)
	g4, g6 := byFamily(o.Gateways)
	if !o.IPv6Only {
		p.Addr4, p.Gw4 = pick(a4, o.Prefix4, g4, h.Addr4, h.Gw4, 24)
		if p.Addr4.IsValid() && !p.Gw4.IsValid() {
			return nil, errors.New("no IPv4 gateway: the host has no default route, give --gateway")
		}
	}
	if !o.IPv4Only {
		p.Addr6, p.Gw6 = pick(a6, o.Prefix6, g6, h.Addr6, h.Gw6, 64)
	}
	if !p.Addr4.IsValid() && !p.Addr6.IsValid() {
		return nil, errors.New("no address to give the namespace: the host has no default route, give --address and --gateway")
	}
	if err := o.config(p); err != nil {
		return nil, err
	}
	o.advertiseDNS(&p.Config, h.Resolvers)
	if err := o.forwards(p, ephemeral); err != nil {
		return nil, err
	}
	return p, nil
}

// byFamily splits a list of at most one address per family.
func byFamily(as []netip.Addr) (v4, v6 netip.Addr) {
	for _, a := range as {
		if a.Is4() {
			v4 = a
		} else {
			v6 = a
		}
	}
	return v4, v6
}

// pick is one family's address and gateway: those given (bits < 0 when
// no prefix length was), else the host's.
func pick(a netip.Addr, bits int, gw netip.Addr, host netip.Prefix, hostGw netip.Addr, defBits int) (netip.Prefix, netip.Addr) {
	if !a.IsValid() {
		a = host.Addr()
	}
	if bits < 0 {
		bits = defBits
		if host.IsValid() {
			bits = host.Bits()
		}
	}
	if !gw.IsValid() {
		gw = hostGw
	}
	if !a.IsValid() {
		return netip.Prefix{}, netip.Addr{}
	}
	return netip.PrefixFrom(a, bits), gw
}

// config fills p.Config: slipway's network is the namespace's (the
// host's) subnet, routed, with the gateway as pasta maps it.
func (o *Options) config(p *Plan) error {
	c := &p.Config
	c.MTU = DefaultMTU
	if o.MTU > 0 {
		c.MTU = o.MTU
	}
	c.LogLevel = "info"
	switch {
	case o.Debug:
		c.LogLevel = "debug"
	case o.Quiet:
		c.LogLevel = "warn"
	}
	c.PCAP = o.PCAP
	c.Hostname = o.Hostname
	c.DNSSearch = o.Search
	for _, a := range o.DNSHost {
		c.DNSUpstreams = append(c.DNSUpstreams, config.DNSServer{AddrPort: netip.AddrPortFrom(a, 53)})
	}
	for _, a := range o.Outbound {
		if !c.OutboundAddr.IsValid() {
			c.OutboundAddr = a
		}
	}
	c.Map.Routed = true
	c.Map.GatewayIsRouter = o.NoMapGW
	if p.Addr4.IsValid() {
		if err := network4(c, p.Addr4, p.Gw4, o.DNSForward); err != nil {
			return err
		}
	}
	if p.Addr6.IsValid() {
		network6(c, p.Addr6, p.Gw6, o.DNSForward)
	} else {
		c.NoIPv6 = true
	}
	gateways := map[netip.Addr]bool{c.Gateway: true, c.IPv6Gateway: !c.NoIPv6}
	loop := map[netip.Addr]bool{}
	for _, a := range o.MapHostLoopback {
		if gateways[a] {
			// The gateway itself stands for the host's loopback.
			c.Map.GatewayIsRouter = false
			continue
		}
		if a.Is6() && c.NoIPv6 {
			continue
		}
		loop[a] = true
		c.Map.HostLoopback = append(c.Map.HostLoopback, a)
	}
	for _, a := range o.MapGuestAddr {
		if loop[a] || gateways[a] || a.Is6() && c.NoIPv6 {
			continue
		}
		c.Map.Guest = append(c.Map.Guest, a)
	}
	for _, a := range o.DNSForward {
		if a.Is6() && c.NoIPv6 {
			continue
		}
		c.Map.DNS = append(c.Map.DNS, a)
	}
	if err := c.Complete(); err != nil {
		return err
	}
	return nil
}

// maxDNS is how many DNS servers of each family pasta keeps (-D's past
// it are dropped).
const maxDNS = 3

// advertiseDNS sets what DHCP, DHCPv6 and router advertisements tell of
// DNS servers, as pasta does: nothing, unless --dhcp-dns; then -D's
// addresses of each family, or for a family -D gave none of, the host's
// nameservers of that family. A loopback nameserver of the host's is one
// the namespace cannot reach by address: it stands for slipway's own DNS
// address of the family, which forwards queries to it (pasta names its
// gateway instead, and redirects DNS sent there).
func (o *Options) advertiseDNS(c *config.Config, resolvers []netip.Addr) {
	if !o.DHCPDNS || o.NoDNS {
		c.NoAdvertiseDNS = true
		return
	}
	var all []netip.Addr
	for _, v6 := range []bool{false, true} {
		if v6 && c.NoIPv6 {
			continue
		}
		var fam []netip.Addr
		for _, a := range o.DNS {
			if a.Is6() == v6 && len(fam) < maxDNS {
				fam = append(fam, a)
			}
		}
		if len(fam) == 0 {
			for _, a := range resolvers {
				if a.Is6() != v6 || a.IsUnspecified() || a.IsMulticast() {
					continue
				}
				if a.IsLoopback() {
					a = c.DNSAddress
					if v6 {
						a = c.IPv6DNS
					}
				}
				if len(fam) < maxDNS && a.IsValid() && !slices.Contains(fam, a) {
					fam = append(fam, a)
				}
			}
		}
		all = append(all, fam...)
	}
	c.AdvertiseDNS = all
	c.NoAdvertiseDNS = len(all) == 0
}

// network4 makes slipway's IPv4 network the namespace's: its subnet
// (narrowed to /29 at most, and widened to hold the gateway), the gateway,
// the namespace's address as the first guest's, and a DNS address: the
// --dns-forward one if it is in the subnet, else the subnet's last
// address but those two.
func network4(c *config.Config, a netip.Prefix, gw netip.Addr, fwd []netip.Addr) error {
	if !gw.Is4() {
		return fmt.Errorf("IPv4 gateway %s is not an IPv4 address", gw)
	}
	bits := min(a.Bits(), 29)
	for bits > 8 && !netip.PrefixFrom(a.Addr(), bits).Masked().Contains(gw) {
		bits--
	}
	cidr := netip.PrefixFrom(a.Addr(), bits).Masked()
	if !cidr.Contains(gw) {
		return fmt.Errorf("gateway %s is too far from the address %s", gw, a)
	}
	if gw == a.Addr() {
		return fmt.Errorf("the gateway %s is the namespace's own address", gw)
	}
	c.CIDR, c.Gateway, c.DHCPStart = cidr, gw, a.Addr()
	for _, d := range fwd {
		if d.Is4() && cidr.Contains(d) && d != gw && d != a.Addr() && d != cidr.Addr() && d != last(cidr) {
			c.DNSAddress = d
			return nil
		}
	}
	for d := prev(last(cidr)); cidr.Contains(d); d = prev(d) {
		if d != gw && d != a.Addr() {
			c.DNSAddress = d
			return nil
		}
	}
	return fmt.Errorf("no address left for DNS in %s", cidr)
}

// network6 makes slipway's IPv6 network the namespace's /64. A gateway
// outside it (a link-local one) is not slipway's to own: the namespace's
// route then goes through slipway's own router address.
func network6(c *config.Config, a netip.Prefix, gw netip.Addr, fwd []netip.Addr) {
	p64 := netip.PrefixFrom(a.Addr(), 64).Masked()
	c.IPv6Prefix = p64
	c.Map.GuestIPv6 = a.Addr()
	if p64.Contains(gw) && gw != a.Addr() && gw != p64.Addr() {
		c.IPv6Gateway = gw
	} else {
		for g := p64.Addr().Next(); ; g = g.Next() {
			if g != a.Addr() {
				c.IPv6Gateway = g
				break
			}
		}
	}
	for _, d := range fwd {
		if d.Is6() && p64.Contains(d) && d != c.IPv6Gateway && d != a.Addr() && d != p64.Addr() {
			c.IPv6DNS = d
			return
		}
	}
	// High in the /64, where neither SLAAC nor a person picks addresses.
	b := p64.Addr().As16()
	for i := 8; i < 16; i++ {
		b[i] = 0xff
	}
	b[15] = 0x53
	c.IPv6DNS = netip.AddrFrom16(b)
}

func last(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v |= (1 << (32 - p.Bits())) - 1
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func prev(a netip.Addr) netip.Addr { return a.Prev() }

// portFlags are one direction's -t/-u (or -T/-U) specs by protocol.
type portFlags struct {
	proto config.Proto
	specs []PortSpec
	flag  string
}

// forwards turns -t/-u into published ports (static ones) and automatic
// forwards, and -T/-U into namespace sockets.
func (o *Options) forwards(p *Plan, ephemeral uint16) error {
	c := &p.Config
	ports := 0
	for _, set := range []portFlags{{config.TCP, o.TCP, "-t"}, {config.UDP, o.UDP, "-u"}} {
		for _, s := range set.specs {
			if s.None {
				continue
			}
			hosts := o.hostAddrs(s, p)
			m := s.Map(ephemeral)
			if s.Auto {
				p.Auto = append(p.Auto, AutoForward{Proto: set.proto, Ports: m, HostAddrs: hosts})
				continue
			}
			if s.All {
				return fmt.Errorf("%s all (or only exclusions): slipway publishes the ports it is given; name ports or ranges, or use auto", set.flag)
			}
			for _, r := range m.Runs(nil) {
				for _, h := range hosts {
					c.Publish = append(c.Publish, p.Rule(set.proto, h, r))
					ports += int(r.Last-r.First) + 1
				}
			}
		}
	}
	if ports > config.DefaultMaxPublishedPorts {
		c.Limits.MaxPublishedPorts = ports
	}
	for _, set := range []portFlags{{config.TCP, o.TCPNS, "-T"}, {config.UDP, o.UDPNS, "-U"}} {
		for _, s := range set.specs {
			if s.None || s.Auto && len(s.Include) == 0 {
				continue // automatic forwards to the host are not followed
			}
			if s.All {
				return fmt.Errorf("%s all (or only exclusions): slipway listens on the ports it is given; name ports or ranges", set.flag)
			}
			listen := []netip.Addr{netip.MustParseAddr("127.0.0.1")}
			if s.Addr.IsValid() {
				listen = []netip.Addr{s.Addr}
			} else if p.Addr6.IsValid() {
				listen = append(listen, netip.IPv6Loopback())
			}
			for _, r := range s.Map(ephemeral).Runs(nil) {
				for i := int(r.First); i <= int(r.Last); i++ {
					to := r.To + uint16(i-int(r.First))
					for _, l := range listen {
						target := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), to)
						if l.Is6() {
							target = netip.AddrPortFrom(netip.IPv6Loopback(), to)
						}
						p.NSForwards = append(p.NSForwards, NSForward{Proto: set.proto, Listen: netip.AddrPortFrom(l, uint16(i)), Target: target})
					}
				}
			}
			if len(p.NSForwards) > maxNSListeners {
				return fmt.Errorf("%s: more than %d ports", set.flag, maxNSListeners)
			}
		}
	}
	return nil
}

// hostAddrs are the host addresses a forward binds: the spec's, or all of
// each family the namespace has.
func (o *Options) hostAddrs(s PortSpec, p *Plan) []netip.Addr {
	if s.Addr.IsValid() {
		return []netip.Addr{s.Addr}
	}
	var out []netip.Addr
	if p.Addr4.IsValid() {
		out = append(out, netip.IPv4Unspecified())
	}
	if p.Addr6.IsValid() {
		out = append(out, netip.IPv6Unspecified())
	}
	return out
}

// Rule is the published-port rule for host ports r on host (an address
// or unspecified) to the namespace's ports: clients of each family reach
// the namespace's address of that family where it has one.
func (p *Plan) Rule(proto config.Proto, host netip.Addr, r PortRange) config.PublishRule {
	guest := p.Addr4.Addr()
	if host.Is6() && p.Addr6.IsValid() || !p.Addr4.IsValid() {
		guest = p.Addr6.Addr()
	}
	rule := config.PublishRule{Proto: proto, HostAddr: host, HostPort: r.First, GuestAddr: guest, GuestPort: r.To}
	if r.Last != r.First {
		rule.HostPortEnd = r.Last
		rule.GuestPortEnd = r.To + (r.Last - r.First)
	}
	return rule
}

// MayListen reports whether the plan binds ap on the host for proto: a
// port a -t/-u forward publishes (fixed, or automatic while the namespace
// binds it) on one of its host addresses. A sandboxed engine's launcher
// binds nothing else for it.
func (p *Plan) MayListen(proto config.Proto, ap netip.AddrPort) bool {
	a, port := ap.Addr().Unmap(), ap.Port()
	for _, r := range p.Config.Publish {
		end := max(r.HostPortEnd, r.HostPort)
		if r.Proto == proto && r.HostAddr.Unmap() == a && port >= r.HostPort && port <= end {
			return true
		}
	}
	for _, f := range p.Auto {
		if f.Proto == proto && f.Ports[port] != 0 && slices.Contains(f.HostAddrs, a) {
			return true
		}
	}
	return false
}

// Descriptors is the most descriptors serving the plan holds beyond the
// network's own flows and published ports: -T's and -U's sockets in the
// namespace and two for each connection or session they carry, the
// /proc/net tables, and with --host-lo-to-ns-lo a socket in the
// namespace per loopback client and the socket factory's.
func (p *Plan) Descriptors() int {
	n := len(p.NSForwards) + 2*maxNSConns + 4
	if p.HostLoToNsLo {
		n += publish.DefaultMaxLoopbackConns + 1
	}
	return n
}
