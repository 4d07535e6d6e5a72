package config

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestDefaultsMatchQEMU(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"cidr": "10.0.2.0/24", "gateway": "10.0.2.2", "dns": "10.0.2.3", "start": "10.0.2.15"}
	got := map[string]string{"cidr": c.CIDR.String(), "gateway": c.Gateway.String(), "dns": c.DNSAddress.String(), "start": c.DHCPStart.String()}
	for k := range want {
		if got[k] != want[k] {
			t.Errorf("%s = %s, want %s", k, got[k], want[k])
		}
	}
	if c.IPv6Prefix.String() != "fd00::/64" || c.IPv6Gateway.String() != "fd00::2" || c.IPv6DNS.String() != "fd00::3" || c.NoIPv6 {
		t.Errorf("IPv6 defaults %v %v %v no-ipv6=%v", c.IPv6Prefix, c.IPv6Gateway, c.IPv6DNS, c.NoIPv6)
	}
	if c.MTU != 65520 || c.Limits.MaxPendingConnects < 100 {
		t.Errorf("MTU %d, pending connects %d", c.MTU, c.Limits.MaxPendingConnects)
	}
}

func TestCompleteDerivesFromCIDR(t *testing.T) {
	c := Config{CIDR: netip.MustParsePrefix("192.168.77.9/24"), IPv6Prefix: netip.MustParsePrefix("fd12:3456::77/64")}
	c.Complete()
	if c.IPv6Prefix.String() != "fd12:3456::/64" || c.IPv6Gateway.String() != "fd12:3456::2" || c.IPv6DNS.String() != "fd12:3456::3" {
		t.Fatalf("derived v6 %v %v %v", c.IPv6Prefix, c.IPv6Gateway, c.IPv6DNS)
	}
	if c.CIDR.String() != "192.168.77.0/24" || c.Gateway.String() != "192.168.77.2" || c.DNSAddress.String() != "192.168.77.3" || c.DHCPStart.String() != "192.168.77.15" {
		t.Fatalf("derived %v %v %v %v", c.CIDR, c.Gateway, c.DNSAddress, c.DHCPStart)
	}
}

func TestValidateNamesTheFlag(t *testing.T) {
	cases := []struct {
		flag string
		mod  func(*Config)
	}{
		{"gateway", func(c *Config) { c.Gateway = netip.MustParseAddr("10.0.3.2") }},
		{"gateway", func(c *Config) { c.Gateway = netip.MustParseAddr("10.0.2.255") }},
		{"dns-address", func(c *Config) { c.DNSAddress = netip.MustParseAddr("fd00::3") }},
		{"dhcp-start", func(c *Config) { c.DHCPStart = c.Gateway }},
		{"cidr", func(c *Config) { c.CIDR = netip.MustParsePrefix("10.0.2.0/30") }},
		{"cidr", func(c *Config) { c.CIDR = netip.MustParsePrefix("fd00::/64") }},
		{"mtu", func(c *Config) { c.MTU = 575 }},
		{"mtu", func(c *Config) { c.MTU = 65522 }},
		{"hostname", func(c *Config) { c.Hostname = "bad name" }},
		{"dns-search", func(c *Config) { c.DNSSearch = []string{"ok.example", "-bad"} }},
		{"log-level", func(c *Config) { c.LogLevel = "loud" }},
		{"max-flows", func(c *Config) { c.Limits.MaxFlows = -1 }},
		{"udp-idle-timeout", func(c *Config) { c.Limits.UDPIdleTimeout = time.Millisecond }},
		{"outbound-addr", func(c *Config) { c.OutboundAddr = netip.IPv4Unspecified() }},
		{"ipv6-prefix", func(c *Config) { c.IPv6Prefix = netip.MustParsePrefix("fd00::/48") }},
		{"ipv6-prefix", func(c *Config) { c.IPv6Prefix = netip.MustParsePrefix("10.0.0.0/24") }},
		{"ipv6-gateway", func(c *Config) { c.IPv6Gateway = netip.MustParseAddr("fd01::2") }},
		{"ipv6-dns", func(c *Config) { c.IPv6DNS = c.IPv6Gateway }},
		{"mtu", func(c *Config) { c.MTU = 1000 }},
		{"advertise-dns", func(c *Config) { c.AdvertiseDNS = []netip.Addr{netip.MustParseAddr("224.0.0.251")} }},
		{"advertise-dns", func(c *Config) { c.AdvertiseDNS = []netip.Addr{netip.IPv6Unspecified()} }},
		{"advertise-dns", func(c *Config) { c.AdvertiseDNS = []netip.Addr{netip.MustParseAddr("::ffff:192.0.2.53")} }},
		{"advertise-dns", func(c *Config) {
			for i := range MaxAdvertiseDNS + 1 {
				c.AdvertiseDNS = append(c.AdvertiseDNS, netip.AddrFrom4([4]byte{192, 0, 2, byte(i + 1)}))
			}
		}},
		{"no-advertise-dns", func(c *Config) {
			c.NoAdvertiseDNS, c.AdvertiseDNS = true, []netip.Addr{netip.MustParseAddr("192.0.2.53")}
		}},
	}
	for _, tc := range cases {
		c := Default()
		tc.mod(&c)
		err := c.Validate()
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Flag != tc.flag {
			t.Errorf("want an error naming --%s, got %v", tc.flag, err)
			continue
		}
		if !strings.Contains(err.Error(), "--"+tc.flag) || strings.Contains(err.Error(), "\n") {
			t.Errorf("error is not one line naming the flag: %q", err)
		}
	}
}

