// Package pasta reads pasta(1)'s command line (passt's namespace mode) for
// slipway's pasta personality: the options, their port specifications,
// the host's addressing that pasta copies into the namespace, and the
// namespace's listening sockets that its automatic port forwarding
// follows. It parses and decides; cmd/slipway wires the network.
package pasta

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Options is pasta's command line, parsed.
type Options struct {
	ConfigNet   bool
	NetNS       string // --netns PATH (a NAME is under /run/netns)
	NetNSOnly   bool
	UserNS      string
	PID         int      // the target process, 0 if none
	Command     []string // a command to run in a new namespace
	NoNetnsQuit bool

	TCP, UDP, TCPNS, UDPNS []PortSpec

	NoMapGW         bool
	MapHostLoopback []netip.Addr
	MapGuestAddr    []netip.Addr
	DNSForward      []netip.Addr
	DNS             []netip.Addr // -D, as left by the last -D none
	NoDNS           bool         // -D none (or empty) last
	DHCPDNS         bool         // --dhcp-dns: tell DHCP, DHCPv6 and NDP clients
	DNSHost         []netip.Addr
	Search          []string
	Hostname        string

	Addresses []netip.Addr // -a, at most one per family
	Prefix4   int          // -a ADDR/LEN or -n, -1 when not given
	Prefix6   int
	Gateways  []netip.Addr // -g, at most one per family
	Interface string
	Outbound  []netip.Addr
	NSIfName  string
	NSMAC     string
	MTU       int // -1 when not given

	IPv4Only, IPv6Only                                  bool
	HostLoToNsLo                                        bool
	NoTCP, NoUDP, NoICMP, NoDHCP, NoNDP, NoDHCPv6, NoRA bool

	PIDFile    string
	LogFile    string
	PCAP       string
	Quiet      bool
	Debug      bool
	Trace      bool
	Stderr     bool
	Foreground bool

	Version, Help bool
	// Sandbox is slipway's own --sandbox (on, strict or off; "" is on):
	// how the engine is confined. pasta has no such option.
	Sandbox string
	// Ignored lists options understood and deliberately not applied.
	Ignored []string
}

// Error is a command-line error worded as pasta (getopt_long) words it,
// so callers that match pasta's messages (podman retries without
// --map-guest-addr when it reads "unrecognized option '--map-guest-addr")
// see the same text.
type Error struct{ Msg string }

func (e *Error) Error() string { return e.Msg }

func errorf(format string, args ...any) error { return &Error{Msg: fmt.Sprintf(format, args...)} }

// option is one of pasta's options: its long name, short letter (0 if
// none), whether it takes an argument, and what to do with it.
type option struct {
	long  string
	short byte
	arg   bool
	set   func(o *Options, v string) error
}

func flag(p func(o *Options) *bool) func(*Options, string) error {
	return func(o *Options, _ string) error { *p(o) = true; return nil }
}

func ignored(name string) func(*Options, string) error {
	return func(o *Options, _ string) error { o.Ignored = append(o.Ignored, name); return nil }
}

func str(p func(o *Options) *string) func(*Options, string) error {
	return func(o *Options, v string) error { *p(o) = v; return nil }
}

// addrs appends an address to a list of at most one per family.
func addrs(name string, p func(o *Options) *[]netip.Addr) func(*Options, string) error {
	return func(o *Options, v string) error {
		a, err := netip.ParseAddr(v)
		if err != nil {
			return errorf("Invalid address for --%s: %s", name, v)
		}
		a = a.Unmap()
		for _, b := range *p(o) {
			if b.Is4() == a.Is4() {
				return errorf("Too many --%s for one family: %s", name, v)
			}
		}
		*p(o) = append(*p(o), a)
		return nil
	}
}

func ports(p func(o *Options) *[]PortSpec) func(*Options, string) error {
	return func(o *Options, v string) error {
		s, err := ParsePortSpec(v)
		if err != nil {
			return errorf("Invalid port specifier %s: %v", v, err)
		}
		*p(o) = append(*p(o), s)
		return nil
	}
}

