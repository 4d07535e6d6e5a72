package config

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Egress rule actions.
const (
	EgressDeny  = "deny"
	EgressAllow = "allow"
)

// MaxEgressPorts bounds the port ranges of one rule, and MaxEgressRules
// the rules of a network: each flow walks them, first match wins.
const (
	MaxEgressPorts = 64
	MaxEgressRules = 4096
)

// PortRange is First..Last, both included.
type PortRange struct{ First, Last uint16 }

// EgressRule allows or denies guests' outbound flows to Prefix, on Ports
// (TCP and UDP destination ports) or, with no Ports, on every port and
// for every protocol (ping included). Its text form is the flags':
// "deny 169.254.0.0/16", "allow 10.1.0.0/16:80,443,8000-8099",
// "deny [fd00::/8]:22".
type EgressRule struct {
	Action string
	Prefix netip.Prefix
	Ports  []PortRange
}

// ParseEgressRule parses ACTION CIDR[:PORTS], ACTION being deny or allow.
func ParseEgressRule(s string) (EgressRule, error) {
	action, dest, ok := strings.Cut(strings.TrimSpace(s), " ")
	if !ok {
		return EgressRule{}, errors.New(`want "deny CIDR[:PORTS]" or "allow CIDR[:PORTS]"`)
	}
	r, err := ParseEgressDest(action, strings.TrimSpace(dest))
	return r, err
}

// ParseEgressDest parses the CIDR[:PORTS] of --deny and --allow (action):
// an address or prefix, IPv6 in brackets when ports follow
// ([fd00::/8]:22), and PORTS a comma list of ports and ranges (80,8000-8099).
func ParseEgressDest(action, s string) (EgressRule, error) {
	r := EgressRule{Action: action}
	if action != EgressDeny && action != EgressAllow {
		return r, fmt.Errorf("action %q: want deny or allow", action)
	}
	addr, ports := s, ""
	switch {
	case strings.HasPrefix(s, "["):
		end := strings.Index(s, "]")
		if end < 0 {
			return r, errors.New("missing ] after the IPv6 prefix")
		}
		addr, ports = s[1:end], s[end+1:]
		if ports != "" {
			var ok bool
			if ports, ok = strings.CutPrefix(ports, ":"); !ok || ports == "" {
				return r, errors.New("want [PREFIX]:PORTS")
			}
		}
	case strings.Count(s, ":") == 1:
		// IPv4 with ports; an IPv6 prefix has more colons.
		addr, ports, _ = strings.Cut(s, ":")
		if ports == "" {
			return r, errors.New("empty port list after the colon")
		}
	}
	p, err := parsePrefixOrAddr(addr)
	if err != nil {
		return r, err
	}
	r.Prefix = p
	if ports != "" {
		if r.Ports, err = parsePortList(ports); err != nil {
			return r, err
		}
	}
	return r, nil
}

func parsePrefixOrAddr(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return p, fmt.Errorf("prefix %q: %w", s, err)
		}
		if p.Addr().Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("prefix %q: zones are not allowed", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("address %q: %w", s, err)
	}
	if a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("address %q: zones are not allowed", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func parsePortList(s string) ([]PortRange, error) {
	parts := strings.Split(s, ",")
	if len(parts) > MaxEgressPorts {
		return nil, fmt.Errorf("more than %d port ranges", MaxEgressPorts)
	}
	out := make([]PortRange, 0, len(parts))
	for _, p := range parts {
		first, last, err := parsePortRange(p)
		if err != nil {
			return nil, err
		}
		out = append(out, PortRange{first, max(first, last)}) // last 0: one port
	}
	return out, nil
}

// Matches reports whether the rule covers a flow of proto to dst. A rule
// with ports covers TCP and UDP flows to those ports only.
func (r EgressRule) Matches(proto Proto, dst netip.AddrPort) bool {
	if !r.Prefix.Contains(dst.Addr().Unmap()) {
		return false
	}
	if len(r.Ports) == 0 {
		return true
	}
	if proto != TCP && proto != UDP {
		return false
	}
	p := dst.Port()
	return slices.ContainsFunc(r.Ports, func(pr PortRange) bool { return p >= pr.First && p <= pr.Last })
}

// Dest is the rule's CIDR[:PORTS], as --deny and --allow take it.
func (r EgressRule) Dest() string {
	if len(r.Ports) == 0 {
		return r.Prefix.String()
	}
	var ports []string
	for _, p := range r.Ports {
		if p.First == p.Last {
			ports = append(ports, strconv.Itoa(int(p.First)))
		} else {
			ports = append(ports, fmt.Sprintf("%d-%d", p.First, p.Last))
		}
	}
	if r.Prefix.Addr().Is6() {
		return "[" + r.Prefix.String() + "]:" + strings.Join(ports, ",")
	}
	return r.Prefix.String() + ":" + strings.Join(ports, ",")
}

// String is the rule's text form, "ACTION CIDR[:PORTS]".
func (r EgressRule) String() string { return r.Action + " " + r.Dest() }

// MarshalText writes the text form (YAML, JSON).
func (r EgressRule) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText reads the text form (YAML, JSON).
func (r *EgressRule) UnmarshalText(b []byte) error {
	v, err := ParseEgressRule(string(b))
	if err != nil {
		return fieldErr("egress", string(b), "%v", err)
	}
	*r = v
	return nil
}

// validateEgress checks the rule list as a whole.
func (c *Config) validateEgress() error {
	if len(c.Egress) > MaxEgressRules {
		return fieldErr("egress", fmt.Sprintf("%d rules", len(c.Egress)), "more than %d", MaxEgressRules)
	}
	for _, r := range c.Egress {
		if _, err := ParseEgressRule(r.String()); err != nil || !r.Prefix.IsValid() {
			return fieldErr(r.Action, r.Dest(), "not a valid rule")
		}
	}
	return nil
}
