package gvproxy

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strings"

	"github.com/slipway-net/slipway/config"
	"github.com/slipway-net/slipway/services/dns"
)

// gvproxy's defaults.
const (
	DefaultSubnet     = "192.168.127.0/24"
	DefaultGatewayMAC = "5a:94:ef:e4:0c:dd"
	// DefaultGuestMAC is the MAC the first guest's static lease is for
	// (podman machine gives its VM this one).
	DefaultGuestMAC = "5a:94:ef:e4:0c:ee"
	DefaultMTU      = 1500
)

// Protocols of /connect: the framing of the VM link it carries.
const (
	ProtoHyperkit = "hyperkit" // 16-bit little-endian length, then the frame
	ProtoQemu     = "qemu"     // 32-bit big-endian length, then the frame
	ProtoBess     = "bess"
	ProtoVfkit    = "vfkit"
)

// Expose is one port forward of gvproxy's forwarder (JSON is gvproxy's).
type Expose struct {
	Local    string `json:"local"`
	Remote   string `json:"remote"`
	Protocol string `json:"protocol"`
}

// Plan is what slipway does for one gvproxy command line and file.
type Plan struct {
	Config config.Config
	// Endpoints are slipway endpoint specs for the VM transports.
	Endpoints []string
	Stdio     bool
	// Protocol is /connect's framing.
	Protocol string
	// Listen are API endpoints with /connect; Services one without.
	// Open opens them; the engine gets them as a Handover.
	Listen   []*url.URL `json:"-"`
	Services *url.URL   `json:"-"`
	Zones    []dns.Zone
	// Forwards are published at start (the SSH port, the file's).
	Forwards    []Expose
	SSHForwards []SSHForward
	// Guest is the first guest's address, where SSH forwards go (:22).
	Guest        netip.Addr
	Host         netip.Addr // the host's address in the network (.254)
	PIDFile      string
	LogFile      string
	Notification string
	EC2Metadata  bool
}

