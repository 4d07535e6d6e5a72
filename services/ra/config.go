package ra

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"time"

	"github.com/slipway-net/slipway/services/internal/cfgcheck"
)

// Config describes what the router advertises and how often.
type Config struct {
	// Prefix is the on-link prefix advertised for SLAAC (on-link and
	// autonomous flags set). It must be a /64: SLAAC on Ethernet builds
	// 64-bit interface identifiers (RFC 4862 section 5.5.3).
	Prefix netip.Prefix
	// MTU is sent as the MTU option; 0 omits it.
	MTU int
	// RDNSS are the recursive DNS servers (RFC 8106 option 25).
	RDNSS []netip.Addr
	// DNSSL is the DNS search list (RFC 8106 option 31).
	DNSSL []string
	// RouterMAC is sent as the source link-layer address option, which
	// spares the guest a neighbour solicitation for its router; nil omits
	// it. It must be an Ethernet (6-byte) address.
	RouterMAC net.HardwareAddr
	// RouterLifetime is how long guests keep this router as their default
	// route; 0 means 3 × MaxInterval (1800 s with the defaults), RFC 4861's
	// default. It must lie between MaxInterval and 9000 s.
	RouterLifetime time.Duration
	// ManagedFlag (M) tells guests that addresses are available from
	// DHCPv6; OtherFlag (O) that other configuration (DNS) is.
	ManagedFlag, OtherFlag bool
	// MinInterval and MaxInterval bound the random interval between
	// unsolicited advertisements (RFC 4861 section 6.2.1). MaxInterval 0
	// means 600 s and must lie in 4..1800 s; MinInterval 0 means a third of
	// MaxInterval (at least 3 s) and must lie in 3 s..0.75 × MaxInterval.
	MinInterval, MaxInterval time.Duration
	// Now is the clock; nil means time.Now. Tests replace it.
	Now func() time.Time
	// Rand returns a uniform float in [0, 1); nil means math/rand/v2. Tests
	// replace it to make the schedule predictable.
	Rand func() float64
}

const (
	defaultMaxInterval = 600 * time.Second
	minMaxInterval     = 4 * time.Second
	maxMaxInterval     = 1800 * time.Second
	minMinInterval     = 3 * time.Second
	maxRouterLifetime  = 9000 * time.Second

	minMTU = 1280 // RFC 8200 section 5: every IPv6 link carries 1280 bytes
	maxMTU = 65535

	// maxMessage keeps the whole advertisement within one minimum-MTU
	// packet (1280 bytes less the 40-byte IPv6 header), so it never needs
	// fragmenting, which guests may drop for NDP.
	maxMessage = minMTU - 40
)

// validate checks cfg and returns a copy with defaults filled in. Every
// error names the offending field and value.
func (cfg Config) validate() (Config, error) {
	if !cfg.Prefix.IsValid() || !cfg.Prefix.Addr().Is6() || cfg.Prefix.Addr().Is4In6() {
		return cfg, fmt.Errorf("ra: Prefix %v is not an IPv6 prefix", cfg.Prefix)
	}
	if cfg.Prefix.Addr().Zone() != "" {
		return cfg, fmt.Errorf("ra: Prefix %v has a zone", cfg.Prefix)
	}
	if cfg.Prefix.Bits() != 64 {
		return cfg, fmt.Errorf("ra: Prefix %v is not a /64, which SLAAC needs", cfg.Prefix)
	}
	cfg.Prefix = cfg.Prefix.Masked()
	if p := cfg.Prefix.Addr(); p.IsMulticast() || p.IsLinkLocalUnicast() {
		return cfg, fmt.Errorf("ra: Prefix %v is multicast or link-local, not a prefix to advertise", cfg.Prefix)
	}
	if cfg.MTU != 0 && (cfg.MTU < minMTU || cfg.MTU > maxMTU) {
		return cfg, fmt.Errorf("ra: MTU %d is outside %d..%d", cfg.MTU, minMTU, maxMTU)
	}
	if err := cfgcheck.IPv6Unicast("RDNSS server", cfg.RDNSS); err != nil {
		return cfg, fmt.Errorf("ra: %w", err)
	}
	if err := cfgcheck.Names("DNSSL", cfg.DNSSL); err != nil {
		return cfg, fmt.Errorf("ra: %w", err)
	}
	if cfg.RouterMAC != nil && len(cfg.RouterMAC) != 6 {
		return cfg, fmt.Errorf("ra: RouterMAC %q is not an Ethernet MAC address", cfg.RouterMAC)
	}

	switch {
	case cfg.MaxInterval == 0:
		cfg.MaxInterval = defaultMaxInterval
	case cfg.MaxInterval < minMaxInterval || cfg.MaxInterval > maxMaxInterval:
		return cfg, fmt.Errorf("ra: MaxInterval %v is outside %v..%v", cfg.MaxInterval, minMaxInterval, maxMaxInterval)
	}
	switch {
	case cfg.MinInterval == 0:
		cfg.MinInterval = max(cfg.MaxInterval/3, minMinInterval)
	case cfg.MinInterval < minMinInterval || cfg.MinInterval > cfg.MaxInterval*3/4:
		return cfg, fmt.Errorf("ra: MinInterval %v is outside %v..%v (0.75 × MaxInterval)", cfg.MinInterval, minMinInterval, cfg.MaxInterval*3/4)
	}
	switch {
	case cfg.RouterLifetime == 0:
		cfg.RouterLifetime = min(3*cfg.MaxInterval, maxRouterLifetime)
	case cfg.RouterLifetime < cfg.MaxInterval || cfg.RouterLifetime > maxRouterLifetime:
		return cfg, fmt.Errorf("ra: RouterLifetime %v is outside MaxInterval %v..%v", cfg.RouterLifetime, cfg.MaxInterval, maxRouterLifetime)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Float64
	}
	return cfg, nil
}