var options = []option{
	{"debug", 'd', false, flag(func(o *Options) *bool { return &o.Debug })},
	{"trace", 0, false, func(o *Options, _ string) error { o.Trace, o.Debug = true, true; return nil }},
	{"quiet", 'q', false, flag(func(o *Options) *bool { return &o.Quiet })},
	{"foreground", 'f', false, flag(func(o *Options) *bool { return &o.Foreground })},
	{"stderr", 'e', false, flag(func(o *Options) *bool { return &o.Stderr })},
	{"log-file", 'l', true, str(func(o *Options) *string { return &o.LogFile })},
	{"log-size", 0, true, ignored("--log-size")},
	{"runas", 0, true, ignored("--runas")},
	{"help", 'h', false, flag(func(o *Options) *bool { return &o.Help })},
	{"version", 0, false, flag(func(o *Options) *bool { return &o.Version })},
	{"stats", 0, true, ignored("--stats")},
	{"conf-path", 'c', true, ignored("--conf-path")},
	{"ns-ifname", 'I', true, str(func(o *Options) *string { return &o.NSIfName })},
	{"fd", 'F', true, func(o *Options, v string) error { return errorf("--fd %s: not supported by slipway's pasta", v) }},
	{"pcap", 'p', true, str(func(o *Options) *string { return &o.PCAP })},
	{"pid", 'P', true, str(func(o *Options) *string { return &o.PIDFile })},
	{"mtu", 'm', true, func(o *Options, v string) error {
		m, err := strconv.Atoi(v)
		if err != nil || m < 0 || m > 65535 {
			return errorf("Invalid MTU: %s", v)
		}
		o.MTU = m
		return nil
	}},
	{"address", 'a', true, func(o *Options, v string) error {
		s, bits, hasLen := strings.Cut(v, "/")
		a, err := netip.ParseAddr(s)
		if err != nil || a.IsUnspecified() || a.IsLoopback() || a.IsMulticast() {
			return errorf("Invalid address: %s", v)
		}
		a = a.Unmap()
		for _, b := range o.Addresses {
			if b.Is4() == a.Is4() {
				return errorf("Too many --address for one family: %s", v)
			}
		}
		if hasLen {
			n, err := strconv.Atoi(bits)
			if err != nil || n < 0 || n > a.BitLen() {
				return errorf("Invalid prefix length: %s", v)
			}
			if a.Is4() {
				o.Prefix4 = n
			} else {
				o.Prefix6 = n
			}
		}
		o.Addresses = append(o.Addresses, a)
		return nil
	}},
	{"netmask", 'n', true, func(o *Options, v string) error {
		if n, err := strconv.Atoi(v); err == nil && n >= 0 && n <= 32 {
			o.Prefix4 = n
			return nil
		}
		m, err := netip.ParseAddr(v)
		if err != nil || !m.Is4() {
			return errorf("Invalid netmask: %s", v)
		}
		b := m.As4()
		u := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
		n := 0
		for u&0x80000000 != 0 {
			n++
			u <<= 1
		}
		if u != 0 {
			return errorf("Invalid netmask: %s", v)
		}
		o.Prefix4 = n
		return nil
	}},
	{"mac-addr", 'M', true, ignored("--mac-addr")},
	{"gateway", 'g', true, addrs("gateway", func(o *Options) *[]netip.Addr { return &o.Gateways })},
	{"interface", 'i', true, str(func(o *Options) *string { return &o.Interface })},
	{"outbound", 'o', true, addrs("outbound", func(o *Options) *[]netip.Addr { return &o.Outbound })},
	{"outbound-if4", 0, true, ignored("--outbound-if4")},
	{"outbound-if6", 0, true, ignored("--outbound-if6")},
	{"dns", 'D', true, func(o *Options, v string) error {
		// As pasta: "none" drops the addresses given so far (its help
		// still calls it an empty option), and a later -D adds again.
		if v == "none" || v == "" {
			o.DNS, o.NoDNS = nil, true
			return nil
		}
		a, err := netip.ParseAddr(v)
		if err != nil || a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
			return errorf("Cannot use DNS address %s", v)
		}
		o.NoDNS = false
		if a = a.Unmap(); !a.IsUnspecified() { // pasta takes 0.0.0.0 for none given
			o.DNS = append(o.DNS, a)
		}
		return nil
	}},
	{"search", 'S', true, func(o *Options, v string) error { o.Search = strings.Fields(v); return nil }},
	{"hostname", 'H', true, str(func(o *Options) *string { return &o.Hostname })},
	{"fqdn", 0, true, ignored("--fqdn")},
	{"dhcp-dns", 0, false, flag(func(o *Options) *bool { return &o.DHCPDNS })},
	{"no-dhcp-dns", 0, false, ignored("--no-dhcp-dns")},
	{"dhcp-search", 0, false, ignored("--dhcp-search")},
	{"no-dhcp-search", 0, false, ignored("--no-dhcp-search")},
	{"map-host-loopback", 0, true, addrs("map-host-loopback", func(o *Options) *[]netip.Addr { return &o.MapHostLoopback })},
	{"map-guest-addr", 0, true, addrs("map-guest-addr", func(o *Options) *[]netip.Addr { return &o.MapGuestAddr })},
	{"dns-forward", 0, true, addrs("dns-forward", func(o *Options) *[]netip.Addr { return &o.DNSForward })},
	{"dns-host", 0, true, addrs("dns-host", func(o *Options) *[]netip.Addr { return &o.DNSHost })},
	{"no-tcp", 0, false, flag(func(o *Options) *bool { return &o.NoTCP })},
	{"no-udp", 0, false, flag(func(o *Options) *bool { return &o.NoUDP })},
	{"no-icmp", 0, false, flag(func(o *Options) *bool { return &o.NoICMP })},
	{"no-dhcp", 0, false, flag(func(o *Options) *bool { return &o.NoDHCP })},
	{"no-ndp", 0, false, flag(func(o *Options) *bool { return &o.NoNDP })},
	{"no-dhcpv6", 0, false, flag(func(o *Options) *bool { return &o.NoDHCPv6 })},
	{"no-ra", 0, false, flag(func(o *Options) *bool { return &o.NoRA })},
	{"freebind", 0, false, ignored("--freebind")},
	{"no-map-gw", 0, false, flag(func(o *Options) *bool { return &o.NoMapGW })},
	// Not pasta's (the mapping is its default): accepted, as older
	// documentation names it, to undo an earlier --no-map-gw.
	{"map-gw", 0, false, func(o *Options, _ string) error { o.NoMapGW = false; return nil }},
	{"chroot-fallback", 0, false, ignored("--chroot-fallback")},
	{"ipv4-only", '4', false, flag(func(o *Options) *bool { return &o.IPv4Only })},
	{"ipv6-only", '6', false, flag(func(o *Options) *bool { return &o.IPv6Only })},
	{"tcp-ports", 't', true, ports(func(o *Options) *[]PortSpec { return &o.TCP })},
	{"udp-ports", 'u', true, ports(func(o *Options) *[]PortSpec { return &o.UDP })},
	{"tcp-ns", 'T', true, ports(func(o *Options) *[]PortSpec { return &o.TCPNS })},
	{"udp-ns", 'U', true, ports(func(o *Options) *[]PortSpec { return &o.UDPNS })},
	{"host-lo-to-ns-lo", 0, false, flag(func(o *Options) *bool { return &o.HostLoToNsLo })},
	{"userns", 0, true, str(func(o *Options) *string { return &o.UserNS })},
	{"netns", 0, true, func(o *Options, v string) error {
		if v == "" {
			return errorf("Invalid --netns: empty")
		}
		if !strings.Contains(v, "/") {
			v = "/run/netns/" + v
		}
		o.NetNS = v
		return nil
	}},
	{"netns-only", 0, false, flag(func(o *Options) *bool { return &o.NetNSOnly })},
	{"no-netns-quit", 0, false, flag(func(o *Options) *bool { return &o.NoNetnsQuit })},
	{"config-net", 0, false, flag(func(o *Options) *bool { return &o.ConfigNet })},
	{"no-copy-routes", 0, false, ignored("--no-copy-routes")},
	{"no-copy-addrs", 0, false, ignored("--no-copy-addrs")},
	{"ns-mac-addr", 0, true, str(func(o *Options) *string { return &o.NSMAC })},
	// slipway's, not pasta's: its sandbox, as every mode's --sandbox.
	{"sandbox", 0, true, func(o *Options, v string) error {
		switch v {
		case "on", "strict", "off":
			o.Sandbox = v
			return nil
		}
		return errorf("Invalid --sandbox: %s (slipway's option: on, strict or off)", v)
	}},
	{"no-splice", 0, false, ignored("--no-splice")},
	{"splice-only", 0, false, ignored("--splice-only")},
}