// Plan combines the options and the file (nil without -config) as
// gvproxy does: flags override the file; without a file, gvproxy's
// defaults (DNS zones, the SSH forward, the static lease) apply.
func (o *Options) Plan(f *File) (*Plan, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	withFile := f != nil
	if f == nil {
		f = &File{}
	}
	st := f.Stack
	p := &Plan{PIDFile: pick(o.PIDFile, f.PIDFile), LogFile: pick(o.LogFile, f.LogFile), EC2Metadata: o.EC2Metadata || f.EC2MetadataAccess || st.EC2MetadataAccess}
	subnet := pick(o.Subnet, st.Subnet, DefaultSubnet)
	cidr, err := netip.ParsePrefix(subnet)
	if err != nil || !cidr.Addr().Is4() || cidr.Bits() > 29 {
		return nil, fmt.Errorf("invalid subnet %q: want an IPv4 prefix of /29 or larger", subnet)
	}
	cidr = cidr.Masked()
	gw := cidr.Addr().Next()
	if st.GatewayIP != "" {
		if gw, err = netip.ParseAddr(st.GatewayIP); err != nil || !cidr.Contains(gw) {
			return nil, fmt.Errorf("invalid gatewayIP %q: not an address of %s", st.GatewayIP, cidr)
		}
	}
	p.Host = lastUsable(cidr)
	p.Guest = gw.Next()
	c := &p.Config
	c.CIDR, c.Gateway, c.DNSAddress, c.DHCPStart = cidr, gw, gw, p.Guest
	c.MTU = DefaultMTU
	switch {
	case o.MTU > 0:
		c.MTU = o.MTU
	case st.MTU > 0:
		c.MTU = st.MTU
	}
	c.GatewayMAC = pick(st.GatewayMacAddress, DefaultGatewayMAC)
	if _, err := parseMAC(c.GatewayMAC); err != nil {
		return nil, fmt.Errorf("invalid gatewayMacAddress: %w", err)
	}
	c.PCAP = pick(o.PCAP, st.CaptureFile)
	c.LogLevel = "info"
	if lvl := strings.ToLower(f.LogLevel); lvl == "debug" || lvl == "info" || lvl == "warn" || lvl == "error" {
		c.LogLevel = lvl
	} else if lvl == "warning" {
		c.LogLevel = "warn"
	}
	if o.Debug || st.Debug {
		c.LogLevel = "debug"
	}
	c.Restrict = st.BlockAllOutbound
	c.Sandbox = o.Sandbox
	if !p.EC2Metadata {
		// gvproxy keeps its VMs from a cloud host's metadata service.
		c.Deny = []netip.Prefix{netip.MustParsePrefix("169.254.0.0/16")}
	}
	c.DNSSearch = st.DNSSearchDomains
	// gvproxy's names come from its zones, not slipway's host names.
	c.HostNames = []string{"host.slipway.internal"}
	// The gateway is gvproxy's own router; the host is at the NAT
	// addresses (.254 → 127.0.0.1).
	c.Map.GatewayIsRouter = true
	nat := st.NAT
	if len(nat) == 0 {
		nat = map[string]string{p.Host.String(): "127.0.0.1"}
	}
	for _, src := range sortedKeys(nat) {
		from, err := netip.ParseAddr(src)
		to, err2 := netip.ParseAddr(nat[src])
		if err != nil || err2 != nil || !from.Is4() {
			return nil, fmt.Errorf("invalid nat entry %q: %q", src, nat[src])
		}
		if !to.IsLoopback() {
			return nil, fmt.Errorf("nat %s → %s: slipway translates only to the host's loopback", from, to)
		}
		c.Map.HostLoopback = append(c.Map.HostLoopback, from)
	}
	leases := st.DHCPStaticLeases
	if !withFile {
		leases = map[string]string{p.Guest.String(): DefaultGuestMAC}
	}
	for _, ip := range sortedKeys(leases) {
		l, err := config.ParseStaticLease(leases[ip] + "=" + ip)
		if err != nil {
			return nil, fmt.Errorf("invalid dhcpStaticLeases entry %s: %w", ip, err)
		}
		c.DHCPStatic = append(c.DHCPStatic, l)
	}
	if err := p.zones(st.DNS, withFile); err != nil {
		return nil, err
	}
	if err := p.transports(o, f); err != nil {
		return nil, err
	}
	if err := p.api(o, f); err != nil {
		return nil, err
	}
	forwards := st.Forwards
	if !withFile && o.SSHPort != -1 {
		forwards = map[string]string{fmt.Sprintf("127.0.0.1:%d", o.SSHPort): netip.AddrPortFrom(p.Guest, 22).String()}
	}
	for _, local := range sortedKeys(forwards) {
		e := Expose{Local: local, Remote: forwards[local], Protocol: "tcp"}
		if l, ok := strings.CutPrefix(local, "udp:"); ok {
			e.Local, e.Protocol = l, "udp"
		}
		p.Forwards = append(p.Forwards, e)
	}
	p.SSHForwards = append(p.SSHForwards, f.Forwards...)
	for i := range o.ForwardSock {
		p.SSHForwards = append(p.SSHForwards, SSHForward{Socket: o.ForwardSock[i], Dest: o.ForwardDest[i], User: o.ForwardUser[i], Identity: o.ForwardIdent[i]})
	}
	if err := c.Complete(); err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return p, nil
}

// zones are the file's DNS zones, or gvproxy's defaults without a file:
// containers.internal and docker.internal with gateway and host.
func (p *Plan) zones(file []YAMLZone, withFile bool) error {
	if !withFile {
		for _, name := range []string{"containers.internal.", "docker.internal."} {
			p.Zones = append(p.Zones, dns.Zone{Name: name, Records: []dns.Record{
				{Name: "gateway", IP: p.Config.Gateway}, {Name: "host", IP: p.Host}}})
		}
		return nil
	}
	for _, z := range file {
		dz := dns.Zone{Name: z.Name}
		if z.DefaultIP != "" {
			a, err := netip.ParseAddr(z.DefaultIP)
			if err != nil {
				return fmt.Errorf("dns zone %q: invalid defaultIP %q", z.Name, z.DefaultIP)
			}
			dz.DefaultIP = a
		}
		for _, r := range z.Records {
			a, err := netip.ParseAddr(r.IP)
			if err != nil {
				return fmt.Errorf("dns zone %q: record %q: invalid ip %q", z.Name, r.Name, r.IP)
			}
			dz.Records = append(dz.Records, dns.Record{Name: r.Name, IP: a, Regexp: r.Regexp})
		}
		p.Zones = append(p.Zones, dz)
	}
	return nil
}

