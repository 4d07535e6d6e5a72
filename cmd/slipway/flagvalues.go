package main

import (
	"fmt"
	"net/netip"
	"strings"
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

// listValue is a repeatable flag of T's: the first use replaces the
// values from the config file, later ones append.
type listValue[T fmt.Stringer] struct {
	p     *[]T
	parse func(string) (T, error)
	typ   string
	set   bool
}

func (v *listValue[T]) String() string {
	var out []string
	for _, x := range *v.p {
		out = append(out, x.String())
	}
	return strings.Join(out, ",")
}

func (v *listValue[T]) Set(s string) error {
	x, err := v.parse(s)
	if err != nil {
		return err
	}
	if !v.set {
		*v.p = nil
		v.set = true
	}
	*v.p = append(*v.p, x)
	return nil
}
func (v *listValue[T]) Type() string { return v.typ }