// AdvertisedDNS: slipway's own addresses by default, the list's by
// family when given (a family it leaves out gets none), none at all with
// NoAdvertiseDNS.
func TestAdvertisedDNS(t *testing.T) {
	ip := netip.MustParseAddr
	c := Default()
	if v4, v6 := c.AdvertisedDNS(); !slices.Equal(v4, []netip.Addr{c.DNSAddress}) || !slices.Equal(v6, []netip.Addr{c.IPv6DNS}) {
		t.Errorf("default: %v %v, want slipway's %s %s", v4, v6, c.DNSAddress, c.IPv6DNS)
	}
	c.AdvertiseDNS = []netip.Addr{ip("192.0.2.53"), ip("2001:db8::53"), ip("198.51.100.53")}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if v4, v6 := c.AdvertisedDNS(); !slices.Equal(v4, []netip.Addr{ip("192.0.2.53"), ip("198.51.100.53")}) || !slices.Equal(v6, []netip.Addr{ip("2001:db8::53")}) {
		t.Errorf("given: %v %v", v4, v6)
	}
	c.AdvertiseDNS = []netip.Addr{ip("192.0.2.53")}
	if _, v6 := c.AdvertisedDNS(); len(v6) != 0 {
		t.Errorf("IPv4 only given: IPv6 gets %v, want none", v6)
	}
	c.AdvertiseDNS, c.NoAdvertiseDNS = nil, true
	if v4, v6 := c.AdvertisedDNS(); len(v4)+len(v6) != 0 {
		t.Errorf("none: %v %v", v4, v6)
	}
}

func TestParseDNSServer(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1": "127.0.0.1:53", "127.0.0.1:5353": "127.0.0.1:5353", "::1": "[::1]:53", "[::1]:54": "[::1]:54",
	} {
		d, err := ParseDNSServer(in)
		if err != nil || d.String() != want {
			t.Errorf("ParseDNSServer(%q) = %v, %v; want %s", in, d, err, want)
		}
	}
	for _, bad := range []string{"", "dns.example", "1.2.3.4:0", "1.2.3.4:x"} {
		if _, err := ParseDNSServer(bad); err == nil {
			t.Errorf("ParseDNSServer(%q) accepted", bad)
		}
	}
}

func TestLoadFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte("cidr: 10.9.0.0/24\nmtu: 1500\ndns-upstream: [127.0.0.1, '[::1]:5353']\nrestrict: true\nlimits:\n  max-flows: 10\n  udp-idle-timeout: 5s\n"), 0o600)
	var c Config
	if err := c.LoadFile(good); err != nil {
		t.Fatal(err)
	}
	c.Complete()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Gateway.String() != "10.9.0.2" || c.MTU != 1500 || !c.Restrict || len(c.DNSUpstreams) != 2 ||
		c.DNSUpstreams[1].String() != "[::1]:5353" || c.Limits.MaxFlows != 10 || c.Limits.UDPIdleTimeout != 5*time.Second {
		t.Fatalf("loaded %+v", c)
	}
	typo := filepath.Join(dir, "typo.yaml")
	os.WriteFile(typo, []byte("gatway: 10.0.2.2\n"), 0o600)
	if err := new(Config).LoadFile(typo); err == nil || !strings.Contains(err.Error(), "gatway") {
		t.Fatalf("unknown key: got %v", err)
	}
	empty := filepath.Join(dir, "empty.yaml")
	os.WriteFile(empty, nil, 0o600)
	if err := new(Config).LoadFile(empty); err != nil {
		t.Fatalf("empty file: %v", err)
	}
	if err := new(Config).LoadFile(filepath.Join(dir, "missing.yaml")); err == nil {
		t.Fatal("missing file accepted")
	}
}

// TestHostOnlyModeConfig: mode defaults to nat, host-only loads from a
// file and a flag laid over it wins, and any other value names --mode.
func TestHostOnlyModeConfig(t *testing.T) {
	if c := Default(); c.Mode != ModeNAT {
		t.Fatalf("default mode %q, want %q", c.Mode, ModeNAT)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "c.yaml")
	os.WriteFile(path, []byte("mode: host-only\n"), 0o600)
	var c Config
	if err := c.LoadFile(path); err != nil {
		t.Fatal(err)
	}
	if err := c.Complete(); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil || c.Mode != ModeHostOnly {
		t.Fatalf("mode: host-only loaded as %q, %v", c.Mode, err)
	}
	flags := Default()
	if !CopyField(&c, &flags, "mode") || c.Mode != ModeNAT {
		t.Fatalf("--mode over the file: %q", c.Mode)
	}
	for _, bad := range []string{"hostonly", "NAT", "bridged", " nat"} {
		c := Default()
		c.Mode = bad
		err := c.Validate()
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Flag != "mode" || !strings.Contains(err.Error(), "--mode") || strings.Contains(err.Error(), "\n") {
			t.Errorf("mode %q: want one line naming --mode, got %v", bad, err)
		}
	}
}

func TestCopyField(t *testing.T) {
	src := Default()
	src.MTU = 1400
	src.Limits.MaxFlows = 3
	dst := Default()
	if !CopyField(&dst, &src, "mtu") || !CopyField(&dst, &src, "max-flows") || CopyField(&dst, &src, "no-such") {
		t.Fatal("CopyField reported the wrong fields")
	}
	if dst.MTU != 1400 || dst.Limits.MaxFlows != 3 {
		t.Fatalf("copied %d %d", dst.MTU, dst.Limits.MaxFlows)
	}
}

// FuzzLoadFile: any config file gives a config or one clear error, never a
// panic, and a loaded config either validates or names a flag.
func FuzzLoadFile(f *testing.F) {
	f.Add([]byte("cidr: 10.9.0.0/24\nmtu: 1500\n"))
	f.Add([]byte("dns-upstream: [127.0.0.1, '[::1]:5353']\nlimits:\n  max-flows: 10\n"))
	f.Add([]byte("publish: [\"8080:80\", \"[::1]:53:53/udp\"]\nipv6-prefix: fd12::/64\n"))
	f.Add([]byte("gateway: 10.0.3.2\n"))
	f.Add([]byte("{"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "c.yaml")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		var c Config
		if err := c.LoadFile(path); err != nil {
			return
		}
		if err := c.Complete(); err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("validation error without a flag: %v", err)
			}
		}
	})
}
