// Package config holds the one configuration type shared by the slipway
// command's flags, its YAML config file and the embedding Go API, and the one
// place where it is completed with defaults and validated.
package config

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Config describes one virtual network. The zero value of an address field
// means "derive it from CIDR" (see Complete); the zero value of a limit means
// "use the default".
type Config struct {
	// CIDR is the IPv4 subnet of the virtual network.
	CIDR netip.Prefix `yaml:"cidr"`
	// Gateway is the address of slipway's virtual router; flows to it reach
	// the host's loopback unless NoHostLoopback is set.
	Gateway netip.Addr `yaml:"gateway"`
	// DNSAddress is where slipway's DNS forwarder answers.
	DNSAddress netip.Addr `yaml:"dns-address"`
	// DHCPStart is the first address DHCP hands out (and the address
	// `slipway run` gives the namespace).
	DHCPStart netip.Addr `yaml:"dhcp-start"`
	// MTU of the guest-facing link, advertised by DHCP option 26.
	MTU int `yaml:"mtu"`

	// NoIPv6 turns IPv6 off: no addresses, router advertisements or
	// DHCPv6, and IPv6 frames from guests are dropped.
	NoIPv6 bool `yaml:"no-ipv6"`
	// IPv6Prefix is the guests' /64, announced for SLAAC.
	IPv6Prefix netip.Prefix `yaml:"ipv6-prefix"`
	// IPv6Gateway stands for the host (its ::1) as Gateway does for IPv4.
	IPv6Gateway netip.Addr `yaml:"ipv6-gateway"`
	// IPv6DNS is where the DNS forwarder answers over IPv6.
	IPv6DNS netip.Addr `yaml:"ipv6-dns"`

	// DNSUpstreams are the resolvers DNS queries are forwarded to; empty
	// means the host's /etc/resolv.conf nameservers.
	DNSUpstreams []DNSServer `yaml:"dns-upstream"`
	// AdvertiseDNS, if set, are the DNS servers guests are told of
	// instead of slipway's own (DNSAddress, IPv6DNS): the IPv4 ones by
	// DHCP (option 6), the IPv6 ones by DHCPv6 and router advertisements
	// (RDNSS). A family with none in the list is told of none.
	AdvertiseDNS []netip.Addr `yaml:"advertise-dns"`
	// NoAdvertiseDNS tells guests of no DNS server at all.
	NoAdvertiseDNS bool `yaml:"no-advertise-dns"`
	// NoHostLoopback makes flows to the gateway address fail instead of
	// reaching the host's loopback.
	NoHostLoopback bool `yaml:"no-host-loopback"`
	// Restrict blocks every outbound flow; DHCP and DNS are still served.
	Restrict bool `yaml:"restrict"`
	// Mode is ModeNAT (guests reach wherever the host does) or
	// ModeHostOnly (vmnet's host-only: guests reach each other, slipway's
	// services, the host through the gateways and published ports, and
	// nothing beyond the host). DNS queries are still forwarded upstream,
	// as under Restrict: the forwarder relays only DNS, guests' names
	// (the host's too) keep resolving, and a resolver on the host as
	// DNSUpstreams keeps even that on the host.
	Mode string `yaml:"mode"`
	// Egress are the user's allow and deny rules for guests' outbound
	// flows, tried in order, the first match winning; a flow no rule
	// matches is allowed. Flags: --deny and --allow, which add to one
	// list in the order given.
	Egress []EgressRule `yaml:"egress"`
	// AllowLinkLocal lets guests reach link-local destinations
	// (169.254.0.0/16, where clouds serve instance metadata, and
	// fe80::/10), refused by default.
	AllowLinkLocal bool `yaml:"allow-link-local"`
	// Deny are destinations guests' flows may not reach (the gvproxy
	// personality's link-local block, which keeps a cloud host's metadata
	// service at 169.254.169.254 from its VMs).
	Deny []netip.Prefix `yaml:"-"`
	// OutboundAddr, if valid, is the local address outbound host sockets
	// bind to.
	OutboundAddr netip.Addr `yaml:"outbound-addr"`
	// Hostname is given to DHCP clients (option 12) if set.
	Hostname string `yaml:"hostname"`
	// Domain is the DNS domain given to DHCP clients (option 15); empty
	// means the host's.
	Domain string `yaml:"domain"`
	// DNSSearch is the search list given to DHCP clients (option 119);
	// empty means the host's.
	DNSSearch []string `yaml:"dns-search"`
	// TFTPRoot, if set, is the directory a read-only TFTP server on the
	// gateway's port 69 serves, for network boot (libslirp's tftp=).
	TFTPRoot string `yaml:"tftp-root"`
	// BootFile is the network boot file DHCP names, with the gateway as
	// its server (libslirp's bootfile=).
	BootFile string `yaml:"boot-file"`
	// TFTPServerName is sent as DHCP option 66 (libslirp's
	// tftp-server-name=).
	TFTPServerName string `yaml:"tftp-server-name"`

	// Publish lists host ports published into guests.
	Publish []PublishRule `yaml:"publish"`
	// PublishSource is whose address a guest sees on connections to
	// published ports: "client" (the real client, the default) or
	// "gateway".
	PublishSource string `yaml:"publish-source"`
	// APISocket, if set, is the path of the control API's unix socket.
	APISocket string `yaml:"api-socket"`
	// StateFile, if set, keeps leases and run-time forwards across
	// restarts (loaded at start, written on every change).
	StateFile string `yaml:"state-file"`

	// PCAP, if set, is a file every frame on the guest side is written to.
	PCAP string `yaml:"pcap"`
	// LogLevel is one of debug, info, warn, error.
	LogLevel string `yaml:"log-level"`
	// Sandbox is how the engine (what reads guest and API input) is
	// confined: "on" (the default: namespaces, empty root, no
	// capabilities, Landlock, seccomp), "strict" (also an empty network
	// namespace: every host socket comes from the launcher, which checks
	// the policy again) or "off" (one unconfined process, for debugging).
	Sandbox string `yaml:"sandbox"`

	Limits Limits `yaml:"limits"`

	// Map lists addresses beyond the network's own (see AddrMap).
	Map AddrMap `yaml:"map"`
	// HostNames resolve to the host (the gateways, or the addresses Map
	// gives the host); empty means DefaultHostNames. host.slipway.internal
	// always does.
	HostNames []string `yaml:"host-name"`
	// DNSRecords are further names the DNS answers itself.
	DNSRecords []DNSRecord `yaml:"dns-record"`
	// DHCPStatic pins DHCP addresses to MACs.
	DHCPStatic []StaticLease `yaml:"dhcp-static"`
	// GatewayMAC, if set, is the gateway's Ethernet address (default
	// 52:55 and the gateway's IPv4 address).
	GatewayMAC string `yaml:"gateway-mac"`
	// PIDFile, if set, is written with slipway's pid once it serves.
	PIDFile string `yaml:"pid-file"`
	// LogFile, if set, receives the log instead of stderr.
	LogFile string `yaml:"log-file"`
	// LogFormat is text (the default) or json.
	LogFormat string `yaml:"log-format"`
}

