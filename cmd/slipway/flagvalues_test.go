package main

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/slipway-net/slipway/config"
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

// setAll sets every value on v in turn, as repeated flags do, and returns
// how v prints then.
func setAll(t *testing.T, v pflag.Value, values ...string) string {
	t.Helper()
	for _, s := range values {
		if err := v.Set(s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	return v.String()
}

// The list flags' first use replaces what was there (the config file's
// values); later uses append.
func TestListFlagsReplaceThenAppend(t *testing.T) {
	ups := []config.DNSServer{{AddrPort: netip.MustParseAddrPort("1.1.1.1:53")}}
	if got, want := setAll(t, &dnsServersValue{p: &ups}, "9.9.9.9", "192.0.2.1:5300"), "9.9.9.9:53,192.0.2.1:5300"; got != want {
		t.Errorf("--dns-upstream twice over a file's list: %q, want %q", got, want)
	}
	rules := []config.PublishRule{{Proto: "tcp", HostPort: 1, GuestPort: 1}}
	pv := &publishValue{p: &rules}
	if got, want := setAll(t, pv, "8080:80", "[::1]:5353:53/udp"), "8080:80/tcp,[::1]:5353:53/udp"; got != want {
		t.Errorf("--publish twice over a file's rules: %q, want %q", got, want)
	}
	// A bad value changes nothing.
	if err := pv.Set("nope"); err == nil || len(rules) != 2 {
		t.Errorf("bad --publish: err %v, rules %v", err, rules)
	}
}

// Unset address flags print as empty, so --help shows no bogus default.
func TestAddrFlagsUnsetPrintEmpty(t *testing.T) {
	var a netip.Addr
	var p netip.Prefix
	if s := (addrValue{&a}).String(); s != "" {
		t.Errorf("unset address prints %q", s)
	}
	if s := (prefixValue{&p}).String(); s != "" {
		t.Errorf("unset prefix prints %q", s)
	}
	a = netip.MustParseAddr("fd00::3")
	if s := (addrValue{&a}).String(); s != "fd00::3" {
		t.Errorf("address prints %q", s)
	}
}