// transports are the VM endpoints: -listen-qemu (unix:// or tcp://),
// -listen-bess (unixpacket://), -listen-vfkit (unixgram://), -listen-stdio.
func (p *Plan) transports(o *Options, f *File) error {
	qemu := pick(o.Qemu, f.Interfaces.Qemu)
	bess := pick(o.Bess, f.Interfaces.Bess)
	vfkit := pick(o.Vfkit, f.Interfaces.Vfkit)
	vpnkit := pick(o.VPNKit, f.Interfaces.VPNKit)
	switch {
	case vpnkit != "" && qemu != "":
		return errors.New("cannot use qemu and vpnkit protocol at the same time")
	case vpnkit != "" && bess != "":
		return errors.New("cannot use bess and vpnkit protocol at the same time")
	case qemu != "" && bess != "":
		return errors.New("cannot use qemu and bess protocol at the same time")
	case vpnkit != "":
		return errors.New("-listen-vpnkit: the vpnkit (hyperkit) protocol is not supported by slipway's gvproxy")
	}
	p.Protocol = ProtoHyperkit
	if qemu != "" {
		u, err := url.Parse(qemu)
		if err != nil {
			return fmt.Errorf("invalid value for listen-qemu: %w", err)
		}
		switch u.Scheme {
		case "unix":
			p.Endpoints = append(p.Endpoints, "stream:unix:"+urlPath(u))
		case "tcp":
			p.Endpoints = append(p.Endpoints, "stream:tcp:"+u.Host)
		default:
			return fmt.Errorf("invalid value for listen-qemu: %q: want unix:// or tcp://", qemu)
		}
		p.Protocol = ProtoQemu
	}
	if bess != "" {
		u, err := url.Parse(bess)
		if err != nil || u.Scheme != "unixpacket" {
			return errors.New("listen-bess must be unixpacket:// address")
		}
		p.Endpoints = append(p.Endpoints, "seqpacket:unix:"+urlPath(u))
		p.Protocol = ProtoBess
	}
	if vfkit != "" {
		u, err := url.Parse(vfkit)
		if err != nil || u.Scheme != "unixgram" {
			return errors.New("listen-vfkit must be unixgram:// address")
		}
		p.Endpoints = append(p.Endpoints, "dgram:unix:"+urlPath(u))
		p.Protocol = ProtoVfkit
	}
	p.Stdio = pick(o.Stdio, f.Interfaces.Stdio) != ""
	return nil
}

// api are the HTTP API's endpoints and the notification socket.
func (p *Plan) api(o *Options, f *File) error {
	listen := o.Listen
	if len(listen) == 0 {
		listen = f.Listen
	}
	for _, l := range listen {
		u, err := apiURL(l)
		if err != nil {
			return fmt.Errorf("invalid value %q for -listen: %w", l, err)
		}
		p.Listen = append(p.Listen, u)
	}
	if s := pick(o.Services, f.Services); s != "" {
		u, err := apiURL(s)
		if err != nil {
			return fmt.Errorf("invalid value %q for -services: %w", s, err)
		}
		p.Services = u
	}
	if n := pick(o.Notification, f.Notification); n != "" {
		u, err := url.Parse(n)
		if err != nil {
			return fmt.Errorf("invalid value for notification listen address: %w", err)
		}
		if u.Scheme != "unix" {
			return errors.New("notification listen address must be unix:// address")
		}
		p.Notification = urlPath(u)
	}
	return nil
}

// apiURL checks an API endpoint: unix://PATH, tcp://HOST:PORT or
// vsock://[CID]:PORT.
func apiURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, err
	}
	switch u.Scheme {
	case "unix":
		if urlPath(u) == "" {
			return nil, errors.New("no socket path")
		}
	case "tcp", "vsock":
		if u.Port() == "" {
			return nil, errors.New("no port")
		}
	default:
		return nil, fmt.Errorf("scheme %q: want unix, tcp or vsock", u.Scheme)
	}
	return u, nil
}

// urlPath is a unix:// URL's path: unix:///abs/path and unix://rel/path
// (host and path) both occur.
func urlPath(u *url.URL) string {
	if u.Host != "" {
		return u.Host + u.Path
	}
	if u.Path == "" {
		return u.Opaque
	}
	return u.Path
}

func lastUsable(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v |= (1 << (32 - p.Bits())) - 1
	v--
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// pick is the first non-empty string.
func pick(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