// Parse reads pasta's arguments (without the program name), as pasta's
// getopt_long does: options up to the first other argument or "--"; long
// options as --name=value or --name value; short ones grouped (-4q) and
// with attached values (-t22). What follows is a PID (one number) or a
// command.
func Parse(args []string) (*Options, error) {
	o := &Options{Prefix4: -1, Prefix6: -1, MTU: -1}
	i := 0
	for ; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			i++
			break
		}
		if len(a) < 2 || a[0] != '-' {
			break
		}
		if strings.HasPrefix(a, "--") {
			name, val, hasVal := strings.Cut(a[2:], "=")
			opt := findLong(name)
			if opt == nil {
				return nil, errorf("pasta: unrecognized option '--%s'", name)
			}
			switch {
			case !opt.arg && hasVal:
				return nil, errorf("pasta: option '--%s' doesn't allow an argument", opt.long)
			case opt.arg && !hasVal:
				if i+1 >= len(args) {
					return nil, errorf("pasta: option '--%s' requires an argument", opt.long)
				}
				i++
				val = args[i]
			}
			if err := opt.set(o, val); err != nil {
				return nil, err
			}
			continue
		}
		for j := 1; j < len(a); j++ {
			opt := findShort(a[j])
			if opt == nil {
				return nil, errorf("pasta: invalid option -- '%c'", a[j])
			}
			if !opt.arg {
				if err := opt.set(o, ""); err != nil {
					return nil, err
				}
				continue
			}
			val := a[j+1:]
			if val == "" {
				if i+1 >= len(args) {
					return nil, errorf("pasta: option requires an argument -- '%c'", a[j])
				}
				i++
				val = args[i]
			}
			if err := opt.set(o, val); err != nil {
				return nil, err
			}
			break
		}
	}
	rest := args[i:]
	if len(rest) == 1 && o.NetNS == "" {
		if pid, err := strconv.Atoi(rest[0]); err == nil {
			if pid <= 0 {
				return nil, errorf("Invalid PID: %s", rest[0])
			}
			o.PID = pid
			rest = nil
		}
	}
	o.Command = rest
	return o, o.check()
}

// check rejects combinations pasta rejects.
func (o *Options) check() error {
	if o.Help || o.Version {
		return nil
	}
	if o.IPv4Only && o.IPv6Only {
		return errorf("Options ipv4-only and ipv6-only are mutually exclusive")
	}
	if o.NetNS != "" && o.PID != 0 {
		return errorf("Both --netns and PID given")
	}
	if len(o.Command) > 0 && (o.NetNS != "" || o.PID != 0) {
		return errorf("Both a target namespace and a command given: %s", o.Command[0])
	}
	for _, s := range [][]PortSpec{o.TCP, o.UDP, o.TCPNS, o.UDPNS} {
		for _, p := range s {
			if p.None && len(s) > 1 {
				return errorf("'none' port forwarding is only allowed once")
			}
		}
	}
	return nil
}

func findLong(name string) *option {
	for i := range options {
		if options[i].long == name {
			return &options[i]
		}
	}
	return nil
}

func findShort(c byte) *option {
	for i := range options {
		if options[i].short == c && c != 0 {
			return &options[i]
		}
	}
	return nil
}
