package config

import (
	"net/netip"
	"strings"
	"testing"
)

func TestAddrMapValidate(t *testing.T) {
	ip := netip.MustParseAddr
	ok := Default()
	ok.Map = AddrMap{HostLoopback: []netip.Addr{ip("169.254.1.2")}, Guest: []netip.Addr{ip("169.254.1.3")},
		DNS: []netip.Addr{ip("169.254.1.1"), ok.DNSAddress}, GuestIPv6: ip("fd00::99"), Routed: true}
	if err := ok.Validate(); err != nil {
		t.Fatalf("a valid map: %v", err)
	}
	for _, c := range []struct {
		m    AddrMap
		want string
	}{
		{AddrMap{HostLoopback: []netip.Addr{ip("127.0.0.1")}}, "map.host-loopback"},
		{AddrMap{Guest: []netip.Addr{ip("10.0.2.2")}}, "gateway"},
		{AddrMap{DNS: []netip.Addr{ip("169.254.1.1"), ip("169.254.1.1")}}, "mapped twice"},
		{AddrMap{HostLoopback: []netip.Addr{ip("169.254.1.1")}, Guest: []netip.Addr{ip("169.254.1.1")}}, "mapped twice"},
		{AddrMap{GuestIPv6: ip("2001:db8::1")}, "map.guest-ipv6"},
		{AddrMap{DNS: []netip.Addr{ip("ff02::1")}}, "unicast"},
	} {
		c2 := Default()
		c2.Map = c.m
		if err := c2.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.m, err, c.want)
		}
	}
	v4 := Default()
	v4.NoIPv6 = true
	v4.Map.Guest = []netip.Addr{ip("fd00::9")}
	if err := v4.Validate(); err == nil || !strings.Contains(err.Error(), "IPv6 is off") {
		t.Errorf("IPv6 map with IPv6 off: %v", err)
	}
}
