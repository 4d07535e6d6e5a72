package main

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/slipway-net/slipway/config"
	"github.com/spf13/pflag"
)

// parseNetFlags parses args with the flags run and serve share.
func parseNetFlags(args ...string) (*netFlags, *pflag.FlagSet, error) {
	var nf netFlags
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	fs.SetOutput(new(strings.Builder))
	nf.register(fs)
	return &nf, fs, fs.Parse(args)
}

func TestNetFlagsParseExactly(t *testing.T) {
	nf, _, err := parseNetFlags(
		"--cidr", "10.9.0.0/16", "--gateway", "10.9.0.1", "--dns-address", "10.9.0.53",
		"--dhcp-start", "10.9.1.0", "--ipv6-prefix", "fd12:3456::/64", "--ipv6-gateway", "fd12:3456::1",
		"--outbound-addr", "192.0.2.7",
		"--dns-upstream", "9.9.9.9", "--dns-upstream", "[2001:db8::53]:5353",
		"-p", "8080:80", "--publish", "127.0.0.1:5353:53/udp",
	)
	if err != nil {
		t.Fatal(err)
	}
	c := nf.cfg
	for _, f := range []struct {
		name      string
		got, want any
	}{
		{"cidr", c.CIDR, netip.MustParsePrefix("10.9.0.0/16")},
		{"gateway", c.Gateway, netip.MustParseAddr("10.9.0.1")},
		{"dns-address", c.DNSAddress, netip.MustParseAddr("10.9.0.53")},
		{"dhcp-start", c.DHCPStart, netip.MustParseAddr("10.9.1.0")},
		{"ipv6-prefix", c.IPv6Prefix, netip.MustParsePrefix("fd12:3456::/64")},
		{"ipv6-gateway", c.IPv6Gateway, netip.MustParseAddr("fd12:3456::1")},
		{"outbound-addr", c.OutboundAddr, netip.MustParseAddr("192.0.2.7")},
		{"dns-upstream", c.DNSUpstreams, []config.DNSServer{
			{AddrPort: netip.MustParseAddrPort("9.9.9.9:53")},
			{AddrPort: netip.MustParseAddrPort("[2001:db8::53]:5353")},
		}},
		{"publish", c.Publish, []config.PublishRule{
			{Proto: "tcp", HostPort: 8080, GuestPort: 80},
			{Proto: "udp", HostAddr: netip.MustParseAddr("127.0.0.1"), HostPort: 5353, GuestPort: 53},
		}},
	} {
		if !reflect.DeepEqual(f.got, f.want) {
			t.Errorf("--%s: got %v, want %v", f.name, f.got, f.want)
		}
	}
}

// A bad value is refused by the flag parser with the flag's name and the
// value, before any command runs.
func TestNetFlagsRejectBadValues(t *testing.T) {
	for _, c := range []struct{ flag, value string }{
		{"cidr", "10.9.0.0"},
		{"cidr", "10.9.0.0/33"},
		{"gateway", "10.9.0"},
		{"dns-address", "example.com"},
		{"dhcp-start", "10.0.2.15/24"},
		{"ipv6-prefix", "fd00::"},
		{"ipv6-gateway", "fd00::g"},
		{"ipv6-dns", ""},
		{"outbound-addr", "any"},
		{"dns-upstream", "9.9.9.9:0"},
		{"dns-upstream", "resolver"},
		{"publish", "8080"},
		{"publish", "8080:80/sctp"},
		{"mtu", "big"},
		{"connect-timeout", "5"},
	} {
		_, _, err := parseNetFlags("--"+c.flag, c.value)
		if err == nil {
			t.Errorf("--%s %q accepted", c.flag, c.value)
			continue
		}
		// pflag writes "--cidr", or "-p, --publish" for a flag with a
		// shorthand.
		if msg := err.Error(); !strings.Contains(msg, "--"+c.flag+`"`) || !strings.Contains(msg, `"`+c.value+`"`) {
			t.Errorf("--%s %q: error %q does not name the flag and the value", c.flag, c.value, msg)
		}
	}
}

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
