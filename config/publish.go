package config

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// PublishRule publishes host ports into a guest: connections and datagrams
// to HostAddr:HostPort..HostPortEnd reach GuestAddr:GuestPort..GuestPortEnd,
// port for port. Either end may be IPv4 or IPv6, independently: an IPv6
// guest address needs IPv6 on (see Resolve).
type PublishRule struct {
	// Proto is TCP or UDP.
	Proto Proto `json:"proto"`
	// HostAddr is the host address to listen on; the unspecified address
	// (0.0.0.0 or ::) means all of the host's addresses of that family.
	HostAddr netip.Addr `json:"host_addr"`
	// HostPort..HostPortEnd is the range of host ports; HostPortEnd 0
	// means a single port.
	HostPort    uint16 `json:"host_port"`
	HostPortEnd uint16 `json:"host_port_end,omitempty"`
	// GuestAddr is the guest's address; the zero Addr means the first
	// guest address (DHCPStart, the namespace's address in `run`).
	GuestAddr    netip.Addr `json:"guest_addr"`
	GuestPort    uint16     `json:"guest_port"`
	GuestPortEnd uint16     `json:"guest_port_end,omitempty"`
}

// PublishSource values: whose address a guest sees as the peer of a
// connection to a published port.
const (
	// PublishSourceClient keeps the real client's address and port.
	PublishSourceClient = "client"
	// PublishSourceGateway makes every connection come from the gateway,
	// as slirp4netns and gvproxy do.
	PublishSourceGateway = "gateway"
)

// ParsePublish parses [HOSTIP:]HOSTPORT[-END]:[GUESTIP:]GUESTPORT[-END][/tcp|/udp],
// with IPv6 addresses in brackets ([::1]:8080:80). Addresses left out stay
// zero (see Resolve for the defaults). It is the only parser of the syntax.
func ParsePublish(s string) (PublishRule, error) {
	var r PublishRule
	spec, proto, hasProto := strings.Cut(s, "/")
	r.Proto = TCP
	if hasProto {
		switch Proto(proto) {
		case TCP, UDP:
			r.Proto = Proto(proto)
		default:
			return r, fmt.Errorf("protocol %q: want tcp or udp", proto)
		}
	}
	tokens, err := splitPublish(spec)
	if err != nil {
		return r, err
	}
	// Shapes: port:port, addr:port:port, port:addr:port, addr:port:addr:port.
	var hostAddr, hostPorts, guestAddr, guestPorts string
	switch len(tokens) {
	case 2:
		hostPorts, guestPorts = tokens[0], tokens[1]
	case 3:
		if isAddrToken(tokens[0]) {
			hostAddr, hostPorts, guestPorts = tokens[0], tokens[1], tokens[2]
		} else {
			hostPorts, guestAddr, guestPorts = tokens[0], tokens[1], tokens[2]
		}
	case 4:
		hostAddr, hostPorts, guestAddr, guestPorts = tokens[0], tokens[1], tokens[2], tokens[3]
	default:
		return r, errors.New("want [HOSTIP:]HOSTPORT[-END]:[GUESTIP:]GUESTPORT[-END][/tcp|/udp]")
	}
	if hostAddr != "" {
		if r.HostAddr, err = parseAddrToken(hostAddr); err != nil {
			return r, fmt.Errorf("host address: %w", err)
		}
	}
	if guestAddr != "" {
		if r.GuestAddr, err = parseAddrToken(guestAddr); err != nil {
			return r, fmt.Errorf("guest address: %w", err)
		}
	}
	if r.HostPort, r.HostPortEnd, err = parsePortRange(hostPorts); err != nil {
		return r, fmt.Errorf("host port: %w", err)
	}
	if r.GuestPort, r.GuestPortEnd, err = parsePortRange(guestPorts); err != nil {
		return r, fmt.Errorf("guest port: %w", err)
	}
	if r.HostPorts() != r.GuestPorts() {
		return r, fmt.Errorf("host range has %d ports but guest range has %d", r.HostPorts(), r.GuestPorts())
	}
	return r, nil
}

