package main

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/slipway-net/slipway/config"
)

// pflag.Value adapters for the config's types, so a bad value is reported
// by the flag parser with the flag's name.

// netipValue is a flag of a net/netip type; unset, it shows as "".
type netipValue[T interface {
	IsValid() bool
	String() string
}] struct {
	p     *T
	parse func(string) (T, error)
	typ   string
}

func addrValue(p *netip.Addr) netipValue[netip.Addr] {
	return netipValue[netip.Addr]{p: p, parse: netip.ParseAddr, typ: "ip"}
}

func prefixValue(p *netip.Prefix) netipValue[netip.Prefix] {
	return netipValue[netip.Prefix]{p: p, parse: netip.ParsePrefix, typ: "cidr"}
}

func (v netipValue[T]) String() string {
	if !(*v.p).IsValid() {
		return ""
	}
	return (*v.p).String()
}
func (v netipValue[T]) Set(s string) error {
	x, err := v.parse(s)
	if err != nil {
		return err
	}
	*v.p = x
	return nil
}
func (v netipValue[T]) Type() string { return v.typ }

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

// egressValue is --deny or --allow: each use appends a rule of its action
// to the one egress list both share, so the order of the flags is the
// order the rules are tried in.
type egressValue struct {
	p      *[]config.EgressRule
	action string
}

func (v egressValue) String() string {
	var out []string
	for _, r := range *v.p {
		if r.Action == v.action {
			out = append(out, r.Dest())
		}
	}
	return strings.Join(out, ",")
}

func (v egressValue) Set(s string) error {
	r, err := config.ParseEgressDest(v.action, s)
	if err != nil {
		return err
	}
	*v.p = append(*v.p, r)
	return nil
}

func (v egressValue) Type() string { return "cidr[:ports]" }

// rangeValue is an integer flag that must lie in lo..hi.
type rangeValue struct {
	p      *int
	lo, hi int
}

func (v rangeValue) String() string {
	if v.p == nil {
		return ""
	}
	return strconv.Itoa(*v.p)
}

func (v rangeValue) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil || n < v.lo || n > v.hi {
		return fmt.Errorf("want %d..%d", v.lo, v.hi)
	}
	*v.p = n
	return nil
}

func (v rangeValue) Type() string { return "int" }
