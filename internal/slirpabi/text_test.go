package slirpabi

import (
	"strings"
	"testing"

	"github.com/slipway-net/slipway/config"
)

const qemuText = "version=4\nrestricted=0\nin_enabled=1\nin6_enabled=1\nvprefix_len=64\nif_mtu=0\nif_mru=0\n" +
	"disable_host_loopback=0\nenable_emu=0\ndisable_dns=0\ndisable_dhcp=0\nvnetwork=10.0.2.0\n" +
	"vnetmask=255.255.255.0\nvhost=10.0.2.2\nvdhcp_start=10.0.2.15\nvnameserver=10.0.2.3\n" +
	"vprefix_addr6=fec0::\nvhost6=fec0::2\nvnameserver6=fec0::3\nvhostname=vm1\n" +
	"vdnssearch=a.example\nvdnssearch=b.example\n"

// TestParseSettings: the shim's text for QEMU's defaults reads back as
// the settings QEMU gave, and maps onto the same config.
func TestParseSettings(t *testing.T) {
	s, err := ParseSettings(qemuText)
	if err != nil {
		t.Fatal(err)
	}
	want := qemuDefaults()
	want.Hostname, want.DNSSearch = "vm1", []string{"a.example", "b.example"}
	if s.Version != 4 || s.Network != want.Network || s.Host6 != want.Host6 || s.Hostname != "vm1" ||
		strings.Join(s.DNSSearch, ",") != "a.example,b.example" || !s.IPv4 || !s.IPv6 || s.Prefix6Len != 64 {
		t.Errorf("parsed %+v", s)
	}
	if _, _, err := s.Config(config.Config{}); err != nil {
		t.Error(err)
	}
	for _, bad := range []string{"vhost=10.0.2\n", "nokey\n", "unknown=1\n", "if_mtu=-1\n", "version=x\n"} {
		if _, err := ParseSettings(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// FuzzParseSettings: any text parses or is refused, never a panic, and
// parsed settings either make a config or are refused by it.
func FuzzParseSettings(f *testing.F) {
	f.Add(qemuText)
	f.Add("vnetwork=10.0.2.0\nvnetmask=255.255.0.255\n")
	f.Add("vdnssearch=\x00\nvhostname=\xff\n")
	f.Fuzz(func(t *testing.T, text string) {
		s, err := ParseSettings(text)
		if err != nil {
			return
		}
		if len(s.DNSSearch) > 64 {
			t.Fatalf("%d search domains", len(s.DNSSearch))
		}
		s.Config(config.Config{})
	})
}
