// Package slirpabi is the Go half of slipway's libslirp.so.0: it turns
// what a libslirp host (QEMU's -netdev user, slirp4netns, bhyve) asks for
// into calls on slipway's public network API, and the answers back into
// libslirp's formats (its connection table, its migration stream). It
// knows no C: the cgo layer in libslirp/core converts C values to the
// plain Go values used here, so everything in this package is tested and
// fuzzed as ordinary Go.
//
// Nothing here carries frames or flows itself: an Instance is one
// network.Network with one link attached, whose other end the host drives.
package slirpabi

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"strings"

	"github.com/slipway-net/slipway/config"
)

// DefaultMTU is libslirp's if_mtu when the host leaves it 0 and the base
// configuration names none.
const DefaultMTU = 1500

// Settings is a host's SlirpConfig, read by the C side according to the
// config's version (fields a version lacks are zero).
type Settings struct {
	Version    int
	Restricted bool
	IPv4       bool
	// Network and Netmask are vnetwork and vnetmask.
	Network, Netmask netip.Addr
	// Host is vhost, the gateway (the host's loopback).
	Host       netip.Addr
	DHCPStart  netip.Addr
	Nameserver netip.Addr
	IPv6       bool
	Prefix6    netip.Addr
	Prefix6Len int
	Host6      netip.Addr
	// Nameserver6 is vnameserver6.
	Nameserver6 netip.Addr
	// Hostname is vhostname, given to the guest by DHCP.
	Hostname string
	// TFTPServerName, TFTPPath and Bootfile are libslirp's TFTP server
	// (DHCP option 66, the directory served, the boot file DHCP names).
	TFTPServerName, TFTPPath, Bootfile string
	Domain                             string
	DNSSearch                          []string
	// MTU and MRU are if_mtu and if_mru, 0 for libslirp's default.
	MTU, MRU            int
	DisableHostLoopback bool
	EnableEmu           bool
	// OutboundAddr and OutboundAddr6 (config version 2) are invalid when
	// not given.
	OutboundAddr, OutboundAddr6 netip.Addr
	// DisableDNS (version 3) and DisableDHCP (version 4).
	DisableDNS, DisableDHCP bool
}

// Config lays the host's settings over base (the embedder's or the
// environment's configuration, see BaseConfig) and validates the result.
// The notes name what was asked for and is not applied; an error names a
// setting that cannot work at all.
func (s Settings) Config(base config.Config) (config.Config, []string, error) {
	c := base
	var notes []string
	note := func(format string, args ...any) { notes = append(notes, fmt.Sprintf(format, args...)) }
	if !s.IPv4 {
		note("ipv4=off is not supported: IPv4 stays on")
	}
	bits, ok := maskBits(s.Netmask)
	if !ok {
		return c, notes, fmt.Errorf("netmask %v is not a contiguous mask", s.Netmask)
	}
	c.CIDR = netip.PrefixFrom(s.Network, bits).Masked()
	c.Gateway, c.DNSAddress, c.DHCPStart = s.Host, s.Nameserver, s.DHCPStart
	c.NoIPv6 = !s.IPv6
	if s.IPv6 {
		if s.Prefix6Len != 64 {
			return c, notes, fmt.Errorf("ipv6-prefixlen=%d: slipway's IPv6 network is a /64 (SLAAC)", s.Prefix6Len)
		}
		c.IPv6Prefix = netip.PrefixFrom(s.Prefix6, 64).Masked()
		c.IPv6Gateway, c.IPv6DNS = s.Host6, s.Nameserver6
	} else {
		// Validation still looks at the IPv6 fields; keep the defaults.
		c.IPv6Prefix, c.IPv6Gateway, c.IPv6DNS = netip.Prefix{}, netip.Addr{}, netip.Addr{}
	}
	if s.Hostname != "" {
		c.Hostname = s.Hostname
	}
	if s.Domain != "" {
		c.Domain = s.Domain
	}
	if len(s.DNSSearch) > 0 {
		c.DNSSearch = s.DNSSearch
	}
	// The host's if_mtu wins; a host that sets none (QEMU's -netdev user
	// has no such option) gets the MTU base names, else libslirp's. A
	// larger MTU is opt-in only: a guest whose NIC cannot take it (QEMU's
	// e1000, rtl8139) keeps 1500 and would lose the large UDP datagrams
	// (DNS answers among them) sent to it unfragmented.
	switch {
	case s.MTU != 0:
		c.MTU = s.MTU
	case c.MTU == 0:
		c.MTU = DefaultMTU
	}
	c.Restrict = c.Restrict || s.Restricted
	c.NoHostLoopback = c.NoHostLoopback || s.DisableHostLoopback
	switch {
	case s.OutboundAddr.IsValid():
		c.OutboundAddr = s.OutboundAddr
		if s.OutboundAddr6.IsValid() {
			note("outbound_addr6 is not applied beside outbound_addr: slipway binds one outbound address")
		}
	case s.OutboundAddr6.IsValid():
		c.OutboundAddr = s.OutboundAddr6
	}
	if s.TFTPPath != "" {
		c.TFTPRoot = s.TFTPPath
	}
	if s.Bootfile != "" {
		c.BootFile = s.Bootfile
	}
	if s.TFTPServerName != "" {
		c.TFTPServerName = s.TFTPServerName
	}
	if s.EnableEmu {
		note("enable_emu is ignored: slipway emulates no protocols")
	}
	if s.DisableDNS {
		note("disable_dns is not supported: DNS is served")
	}
	if s.DisableDHCP {
		note("disable_dhcp is not supported: DHCP is served")
	}
	if err := c.Complete(); err != nil {
		return c, notes, err
	}
	if err := c.Validate(); err != nil {
		return c, notes, err
	}
	return c, notes, nil
}

