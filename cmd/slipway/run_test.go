//go:build linux

package main

import (
	"net/netip"
	"os"
	"testing"

	"github.com/slipway-net/slipway/config"
)

func TestParseMAC(t *testing.T) {
	m, err := parseMAC("52:54:00:AB:cd:01")
	if err != nil || m.String() != "52:54:00:ab:cd:01" {
		t.Errorf("parseMAC: %v, %v", m, err)
	}
	// net.ParseMAC also takes EUI-64 and InfiniBand addresses; a TAP
	// device has an Ethernet one.
	for _, bad := range []string{"", "52:54:00:ab:cd", "zz:54:00:ab:cd:01", "02:00:5e:10:00:00:00:01"} {
		if m, err := parseMAC(bad); err == nil {
			t.Errorf("parseMAC(%q) = %v, accepted", bad, m)
		}
	}
}

func TestGuestMAC(t *testing.T) {
	for addr, want := range map[string]string{
		"10.0.2.15":   "52:54:0a:00:02:0f",
		"10.0.2.100":  "52:54:0a:00:02:64",
		"192.168.7.1": "52:54:c0:a8:07:01",
	} {
		got := guestMAC(netip.MustParseAddr(addr))
		if got.String() != want {
			t.Errorf("guestMAC(%s) = %s, want %s", addr, got, want)
		}
		// Locally administered unicast, so it clashes with no vendor's.
		if got[0]&1 != 0 || got[0]&2 == 0 {
			t.Errorf("guestMAC(%s) = %s is not a locally administered unicast address", addr, got)
		}
	}
}

// The namespace's resolv.conf names what DHCP would tell a guest:
// slipway's DNS addresses, --advertise-dns's (IPv6 ones only with IPv6),
// or none with --no-advertise-dns.
func TestWriteResolvConf(t *testing.T) {
	for _, c := range []struct {
		mod  func(*config.Config)
		want string
	}{
		{func(*config.Config) {}, "nameserver 10.0.2.3\nnameserver fd00::3\nsearch example.org\n"},
		{func(c *config.Config) {
			c.AdvertiseDNS = []netip.Addr{netip.MustParseAddr("2001:db8::53"), netip.MustParseAddr("192.0.2.53")}
		}, "nameserver 192.0.2.53\nnameserver 2001:db8::53\nsearch example.org\n"},
		{func(c *config.Config) {
			c.AdvertiseDNS, c.NoIPv6 = []netip.Addr{netip.MustParseAddr("2001:db8::53"), netip.MustParseAddr("192.0.2.53")}, true
		}, "nameserver 192.0.2.53\nsearch example.org\n"},
		{func(c *config.Config) { c.NoAdvertiseDNS = true }, "search example.org\n"},
	} {
		cfg := config.Default()
		c.mod(&cfg)
		path, err := writeResolvConf(cfg, []string{"example.org"})
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		os.Remove(path)
		if err != nil || string(b) != c.want {
			t.Errorf("resolv.conf %q, %v; want %q", b, err, c.want)
		}
	}
}
