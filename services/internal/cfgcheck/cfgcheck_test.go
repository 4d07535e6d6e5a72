package cfgcheck

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestOrDefault(t *testing.T) {
	if v, err := OrDefault("N", 0, 256); v != 256 || err != nil {
		t.Errorf("unset: %v, %v", v, err)
	}
	if v, err := OrDefault("N", 3, 256); v != 3 || err != nil {
		t.Errorf("set: %v, %v", v, err)
	}
	if _, err := OrDefault("Timeout", -time.Second, time.Second); err == nil || err.Error() != "Timeout -1s is negative" {
		t.Errorf("negative: %v", err)
	}
}

func TestIsIPv6(t *testing.T) {
	for a, want := range map[string]bool{
		"fd00::3": true, "fe80::1": true, "::": true,
		"10.0.2.3": false, "::ffff:10.0.2.3": false, "fe80::1%eth0": false,
	} {
		if got := IsIPv6(netip.MustParseAddr(a)); got != want {
			t.Errorf("IsIPv6(%s) = %v", a, got)
		}
	}
	if IsIPv6(netip.Addr{}) {
		t.Error("the zero Addr is IPv6")
	}
}

func TestIPv6UnicastAndNames(t *testing.T) {
	good := []netip.Addr{netip.MustParseAddr("fd00::3"), netip.MustParseAddr("2001:db8::1")}
	if err := IPv6Unicast("DNS server", good); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"::", "ff02::1", "10.0.2.3", "fe80::1%eth0"} {
		err := IPv6Unicast("DNS server", append(good, netip.MustParseAddr(a)))
		if want := "DNS server " + a + " is not an IPv6 unicast address"; err == nil || err.Error() != want {
			t.Errorf("%s: %v, want %q", a, err, want)
		}
	}
	if err := Names("Search", []string{"example.org", "a.example.org"}); err != nil {
		t.Fatal(err)
	}
	if err := Names("Search", []string{"example.org", "a..b"}); err == nil || !strings.HasPrefix(err.Error(), "Search: ") {
		t.Fatalf("bad name: %v", err)
	}
}
