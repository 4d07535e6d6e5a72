package main

import (
	"net/netip"
	"strings"

	"github.com/slipway-net/slipway/config"
)

// pflag.Value adapters for the config's types, so a bad value is reported
// by the flag parser with the flag's name.

type addrValue struct{ p *netip.Addr }

func (v addrValue) String() string {
	if !v.p.IsValid() {
		return ""
	}
	return v.p.String()
}
func (v addrValue) Set(s string) error {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return err
	}
	*v.p = a
	return nil
}
func (v addrValue) Type() string { return "ip" }

type prefixValue struct{ p *netip.Prefix }

func (v prefixValue) String() string {
	if !v.p.IsValid() {
		return ""
	}
	return v.p.String()
}
func (v prefixValue) Set(s string) error {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return err
	}
	*v.p = p
	return nil
}
func (v prefixValue) Type() string { return "cidr" }

type dnsServersValue struct {
	p   *[]config.DNSServer
	set bool
}

func (v *dnsServersValue) String() string {
	var out []string
	for _, s := range *v.p {
		out = append(out, s.String())
	}
	return strings.Join(out, ",")
}

// Set appends; the first use replaces values from the config file.
func (v *dnsServersValue) Set(s string) error {
	d, err := config.ParseDNSServer(s)
	if err != nil {
		return err
	}
	if !v.set {
		*v.p = nil
		v.set = true
	}
	*v.p = append(*v.p, d)
	return nil
}
func (v *dnsServersValue) Type() string { return "addr[:port]" }

// publishValue appends --publish rules; the first use replaces rules from
// the config file.
type publishValue struct {
	p   *[]config.PublishRule
	set bool
}

func (v *publishValue) String() string {
	var out []string
	for _, r := range *v.p {
		out = append(out, r.String())
	}
	return strings.Join(out, ",")
}

func (v *publishValue) Set(s string) error {
	r, err := config.ParsePublish(s)
	if err != nil {
		return err
	}
	if !v.set {
		*v.p = nil
		v.set = true
	}
	*v.p = append(*v.p, r)
	return nil
}
func (v *publishValue) Type() string { return "rule" }
