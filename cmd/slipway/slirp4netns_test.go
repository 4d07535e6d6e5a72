//go:build linux

package main

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/slipway-net/slipway/config"
)

// defaultSlirp4netnsOptions are the options as newSlirp4netnsCmd's flag
// defaults leave them.
func defaultSlirp4netnsOptions() slirp4netnsOptions {
	return slirp4netnsOptions{cidr: "10.0.2.0/24", mtu: 1500, exitFD: -1, readyFD: -1, netnsType: "pid", targetType: "netns"}
}

// slirp4netns's defaults: the namespace at .100, MTU 1500, IPv6 only when
// asked for, quiet logs.
func TestSlirp4netnsConfig(t *testing.T) {
	o := defaultSlirp4netnsOptions()
	cfg, err := slirp4netnsConfig(&o)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DHCPStart != netip.MustParseAddr("10.0.2.100") || cfg.Gateway != netip.MustParseAddr("10.0.2.2") ||
		cfg.DNSAddress != netip.MustParseAddr("10.0.2.3") || cfg.MTU != 1500 || !cfg.NoIPv6 || cfg.LogLevel != "warn" {
		t.Errorf("defaults: %+v", cfg)
	}

	o.cidr, o.mtu, o.ipv6, o.noHostLoopback = "10.7.0.0/16", 65520, true, true
	o.outbound4, o.apiSocket = "192.0.2.9", "/run/api.sock"
	cfg, err = slirp4netnsConfig(&o)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DHCPStart != netip.MustParseAddr("10.7.0.100") || cfg.Gateway != netip.MustParseAddr("10.7.0.2") ||
		cfg.MTU != 65520 || cfg.NoIPv6 || !cfg.NoHostLoopback || cfg.OutboundAddr != netip.MustParseAddr("192.0.2.9") ||
		cfg.APISocket != "/run/api.sock" {
		t.Errorf("from options %+v: %+v", o, cfg)
	}
}

func TestSlirp4netnsConfigRejects(t *testing.T) {
	for _, c := range []struct {
		set  func(*slirp4netnsOptions)
		want string
	}{
		{func(o *slirp4netnsOptions) { o.cidr = "10.0.2.0" }, `invalid value "10.0.2.0" for --cidr`},
		{func(o *slirp4netnsOptions) { o.cidr = "10.0.2.0/30" }, "--cidr"},
		{func(o *slirp4netnsOptions) { o.outbound4 = "2001:db8::1" }, `invalid value "2001:db8::1" for --outbound-addr: want an IPv4 address`},
		{func(o *slirp4netnsOptions) { o.outbound4 = "host" }, `"host" for --outbound-addr`},
		{func(o *slirp4netnsOptions) { o.outbound6 = "2001:db8::1" }, "--outbound-addr6: not supported"},
		{func(o *slirp4netnsOptions) { o.mtu = 70000 }, `invalid value "70000" for --mtu`},
	} {
		o := defaultSlirp4netnsOptions()
		c.set(&o)
		_, err := slirp4netnsConfig(&o)
		var fe *config.FieldError
		if err == nil || !strings.Contains(err.Error(), c.want) || !(errors.As(err, new(usageError)) || errors.As(err, &fe)) {
			t.Errorf("options %+v: %v, want a usage error saying %q", o, err, c.want)
		}
	}
}

// The command line is checked before any namespace is touched.
func TestSlirp4netnsCommandLine(t *testing.T) {
	code, stdout, _ := cli(t, "slirp4netns", "--version")
	if code != 0 || stdout != "slirp4netns version "+slirp4netnsVersion+" (slipway "+version+")\n" {
		t.Errorf("--version: exit %d, %q", code, stdout)
	}
	code, stdout, _ = cli(t, "slirp4netns", "-v")
	if code != 0 || !strings.HasPrefix(stdout, "slirp4netns version ") {
		t.Errorf("-v: exit %d, %q", code, stdout)
	}
	wantUsage(t, []string{"slirp4netns"}, "accepts between 1 and 2 arg(s)")
	wantUsage(t, []string{"slirp4netns", "1", "tap0", "extra"}, "accepts between 1 and 2 arg(s)")
	wantUsage(t, []string{"slirp4netns", "--target-type", "bess", "1"}, `"bess" for --target-type`)
	wantUsage(t, []string{"slirp4netns", "--netns-type", "fd", "1"}, `"fd" for --netns-type`)
	wantUsage(t, []string{"slirp4netns", "/proc/1/ns/net"}, `"/proc/1/ns/net" for PID`, "--netns-type=path")
	wantUsage(t, []string{"slirp4netns", "--cidr", "nope", "1"}, `"nope" for --cidr`)
	wantUsage(t, []string{"slirp4netns", "-m", "x", "1"}, `"x"`, "--mtu")
	// --macaddress: only with --configure, and an Ethernet address.
	wantUsage(t, []string{"slirp4netns", "--netns-type=path", "--macaddress", "52:54:00:00:00:01", "/nonexistent"},
		"--macaddress: only valid with --configure")
	wantUsage(t, []string{"slirp4netns", "--netns-type=path", "-c", "--macaddress", "52:54:00", "/nonexistent"},
		`"52:54:00" for --macaddress`)
}

// podman probes --help for --enable-sandbox and --enable-seccomp; the
// help says they are honoured, and they contradict --sandbox=off.
func TestSlirp4netnsSandboxFlags(t *testing.T) {
	code, out, _ := cli(t, "slirp4netns", "--help")
	if code != 0 {
		t.Fatalf("--help: exit %d", code)
	}
	for _, w := range []string{"--enable-sandbox", "--enable-seccomp", "honoured", "--sandbox"} {
		if !strings.Contains(out, w) {
			t.Errorf("slirp4netns --help does not say %q", w)
		}
	}
	wantUsage(t, []string{"slirp4netns", "--enable-seccomp", "--sandbox=off", "1234", "tap0"}, "--sandbox=off")
	wantUsage(t, []string{"slirp4netns", "--sandbox=loose", "1234", "tap0"}, "sandbox")
	wantUsage(t, []string{"serve", "--listen", "stream:unix:/tmp/x.sock", "--sandbox=loose"}, "sandbox", "on, strict or off")
}