// Limits bounds every resource a guest can grow.
type Limits struct {
	// MaxFlows bounds concurrent flows to the host: TCP, UDP and ping
	// sessions, published ports' included.
	MaxFlows int `yaml:"max-flows"`
	// MaxPendingConnects bounds outbound TCP connects in progress; a
	// connect waiting on a slow destination holds one slot, so a large
	// number keeps slow destinations from stalling other connects.
	MaxPendingConnects int `yaml:"max-pending-connects"`
	// ConnectTimeout bounds one outbound TCP connect.
	ConnectTimeout time.Duration `yaml:"connect-timeout"`
	// UDPIdleTimeout closes a UDP flow with no traffic either way.
	UDPIdleTimeout time.Duration `yaml:"udp-idle-timeout"`
	// UDPUnrepliedTimeout closes sooner a UDP flow the host never sent
	// anything back on (as conntrack does): a guest spraying datagrams to
	// many ports holds their sockets this long, not UDPIdleTimeout.
	UDPUnrepliedTimeout time.Duration `yaml:"udp-unreplied-timeout"`
	// DNSMaxInFlight bounds DNS queries being forwarded at once.
	DNSMaxInFlight int `yaml:"dns-max-inflight"`
	// DHCPMaxLeases bounds DHCP leases.
	DHCPMaxLeases int `yaml:"dhcp-max-leases"`
	// MaxICMPFlows bounds echo (ping) flows to the host.
	MaxICMPFlows int `yaml:"max-icmp-flows"`
	// MaxUDPFlowsPerGuest bounds the UDP flows one guest address opens,
	// so one guest spraying datagrams cannot take the whole table.
	MaxUDPFlowsPerGuest int `yaml:"max-udp-flows-per-guest"`
	// MaxNewFlowsPerSecond bounds how fast one guest address opens
	// flows (a second's worth may come at once).
	MaxNewFlowsPerSecond int `yaml:"max-new-flows-per-second"`
	// MaxPublishedPorts bounds host ports published at once (a range
	// counts each of its ports): each one is a host listener.
	MaxPublishedPorts int `yaml:"max-published-ports"`
}