func maskBits(m netip.Addr) (int, bool) {
	if !m.Is4() {
		return 0, false
	}
	b := m.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	n := 0
	for v&0x80000000 != 0 {
		n++
		v <<= 1
	}
	return n, v == 0
}

// Environment variables the library reads, since a host's command line
// has no room for slipway's own settings.
const (
	// EnvConfig names a YAML config file (slipway's --config format).
	EnvConfig = "SLIPWAY_CONFIG"
	// EnvDNSUpstream is a comma-separated list of DNS upstreams
	// (ADDR[:PORT]), as --dns-upstream.
	EnvDNSUpstream = "SLIPWAY_DNS_UPSTREAM"
	// EnvLogLevel is debug, info, warn or error (default warn).
	EnvLogLevel = "SLIPWAY_LOG_LEVEL"
)

// BaseConfig is the configuration the host's settings are laid over: the
// file EnvConfig names, then EnvDNSUpstream, on slipway's defaults.
func BaseConfig(getenv func(string) string) (config.Config, error) {
	return BaseConfigOpen(getenv, func(path string) (io.ReadCloser, error) { return os.Open(path) })
}

// BaseConfigOpen is BaseConfig with the file EnvConfig names opened by
// open: the server is handed the file the host opened, since it may run
// as a user who cannot open it.
func BaseConfigOpen(getenv func(string) string, open func(path string) (io.ReadCloser, error)) (config.Config, error) {
	var c config.Config
	if path := getenv(EnvConfig); path != "" {
		f, err := open(path)
		if err == nil {
			err = c.Load(f, path)
			f.Close()
		} else {
			err = fmt.Errorf("config file: %w", err)
		}
		if err != nil {
			return c, fmt.Errorf("%s: %w", EnvConfig, err)
		}
	}
	if v := getenv(EnvDNSUpstream); v != "" {
		c.DNSUpstreams = nil
		for _, s := range strings.Split(v, ",") {
			d, err := config.ParseDNSServer(strings.TrimSpace(s))
			if err != nil {
				return c, fmt.Errorf("%s=%q: %w", EnvDNSUpstream, v, err)
			}
			c.DNSUpstreams = append(c.DNSUpstreams, d)
		}
	}
	if v := getenv(EnvLogLevel); v != "" {
		c.LogLevel = v
	} else if c.LogLevel == "" {
		c.LogLevel = "warn"
	}
	return c, nil
}

// Logger is the library's logger: text on standard error, at the
// configuration's level, each line marked as libslirp's.
func Logger(level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, errors.Join(fmt.Errorf("%s=%q", EnvLogLevel, level), err)
	}
	h := slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})
	return slog.New(h).With("lib", "libslirp (slipway)"), nil
}