// splitPublish splits at the colons that are not inside brackets.
func splitPublish(s string) ([]string, error) {
	if s == "" {
		return nil, errors.New("empty rule")
	}
	var out []string
	for {
		var tok string
		if strings.HasPrefix(s, "[") {
			end := strings.IndexByte(s, ']')
			if end < 0 {
				return nil, errors.New("unclosed '[' in address")
			}
			tok, s = s[:end+1], s[end+1:]
			if s != "" && s[0] != ':' {
				return nil, errors.New("want ':' after ']'")
			}
		} else {
			i := strings.IndexByte(s, ':')
			if i < 0 {
				i = len(s)
			}
			tok, s = s[:i], s[i:]
		}
		if tok == "" {
			return nil, errors.New("empty field")
		}
		out = append(out, tok)
		if len(out) > 4 {
			return nil, errors.New("too many fields (put IPv6 addresses in brackets)")
		}
		if s == "" {
			return out, nil
		}
		s = s[1:] // the colon
		if s == "" {
			return nil, errors.New("empty field at the end")
		}
	}
}

// isAddrToken tells an address field from a port field: ports are digits
// and a dash only.
func isAddrToken(tok string) bool {
	return strings.HasPrefix(tok, "[") || strings.ContainsAny(tok, ".:abcdefABCDEF")
}

func parseAddrToken(tok string) (netip.Addr, error) {
	bracketed := strings.HasPrefix(tok, "[")
	a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(tok, "["), "]"))
	if err != nil {
		return netip.Addr{}, err
	}
	if a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("%s: zones are not supported", tok)
	}
	if a.Is6() && !bracketed {
		return netip.Addr{}, fmt.Errorf("%s: put IPv6 addresses in brackets", tok)
	}
	if a.Is4In6() {
		a = a.Unmap()
	}
	return a, nil
}

func parsePortRange(tok string) (start, end uint16, err error) {
	lo, hi, isRange := strings.Cut(tok, "-")
	if start, err = parsePort(lo); err != nil {
		return 0, 0, err
	}
	if !isRange {
		return start, 0, nil
	}
	if end, err = parsePort(hi); err != nil {
		return 0, 0, err
	}
	if end < start {
		return 0, 0, fmt.Errorf("range %s ends before it starts", tok)
	}
	if end == start {
		end = 0 // one canonical form for a single port
	}
	return start, end, nil
}

func parsePort(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%q is not a port (1-65535)", s)
	}
	return uint16(n), nil
}

// HostPorts is how many ports the rule publishes.
func (r PublishRule) HostPorts() int {
	if r.HostPortEnd == 0 {
		return 1
	}
	return int(r.HostPortEnd) - int(r.HostPort) + 1
}

// GuestPorts is how many guest ports the rule names.
func (r PublishRule) GuestPorts() int {
	if r.GuestPortEnd == 0 {
		return 1
	}
	return int(r.GuestPortEnd) - int(r.GuestPort) + 1
}

// LastHostPort is the end of the host range (HostPort for one port).
func (r PublishRule) LastHostPort() uint16 { return r.HostPort + uint16(r.HostPorts()-1) }

// String prints the rule in the syntax ParsePublish reads, addresses
// included when set.
func (r PublishRule) String() string {
	var b strings.Builder
	writeAddr := func(a netip.Addr) {
		if !a.IsValid() {
			return
		}
		if a.Is6() {
			b.WriteString("[" + a.String() + "]:")
		} else {
			b.WriteString(a.String() + ":")
		}
	}
	writePorts := func(p, end uint16) {
		b.WriteString(strconv.Itoa(int(p)))
		if end != 0 && end != p {
			b.WriteString("-" + strconv.Itoa(int(end)))
		}
	}
	writeAddr(r.HostAddr)
	writePorts(r.HostPort, r.HostPortEnd)
	b.WriteByte(':')
	writeAddr(r.GuestAddr)
	writePorts(r.GuestPort, r.GuestPortEnd)
	proto := r.Proto
	if proto == "" {
		proto = TCP
	}
	b.WriteString("/" + string(proto))
	return b.String()
}

