package dhcp6

import (
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/slipway-net/slipway/services/internal/cfgcheck"
	"github.com/slipway-net/slipway/services/internal/dnsname"
)

// Config describes what the server hands out.
type Config struct {
	// ServerDUID identifies the server (option 2); clients send it back to
	// say which server they mean. DUIDLL(routerMAC) makes one.
	ServerDUID []byte
	// Prefix is the guest network, e.g. fd00::/64; IA_NA addresses come
	// from it. Host bits are ignored.
	Prefix netip.Prefix
	// RangeStart is the first address handed out, e.g. fd00::100; the
	// server goes up from there.
	RangeStart netip.Addr
	// DNS servers are sent as option 23 (RFC 3646); those inside Prefix
	// are never handed out.
	DNS []netip.Addr
	// Search is the domain search list, option 24 (RFC 3646).
	Search []string
	// MaxLeases bounds the addresses (advertised ones included) the guests
	// can hold; 0 means 256.
	MaxLeases int
	// PreferredLifetime and ValidLifetime are the addresses' lifetimes; 0
	// means one and two hours. Clients renew (T1) at half the preferred
	// lifetime and rebind (T2) at 0.8 of it, as RFC 8415 section 21.4
	// recommends; the valid lifetime gives an hour's grace beyond the
	// preferred one if slipway stops answering.
	PreferredLifetime, ValidLifetime time.Duration
	// Reserved addresses are never handed out.
	Reserved []netip.Addr
	// Now is the clock; nil means time.Now. Tests replace it.
	Now func() time.Time
}

const (
	defaultMaxLeases         = 256
	defaultPreferredLifetime = time.Hour
	defaultValidLifetime     = 2 * time.Hour
	// maxLifetimeSeconds keeps lifetimes below 0xffffffff, "infinity".
	maxLifetimeSeconds = 0xfffffffe
	// maxDNSServers and maxSearchBytes keep the configuration options
	// small next to the minimum IPv6 MTU.
	maxDNSServers  = 16
	maxSearchBytes = 512
)

// DUIDLL returns the DUID based on a link-layer address (DUID-LL, RFC 8415
// section 11.4) for an Ethernet MAC address: type 3, hardware type 1, then
// the address. It stays the same for as long as the MAC does, which is
// what a server needs of its DUID.
func DUIDLL(mac net.HardwareAddr) []byte {
	return append([]byte{0, 3, 0, 1}, mac...)
}

// validate checks cfg and returns a copy with defaults filled in. Every
// error names the offending field and value.
func (cfg Config) validate() (Config, error) {
	if n := len(cfg.ServerDUID); n < minDUIDLen || n > maxDUIDLen {
		return cfg, fmt.Errorf("dhcp6: ServerDUID of %d bytes: a DUID has %d to %d (use DUIDLL(mac))", n, minDUIDLen, maxDUIDLen)
	}
	if !cfgcheck.IsIPv6(cfg.Prefix.Addr()) {
		return cfg, fmt.Errorf("dhcp6: Prefix %v is not an IPv6 prefix", cfg.Prefix)
	}
	if cfg.Prefix.Bits() < 1 || cfg.Prefix.Bits() > 120 {
		return cfg, fmt.Errorf("dhcp6: Prefix %v must be between /1 and /120 to have addresses to hand out", cfg.Prefix)
	}
	cfg.Prefix = cfg.Prefix.Masked()
	if p := cfg.Prefix.Addr(); p.IsMulticast() || p.IsLinkLocalUnicast() {
		return cfg, fmt.Errorf("dhcp6: Prefix %v is multicast or link-local", cfg.Prefix)
	}
	if !cfgcheck.IsIPv6(cfg.RangeStart) || !cfg.Prefix.Contains(cfg.RangeStart) || cfg.RangeStart == cfg.Prefix.Addr() {
		// The prefix's own address is the subnet-router anycast address
		// (RFC 4291 section 2.6.1).
		return cfg, fmt.Errorf("dhcp6: RangeStart %v is not an address of Prefix %v", cfg.RangeStart, cfg.Prefix)
	}
	if len(cfg.DNS) > maxDNSServers {
		return cfg, fmt.Errorf("dhcp6: %d DNS servers given, at most %d", len(cfg.DNS), maxDNSServers)
	}
	if err := cfgcheck.IPv6Unicast("DNS server", cfg.DNS); err != nil {
		return cfg, fmt.Errorf("dhcp6: %w", err)
	}
	if err := cfgcheck.Names("Search", cfg.Search); err != nil {
		return cfg, fmt.Errorf("dhcp6: %w", err)
	}
	if n := len(dnsname.Encode(cfg.Search)); n > maxSearchBytes {
		return cfg, fmt.Errorf("dhcp6: Search list takes %d bytes, at most %d", n, maxSearchBytes)
	}
	for _, a := range cfg.Reserved {
		if !cfgcheck.IsIPv6(a) {
			return cfg, fmt.Errorf("dhcp6: Reserved address %v is not an IPv6 address", a)
		}
	}
	var err error
	if cfg.MaxLeases, err = cfgcheck.OrDefault("MaxLeases", cfg.MaxLeases, defaultMaxLeases); err != nil {
		return cfg, fmt.Errorf("dhcp6: %w", err)
	}
	if cfg.PreferredLifetime == 0 {
		cfg.PreferredLifetime = defaultPreferredLifetime
	}
	if cfg.ValidLifetime == 0 {
		cfg.ValidLifetime = max(defaultValidLifetime, cfg.PreferredLifetime)
	}
	for _, f := range []struct {
		name string
		d    time.Duration
	}{{"PreferredLifetime", cfg.PreferredLifetime}, {"ValidLifetime", cfg.ValidLifetime}} {
		if f.d < time.Second || f.d/time.Second > maxLifetimeSeconds {
			return cfg, fmt.Errorf("dhcp6: %s %v is outside 1s..%ds", f.name, f.d, maxLifetimeSeconds)
		}
	}
	if cfg.PreferredLifetime > cfg.ValidLifetime {
		// RFC 8415 section 21.6: clients discard such addresses.
		return cfg, fmt.Errorf("dhcp6: PreferredLifetime %v is longer than ValidLifetime %v", cfg.PreferredLifetime, cfg.ValidLifetime)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return cfg, nil
}
