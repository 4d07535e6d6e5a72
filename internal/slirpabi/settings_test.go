package slirpabi

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/slipway-net/slipway/config"
	"github.com/slipway-net/slipway/network"
)

// qemuDefaults is what QEMU 7.2's -netdev user passes with no options.
func qemuDefaults() Settings {
	return Settings{
		Version: 4, IPv4: true,
		Network: netip.MustParseAddr("10.0.2.0"), Netmask: netip.MustParseAddr("255.255.255.0"),
		Host: netip.MustParseAddr("10.0.2.2"), DHCPStart: netip.MustParseAddr("10.0.2.15"),
		Nameserver: netip.MustParseAddr("10.0.2.3"),
		IPv6:       true, Prefix6: netip.MustParseAddr("fec0::"), Prefix6Len: 64,
		Host6: netip.MustParseAddr("fec0::2"), Nameserver6: netip.MustParseAddr("fec0::3"),
	}
}

func TestQEMUDefaultsMapOntoConfig(t *testing.T) {
	c, notes, err := qemuDefaults().Config(config.Config{})
	if err != nil || len(notes) != 0 {
		t.Fatalf("err %v, notes %v", err, notes)
	}
	if c.CIDR.String() != "10.0.2.0/24" || c.Gateway.String() != "10.0.2.2" || c.DNSAddress.String() != "10.0.2.3" ||
		c.DHCPStart.String() != "10.0.2.15" || c.IPv6Prefix.String() != "fec0::/64" || c.IPv6Gateway.String() != "fec0::2" ||
		c.IPv6DNS.String() != "fec0::3" || c.MTU != DefaultMTU || c.NoIPv6 || c.Restrict || c.NoHostLoopback {
		t.Errorf("config %+v", c)
	}
}