// Defaults users know from QEMU user networking and passt.
const (
	DefaultCIDR                = "10.0.2.0/24"
	DefaultIPv6Prefix          = "fd00::/64"
	DefaultMTU                 = 65520
	MinMTU                     = 576
	MaxMTU                     = 65521
	DefaultMaxFlows            = 16384
	DefaultMaxPendingConnects  = 1024
	DefaultConnectTimeout      = 30 * time.Second
	DefaultUDPIdleTimeout      = 60 * time.Second
	DefaultUDPUnrepliedTimeout = 30 * time.Second
	DefaultDNSMaxInFlight      = 256
	DefaultDHCPMaxLeases       = 256
	DefaultMaxICMPFlows        = 256
	DefaultMaxUDPFlowsPerGuest = 4096
	// DefaultMaxNewFlowsPerSecond is about three times the connection
	// rate slipway sustains here, so only a flood meets it.
	DefaultMaxNewFlowsPerSecond = 10000
	DefaultMaxPublishedPorts    = 4096
	DefaultLogLevel             = "info"
	SandboxOn                   = "on"
	SandboxOff                  = "off"
	// SandboxStrict adds an empty network namespace for the engine,
	// which then opens no socket itself: the launcher opens each on
	// request, checking the policy again.
	SandboxStrict = "strict"
	// ModeNAT is the default network mode: guests' flows go wherever the
	// host's would.
	ModeNAT = "nat"
	// ModeHostOnly confines guests to the host (vmnet's host-only).
	ModeHostOnly = "host-only"
)

// MaxAdvertiseDNS bounds AdvertiseDNS's addresses of each family: more
// than resolvers use (three), few enough for every option that carries
// them.
const MaxAdvertiseDNS = 8

// Default returns a completed default configuration.
func Default() Config {
	var c Config
	if err := c.Complete(); err != nil {
		panic(err) // the built-in defaults are valid by construction
	}
	return c
}

// Complete fills every zero field with its default, deriving addresses from
// the CIDR: gateway .2, DNS .3, first guest .15.
func (c *Config) Complete() error {
	if !c.CIDR.IsValid() {
		c.CIDR = netip.MustParsePrefix(DefaultCIDR)
	}
	c.CIDR = c.CIDR.Masked()
	base := c.CIDR.Addr()
	if !c.Gateway.IsValid() {
		c.Gateway = addrPlus(base, 2)
	}
	if !c.DNSAddress.IsValid() {
		c.DNSAddress = addrPlus(base, 3)
	}
	if !c.DHCPStart.IsValid() {
		c.DHCPStart = addrPlus(base, 15)
	}
	if c.MTU == 0 {
		c.MTU = DefaultMTU
	}
	if !c.IPv6Prefix.IsValid() {
		c.IPv6Prefix = netip.MustParsePrefix(DefaultIPv6Prefix)
	}
	c.IPv6Prefix = c.IPv6Prefix.Masked()
	if !c.IPv6Gateway.IsValid() {
		c.IPv6Gateway = addr6Plus(c.IPv6Prefix.Addr(), 2)
	}
	if !c.IPv6DNS.IsValid() {
		c.IPv6DNS = addr6Plus(c.IPv6Prefix.Addr(), 3)
	}
	if c.LogLevel == "" {
		c.LogLevel = DefaultLogLevel
	}
	if c.Sandbox == "" {
		c.Sandbox = SandboxOn
	}
	if c.PublishSource == "" {
		c.PublishSource = PublishSourceClient
	}
	if c.Mode == "" {
		c.Mode = ModeNAT
	}
	l := &c.Limits
	setDefault(&l.MaxFlows, DefaultMaxFlows)
	setDefault(&l.MaxPendingConnects, DefaultMaxPendingConnects)
	setDefault(&l.DNSMaxInFlight, DefaultDNSMaxInFlight)
	setDefault(&l.DHCPMaxLeases, DefaultDHCPMaxLeases)
	setDefault(&l.MaxICMPFlows, DefaultMaxICMPFlows)
	setDefault(&l.MaxUDPFlowsPerGuest, DefaultMaxUDPFlowsPerGuest)
	setDefault(&l.MaxNewFlowsPerSecond, DefaultMaxNewFlowsPerSecond)
	setDefault(&l.MaxPublishedPorts, DefaultMaxPublishedPorts)
	setDefault(&l.ConnectTimeout, DefaultConnectTimeout)
	setDefault(&l.UDPIdleTimeout, DefaultUDPIdleTimeout)
	setDefault(&l.UDPUnrepliedTimeout, DefaultUDPUnrepliedTimeout)
	return nil
}

