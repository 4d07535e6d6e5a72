package publish

import (
	"net/netip"
	"testing"
)

// TestSource: the guest sees the client's own address where it can answer
// it, the gateway (with a port the stack picks) elsewhere.
func TestSource(t *testing.T) {
	gw := netip.MustParseAddr("10.0.2.2")
	keep := &Publisher{o: Options{KeepSource: true, Gateway: gw, Subnet: netip.MustParsePrefix("10.0.2.0/24")}}
	hide := &Publisher{o: Options{KeepSource: false, Gateway: gw, Subnet: netip.MustParsePrefix("10.0.2.0/24")}}
	viaGateway := netip.AddrPortFrom(gw, 0)
	guest4 := netip.MustParseAddr("10.0.2.15")
	for _, tc := range []struct {
		client string
		keep   bool
	}{
		{"198.51.100.7:51234", true},
		{"192.0.2.9:1", true},
		{"127.0.0.1:40000", false},   // a martian to the guest
		{"127.8.9.1:40000", false},   // all of 127/8
		{"10.0.2.99:40000", false},   // would pose as a guest
		{"[2001:db8::1]:443", false}, // IPv6 client, IPv4 guest
		{"[::1]:443", false},
		{"0.0.0.0:1", false},
	} {
		c := netip.MustParseAddrPort(tc.client)
		want := viaGateway
		if tc.keep {
			want = c
		}
		if got := keep.source(c, guest4); got != want {
			t.Errorf("client %s: source %s, want %s", c, got, want)
		}
		if got := hide.source(c, guest4); got != viaGateway {
			t.Errorf("--publish-source=gateway, client %s: source %s, want %s", c, got, viaGateway)
		}
	}
}

// TestSourceIPv6Guest: an IPv6 guest keeps IPv6 clients' addresses, and
// sees IPv4, loopback, link-local and in-prefix clients as its gateway.
func TestSourceIPv6Guest(t *testing.T) {
	gw6 := netip.MustParseAddr("fd00::2")
	keep := &Publisher{o: Options{KeepSource: true, Gateway: netip.MustParseAddr("10.0.2.2"), Gateway6: gw6,
		Subnet: netip.MustParsePrefix("10.0.2.0/24"), Subnet6: netip.MustParsePrefix("fd00::/64")}}
	guest6 := netip.MustParseAddr("fd00::15")
	via := netip.AddrPortFrom(gw6, 0)
	for client, kept := range map[string]bool{
		"[2001:db8::7]:5000": true,
		"[::1]:5000":         false,
		"[fe80::1]:5000":     false,
		"[fd00::99]:5000":    false,
		"198.51.100.7:5000":  false,
	} {
		c := netip.MustParseAddrPort(client)
		want := via
		if kept {
			want = c
		}
		if got := keep.source(c, guest6); got != want {
			t.Errorf("client %s to an IPv6 guest: source %s, want %s", c, got, want)
		}
	}
}