func TestSettingsOptions(t *testing.T) {
	s := qemuDefaults()
	s.Restricted, s.DisableHostLoopback, s.IPv6 = true, true, false
	s.Hostname, s.Domain, s.DNSSearch, s.MTU = "vm1", "lab.example", []string{"a.example", "b.example"}, 65520
	s.OutboundAddr = netip.MustParseAddr("127.0.0.1")
	s.TFTPPath, s.Bootfile, s.TFTPServerName, s.DisableDNS = "/srv/tftp", "boot.ipxe", "tftp.lab", true
	c, notes, err := s.Config(config.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if !c.Restrict || !c.NoHostLoopback || !c.NoIPv6 || c.Hostname != "vm1" || c.Domain != "lab.example" ||
		strings.Join(c.DNSSearch, ",") != "a.example,b.example" || c.MTU != 65520 || c.OutboundAddr != s.OutboundAddr ||
		c.TFTPRoot != "/srv/tftp" || c.BootFile != "boot.ipxe" || c.TFTPServerName != "tftp.lab" {
		t.Errorf("config %+v", c)
	}
	if len(notes) != 1 || !strings.Contains(notes[0], "disable_dns") {
		t.Errorf("notes %q", notes)
	}
}

// QEMU's -netdev user sets no if_mtu: SLIPWAY_CONFIG's mtu is the only
// way its guest gets a large one; a host's own if_mtu (slirp4netns
// --mtu) still wins.
func TestBaseMTUWhenHostSetsNone(t *testing.T) {
	base := config.Config{MTU: 65520}
	c, _, err := qemuDefaults().Config(base)
	if err != nil || c.MTU != 65520 {
		t.Errorf("host if_mtu 0, base 65520: MTU %d, err %v", c.MTU, err)
	}
	s := qemuDefaults()
	s.MTU = 4000
	if c, _, err = s.Config(base); err != nil || c.MTU != 4000 {
		t.Errorf("host if_mtu 4000, base 65520: MTU %d, err %v", c.MTU, err)
	}
	base.MTU = 100
	if _, _, err = qemuDefaults().Config(base); err == nil || !strings.Contains(err.Error(), "mtu") {
		t.Errorf("base mtu 100: err %v, want one naming mtu", err)
	}
}

func TestBadSettingsAreErrors(t *testing.T) {
	for name, mod := range map[string]func(*Settings){
		"mask":        func(s *Settings) { s.Netmask = netip.MustParseAddr("255.0.255.0") },
		"prefix6 /48": func(s *Settings) { s.Prefix6Len = 48 },
		"host":        func(s *Settings) { s.Host = netip.MustParseAddr("10.9.9.9") },
		"mtu":         func(s *Settings) { s.MTU = 100 },
		"hostname":    func(s *Settings) { s.Hostname = "bad name!" },
	} {
		s := qemuDefaults()
		mod(&s)
		if _, _, err := s.Config(config.Config{}); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestBaseConfigFromEnvironment(t *testing.T) {
	file := filepath.Join(t.TempDir(), "slipway.yaml")
	os.WriteFile(file, []byte("limits:\n  max-flows: 99\n"), 0o600)
	env := map[string]string{EnvConfig: file, EnvDNSUpstream: "127.0.0.1:5353, [::1]"}
	c, err := BaseConfig(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if c.Limits.MaxFlows != 99 || len(c.DNSUpstreams) != 2 || c.DNSUpstreams[1].String() != "[::1]:53" || c.LogLevel != "warn" {
		t.Errorf("config %+v", c)
	}
	env[EnvDNSUpstream] = "nonsense"
	if _, err := BaseConfig(func(k string) string { return env[k] }); err == nil || !strings.Contains(err.Error(), EnvDNSUpstream) {
		t.Errorf("bad upstream: %v", err)
	}
	if _, err := Logger("loud"); err == nil {
		t.Error("log level loud accepted")
	}
}

func sockaddr4(a string, port uint16) []byte {
	b := make([]byte, 16)
	binary.NativeEndian.PutUint16(b, afInet)
	binary.BigEndian.PutUint16(b[2:], port)
	ip := netip.MustParseAddr(a).As4()
	copy(b[4:], ip[:])
	return b
}

func sockaddr6(a string, port uint16) []byte {
	b := make([]byte, 28)
	binary.NativeEndian.PutUint16(b, afInet6)
	binary.BigEndian.PutUint16(b[2:], port)
	ip := netip.MustParseAddr(a).As16()
	copy(b[8:], ip[:])
	return b
}

func TestParseSockaddr(t *testing.T) {
	if ap, err := ParseSockaddr(sockaddr4("127.0.0.1", 2222)); err != nil || ap.String() != "127.0.0.1:2222" {
		t.Errorf("v4: %v %v", ap, err)
	}
	if ap, err := ParseSockaddr(sockaddr6("::1", 8080)); err != nil || ap.String() != "[::1]:8080" {
		t.Errorf("v6: %v %v", ap, err)
	}
	unix := make([]byte, 110)
	binary.NativeEndian.PutUint16(unix, afUnix)
	if _, err := ParseSockaddr(unix); Errno(err) != syscall.EAFNOSUPPORT {
		t.Errorf("unix: %v", err)
	}
	if _, err := ParseSockaddr(sockaddr6("::1", 1)[:20]); Errno(err) != syscall.EINVAL {
		t.Errorf("short v6: %v", err)
	}
}

// FuzzParseSockaddr: any bytes parse without a panic; an address parsed
// is of the family the bytes name, with their port.
func FuzzParseSockaddr(f *testing.F) {
	f.Add(sockaddr4("10.0.2.15", 22))
	f.Add(sockaddr6("fec0::15", 80))
	f.Add([]byte{1, 0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		ap, err := ParseSockaddr(b)
		if err != nil {
			if e := Errno(err); e != syscall.EINVAL && e != syscall.EAFNOSUPPORT {
				t.Fatalf("errno %v for %v", e, err)
			}
			return
		}
		fam := binary.NativeEndian.Uint16(b)
		if fam == afInet && (!ap.Addr().Is4() || len(b) < 8) || fam == afInet6 && (!ap.Addr().Is6() || len(b) < 24) {
			t.Fatalf("%v from family %d, %d bytes", ap, fam, len(b))
		}
		if ap.Port() != binary.BigEndian.Uint16(b[2:]) {
			t.Fatalf("port %d", ap.Port())
		}
	})
}

func TestForwardRuleAndErrno(t *testing.T) {
	h, _ := ParseSockaddr(sockaddr4("0.0.0.0", 2222))
	g, _ := ParseSockaddr(sockaddr4("0.0.0.0", 22))
	r, err := forwardRule(FwdUDP, h, g)
	if err != nil || r.Proto != config.UDP || r.GuestAddr.IsValid() || r.HostPort != 2222 || r.GuestPort != 22 {
		t.Errorf("rule %+v, %v", r, err)
	}
	for err, want := range map[error]syscall.Errno{
		network.ErrConflict:                          syscall.EADDRINUSE,
		network.ErrNotFound:                          syscall.ENOENT,
		errors.Join(errors.New("x"), syscall.EACCES): syscall.EACCES,
		&config.FieldError{Flag: "publish"}:          syscall.EINVAL,
		errors.New("other"):                          syscall.EIO,
	} {
		if got := Errno(err); got != want {
			t.Errorf("Errno(%v) = %v, want %v", err, got, want)
		}
	}
}