func setDefault[T int | time.Duration](v *T, def T) {
	if *v == 0 {
		*v = def
	}
}

// FieldError names the flag (and config key) whose value is wrong.
type FieldError struct {
	Flag   string // without dashes; the YAML key is the same
	Value  string
	Reason string
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("invalid value %q for --%s: %s", e.Value, e.Flag, e.Reason)
}

func fieldErr(flag string, value any, format string, args ...any) error {
	return &FieldError{Flag: flag, Value: fmt.Sprint(value), Reason: fmt.Sprintf(format, args...)}
}

// Validate checks a completed configuration and returns the first problem
// as a *FieldError.
func (c *Config) Validate() error {
	if !c.CIDR.Addr().Is4() {
		return fieldErr("cidr", c.CIDR, "must be an IPv4 prefix")
	}
	if c.CIDR.Bits() > 29 {
		return fieldErr("cidr", c.CIDR, "prefix must be /29 or larger to hold gateway, DNS and guests")
	}
	inside := func(flag string, a netip.Addr) error {
		if !a.Is4() {
			return fieldErr(flag, a, "must be an IPv4 address")
		}
		if !c.CIDR.Contains(a) {
			return fieldErr(flag, a, "not inside --cidr %s", c.CIDR)
		}
		if a == c.CIDR.Addr() || a == broadcast(c.CIDR) {
			return fieldErr(flag, a, "is the network or broadcast address of --cidr %s", c.CIDR)
		}
		return nil
	}
	for _, f := range []struct {
		flag string
		a    netip.Addr
	}{{"gateway", c.Gateway}, {"dns-address", c.DNSAddress}, {"dhcp-start", c.DHCPStart}} {
		if err := inside(f.flag, f.a); err != nil {
			return err
		}
	}
	if c.DHCPStart == c.Gateway || c.DHCPStart == c.DNSAddress {
		return fieldErr("dhcp-start", c.DHCPStart, "collides with the gateway or DNS address")
	}
	if !c.IPv6Prefix.Addr().Is6() || c.IPv6Prefix.Addr().Is4In6() || c.IPv6Prefix.Bits() != 64 {
		return fieldErr("ipv6-prefix", c.IPv6Prefix, "must be an IPv6 /64 (SLAAC needs 64 bits of interface identifier)")
	}
	for _, f := range []struct {
		flag string
		a    netip.Addr
	}{{"ipv6-gateway", c.IPv6Gateway}, {"ipv6-dns", c.IPv6DNS}} {
		if !c.IPv6Prefix.Contains(f.a) {
			return fieldErr(f.flag, f.a, "not inside --ipv6-prefix %s", c.IPv6Prefix)
		}
		if f.a == c.IPv6Prefix.Addr() {
			return fieldErr(f.flag, f.a, "is the subnet-router anycast address of --ipv6-prefix %s", c.IPv6Prefix)
		}
	}
	if c.IPv6Gateway == c.IPv6DNS {
		return fieldErr("ipv6-dns", c.IPv6DNS, "collides with --ipv6-gateway")
	}
	if !c.NoIPv6 && c.MTU < 1280 {
		return fieldErr("mtu", c.MTU, "IPv6 needs at least 1280 (or use --no-ipv6)")
	}
	if c.MTU < MinMTU || c.MTU > MaxMTU {
		return fieldErr("mtu", c.MTU, "must be in range %d..%d", MinMTU, MaxMTU)
	}
	for _, u := range c.DNSUpstreams {
		if !u.AddrPort.IsValid() || u.Port() == 0 {
			return fieldErr("dns-upstream", u, "must be ADDR or ADDR:PORT with a non-zero port")
		}
	}
	if err := c.validateAdvertiseDNS(); err != nil {
		return err
	}
	if c.OutboundAddr.IsValid() && c.OutboundAddr.IsUnspecified() {
		return fieldErr("outbound-addr", c.OutboundAddr, "must be a specific address")
	}
	if c.Hostname != "" && !validDNSName(c.Hostname) {
		return fieldErr("hostname", c.Hostname, "not a valid host name")
	}
	if c.Domain != "" && !validDNSName(c.Domain) {
		return fieldErr("domain", c.Domain, "not a valid domain name")
	}
	for _, d := range c.DNSSearch {
		if !validDNSName(d) {
			return fieldErr("dns-search", d, "not a valid domain name")
		}
	}
	if err := c.validatePublish(); err != nil {
		return err
	}
	if err := c.validateMap(); err != nil {
		return err
	}
	if err := c.validateNames(); err != nil {
		return err
	}
	if err := c.validateEgress(); err != nil {
		return err
	}
	switch c.Sandbox {
	case SandboxOn, SandboxOff, SandboxStrict:
	default:
		return fieldErr("sandbox", c.Sandbox, "must be on, strict or off")
	}
	switch c.Mode {
	case ModeNAT, ModeHostOnly:
	default:
		return fieldErr("mode", c.Mode, "must be %s or %s", ModeNAT, ModeHostOnly)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fieldErr("log-level", c.LogLevel, "must be one of debug, info, warn, error")
	}
	l := c.Limits
	for _, f := range []struct {
		flag string
		v    int
	}{
		{"max-flows", l.MaxFlows}, {"max-pending-connects", l.MaxPendingConnects},
		{"dns-max-inflight", l.DNSMaxInFlight}, {"dhcp-max-leases", l.DHCPMaxLeases},
		{"max-icmp-flows", l.MaxICMPFlows}, {"max-published-ports", l.MaxPublishedPorts},
		{"max-udp-flows-per-guest", l.MaxUDPFlowsPerGuest}, {"max-new-flows-per-second", l.MaxNewFlowsPerSecond},
	} {
		if f.v < 1 {
			return fieldErr(f.flag, f.v, "must be at least 1")
		}
	}
	for _, f := range []struct {
		flag string
		v    time.Duration
	}{{"connect-timeout", l.ConnectTimeout}, {"udp-idle-timeout", l.UDPIdleTimeout}, {"udp-unreplied-timeout", l.UDPUnrepliedTimeout}} {
		if f.v < time.Second {
			return fieldErr(f.flag, f.v, "must be at least 1s")
		}
	}
	return nil
}