// UnmarshalYAML reads a rule from its string form, so the config file
// and the flag share ParsePublish.
func (r *PublishRule) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := ParsePublish(s)
	if err != nil {
		return fieldErr("publish", s, "%v", err)
	}
	*r = v
	return nil
}

// MarshalYAML writes the rule's string form.
func (r PublishRule) MarshalYAML() (any, error) { return r.String(), nil }

// Resolve completes a rule with the defaults of this network (all host
// addresses, the first guest address, tcp) and validates it on its own;
// conflicts with other rules are checked by PublishConflict. Start-up
// rules and rules added at run time both come through here.
func (c *Config) Resolve(r PublishRule) (PublishRule, error) {
	orig := r.String()
	bad := func(format string, args ...any) (PublishRule, error) {
		return r, fieldErr("publish", orig, format, args...)
	}
	switch r.Proto {
	case "":
		r.Proto = TCP
	case TCP, UDP:
	default:
		return bad("protocol %q: want tcp or udp", r.Proto)
	}
	if !r.HostAddr.IsValid() {
		r.HostAddr = netip.IPv4Unspecified()
	}
	r.HostAddr = r.HostAddr.Unmap()
	if r.HostAddr.Zone() != "" {
		return bad("host address zones are not supported")
	}
	if r.HostAddr.IsMulticast() {
		return bad("host address %s is multicast", r.HostAddr)
	}
	if !r.GuestAddr.IsValid() {
		r.GuestAddr = c.DHCPStart
	}
	r.GuestAddr = r.GuestAddr.Unmap()
	if r.GuestAddr.Is6() {
		if c.NoIPv6 {
			return bad("guest address %s is IPv6, but IPv6 is off (--no-ipv6)", r.GuestAddr)
		}
		if r.GuestAddr.Zone() != "" || !c.IPv6Prefix.Contains(r.GuestAddr) || r.GuestAddr == c.IPv6Prefix.Addr() {
			return bad("guest address %s is not a guest address of --ipv6-prefix %s", r.GuestAddr, c.IPv6Prefix)
		}
		if r.GuestAddr == c.IPv6Gateway || r.GuestAddr == c.IPv6DNS {
			return bad("guest address %s is slipway's own (gateway or DNS)", r.GuestAddr)
		}
	} else {
		if !c.CIDR.Contains(r.GuestAddr) || r.GuestAddr == c.CIDR.Addr() || r.GuestAddr == broadcast(c.CIDR) {
			return bad("guest address %s is not a guest address of --cidr %s", r.GuestAddr, c.CIDR)
		}
		if r.GuestAddr == c.Gateway || r.GuestAddr == c.DNSAddress {
			return bad("guest address %s is slipway's own (gateway or DNS)", r.GuestAddr)
		}
	}
	if r.HostPort == 0 || r.GuestPort == 0 {
		return bad("ports must be 1-65535")
	}
	if r.HostPortEnd != 0 && r.HostPortEnd < r.HostPort || r.GuestPortEnd != 0 && r.GuestPortEnd < r.GuestPort {
		return bad("a port range ends before it starts")
	}
	if r.HostPorts() != r.GuestPorts() {
		return bad("host range has %d ports but guest range has %d", r.HostPorts(), r.GuestPorts())
	}
	// One canonical form: a single port has no end.
	if r.HostPortEnd == r.HostPort {
		r.HostPortEnd = 0
	}
	if r.GuestPortEnd == r.GuestPort {
		r.GuestPortEnd = 0
	}
	return r, nil
}

// PublishConflict reports whether two resolved rules would listen on the
// same host port: same protocol and family, overlapping port ranges, and the
// same address or one of them on all addresses.
func PublishConflict(a, b PublishRule) bool {
	if a.Proto != b.Proto || a.HostAddr.Is4() != b.HostAddr.Is4() {
		return false
	}
	if a.HostAddr != b.HostAddr && !a.HostAddr.IsUnspecified() && !b.HostAddr.IsUnspecified() {
		return false
	}
	return a.HostPort <= b.LastHostPort() && b.HostPort <= a.LastHostPort()
}
