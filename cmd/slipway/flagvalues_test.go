package main

import (
	"net/netip"
	"testing"

	"github.com/spf13/pflag"

	"github.com/slipway-net/slipway/config"
)

func TestListFlagReplacesConfigThenAppends(t *testing.T) {
	fromFile, err := config.ParsePublish("8080:80")
	if err != nil {
		t.Fatal(err)
	}
	rules := []config.PublishRule{fromFile}
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	fs.Var(&listValue[config.PublishRule]{p: &rules, parse: config.ParsePublish, typ: "rule"}, "publish", "")
	if err := fs.Parse([]string{"--publish", "2222:22", "--publish", "5000:5000/udp"}); err != nil {
		t.Fatal(err)
	}
	if len(rules) != 2 || rules[0].HostPort != 2222 || rules[1].Proto != "udp" {
		t.Fatalf("rules %v, want the two from the flags only", rules)
	}
	if got, want := fs.Lookup("publish").Value.String(), rules[0].String()+","+rules[1].String(); got != want {
		t.Fatalf("String() = %q, want %q", got, want)
	}
	if err := fs.Parse([]string{"--publish", "nonsense"}); err == nil {
		t.Fatal("a bad rule was accepted")
	}
}

func TestNetipFlags(t *testing.T) {
	var a netip.Addr
	var p netip.Prefix
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	fs.Var(addrValue(&a), "gateway", "")
	fs.Var(prefixValue(&p), "cidr", "")
	if got := fs.Lookup("gateway").Value.String() + fs.Lookup("cidr").Value.String(); got != "" {
		t.Fatalf("unset flags show %q", got)
	}
	if err := fs.Parse([]string{"--gateway", "10.0.3.2", "--cidr", "10.0.3.0/24"}); err != nil {
		t.Fatal(err)
	}
	if a != netip.MustParseAddr("10.0.3.2") || p != netip.MustParsePrefix("10.0.3.0/24") || fs.Lookup("cidr").Value.String() != "10.0.3.0/24" {
		t.Fatalf("got %v and %v", a, p)
	}
	if fs.Lookup("gateway").Value.Type() != "ip" || fs.Lookup("cidr").Value.Type() != "cidr" {
		t.Fatal("type names changed")
	}
	if err := fs.Parse([]string{"--cidr", "10.0.3.1"}); err == nil {
		t.Fatal("an address was accepted as a prefix")
	}
}