// validatePublish checks every rule on its own and against the others
// (with the defaults applied, as the network will run them).
func (c *Config) validatePublish() error {
	switch c.PublishSource {
	case PublishSourceClient, PublishSourceGateway:
	default:
		return fieldErr("publish-source", c.PublishSource, "must be %s or %s", PublishSourceClient, PublishSourceGateway)
	}
	resolved := make([]PublishRule, 0, len(c.Publish))
	ports := 0
	for _, r := range c.Publish {
		rr, err := c.Resolve(r)
		if err != nil {
			return err
		}
		for _, o := range resolved {
			if PublishConflict(rr, o) {
				return fieldErr("publish", r, "overlaps with %s", o)
			}
		}
		ports += rr.HostPorts()
		resolved = append(resolved, rr)
	}
	if ports > c.Limits.MaxPublishedPorts {
		return fieldErr("publish", fmt.Sprintf("%d ports", ports), "more than --max-published-ports %d", c.Limits.MaxPublishedPorts)
	}
	return nil
}

// validateAdvertiseDNS checks AdvertiseDNS: unicast addresses, at most
// MaxAdvertiseDNS of each family, and not with NoAdvertiseDNS.
func (c *Config) validateAdvertiseDNS() error {
	if c.NoAdvertiseDNS && len(c.AdvertiseDNS) > 0 {
		return fieldErr("no-advertise-dns", c.NoAdvertiseDNS, "contradicts --advertise-dns %s", c.AdvertiseDNS[0])
	}
	n4, n6 := 0, 0
	for _, a := range c.AdvertiseDNS {
		if !a.IsValid() || a.IsUnspecified() || a.IsMulticast() || a.Is4In6() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
			return fieldErr("advertise-dns", a, "must be a unicast IPv4 or IPv6 address")
		}
		if a.Is4() {
			n4++
		} else {
			n6++
		}
	}
	if n4 > MaxAdvertiseDNS || n6 > MaxAdvertiseDNS {
		return fieldErr("advertise-dns", len(c.AdvertiseDNS), "at most %d addresses of each family", MaxAdvertiseDNS)
	}
	return nil
}

// AdvertisedDNS are the DNS servers guests are told of, by family (see
// AdvertiseDNS).
func (c *Config) AdvertisedDNS() (v4, v6 []netip.Addr) {
	switch {
	case c.NoAdvertiseDNS:
		return nil, nil
	case len(c.AdvertiseDNS) == 0:
		return []netip.Addr{c.DNSAddress}, []netip.Addr{c.IPv6DNS}
	}
	for _, a := range c.AdvertiseDNS {
		if a.Is4() {
			v4 = append(v4, a)
		} else {
			v6 = append(v6, a)
		}
	}
	return v4, v6
}

// validDNSName accepts host and domain names of letters, digits, hyphens and
// underscores, dot-separated, at most 253 characters.
func validDNSName(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return true
}

// LoadFile reads a YAML config file over c; unknown keys are an error so a
// typo does not silently fall back to a default.
func (c *Config) LoadFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	defer f.Close()
	return c.Load(f, path)
}

// Load is LoadFile on a file already open (name is its path, for
// messages): a sandboxed process that may open no file is handed it.
func (c *Config) Load(r io.Reader, name string) error {
	dec := yaml.NewDecoder(r)
	dec.KnownFields(true)
	// An empty file is an empty config, not an error.
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("config file %s: %w", name, err)
	}
	return nil
}

func addrPlus(a netip.Addr, n uint32) netip.Addr {
	b := a.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v += n
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func addr6Plus(a netip.Addr, n byte) netip.Addr {
	b := a.As16()
	b[15] += n
	return netip.AddrFrom16(b)
}

func broadcast(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v |= (1 << (32 - p.Bits())) - 1
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// DNSServer is an upstream resolver address; the port defaults to 53.
type DNSServer struct{ netip.AddrPort }

// ParseDNSServer accepts ADDR, ADDR:PORT and [V6ADDR]:PORT.
func ParseDNSServer(s string) (DNSServer, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		if ap.Port() == 0 {
			return DNSServer{}, errors.New("port must not be 0")
		}
		return DNSServer{ap}, nil
	}
	a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]"))
	if err != nil {
		return DNSServer{}, fmt.Errorf("want ADDR or ADDR:PORT: %w", err)
	}
	return DNSServer{netip.AddrPortFrom(a, 53)}, nil
}

// UnmarshalText lets YAML and flags share ParseDNSServer.
func (d *DNSServer) UnmarshalText(b []byte) error {
	v, err := ParseDNSServer(string(b))
	if err != nil {
		return fieldErr("dns-upstream", string(b), "%v", err)
	}
	*d = v
	return nil
}

// MarshalText prints ADDR:PORT.
func (d DNSServer) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// CopyField copies the field whose YAML key (and flag name) is key from src
// to dst, looking into Limits too. It reports whether such a field exists.
// The command line uses it to lay flags over a config file.
func CopyField(dst, src *Config, key string) bool {
	// --deny and --allow both add to the one ordered egress list.
	if key == "deny" || key == "allow" {
		key = "egress"
	}
	return copyField(reflect.ValueOf(dst).Elem(), reflect.ValueOf(src).Elem(), key)
}

func copyField(dst, src reflect.Value, key string) bool {
	t := dst.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == key {
			dst.Field(i).Set(src.Field(i))
			return true
		}
		if f.Type == reflect.TypeOf(Limits{}) && copyField(dst.Field(i), src.Field(i), key) {
			return true
		}
	}
	return false
}
