package dns

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/slipway-net/slipway/services/internal/cfgcheck"
	"github.com/slipway-net/slipway/services/internal/dnsname"
)

// Config describes where the forwarder sends queries and what it answers
// itself.
type Config struct {
	// Upstreams are tried in order for each query; the first that answers
	// wins. With none, every query that is not local gets SERVFAIL.
	Upstreams []netip.AddrPort
	// Timeout bounds one attempt at one upstream; 0 means 2s. The whole
	// query is bounded too, by one Timeout per upstream capped at 4s (but
	// never less than one Timeout), so a guest gets SERVFAIL before its
	// resolver gives up (5s for glibc and musl).
	Timeout time.Duration
	// MaxInFlight bounds the queries waiting on upstreams; 0 means 256.
	// Queries beyond it get SERVFAIL at once.
	MaxInFlight int
	// Local names answered without asking upstream: A and AAAA from the
	// addresses given, an empty answer for other types. Names are matched
	// without regard to ASCII case; the trailing dot is optional.
	Local map[string][]netip.Addr
	// Dial opens the upstream sockets ("udp" or "tcp"); nil means a
	// net.Dialer on the host.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

const (
	defaultTimeout     = 2 * time.Second
	defaultMaxInFlight = 256
	// maxForwardBudget caps the time spent on one query over all upstreams,
	// under the 5s after which stub resolvers retry or give up.
	maxForwardBudget = 4 * time.Second
	// localTTL is short so a changed configuration is picked up quickly.
	localTTL = 60
	// TCP limits: a guest gets at most this many connections, each closed
	// after this long without a query, and a reply that cannot be written
	// in writeTimeout ends the connection.
	defaultMaxTCPConns = 64
	defaultTCPIdle     = 10 * time.Second
	writeTimeout       = 10 * time.Second
)

// validate checks cfg, fills in defaults and returns the local names keyed
// by their canonical (lower-case, dot-terminated) form.
func (cfg *Config) validate() (map[string][]netip.Addr, error) {
	for _, up := range cfg.Upstreams {
		if !up.IsValid() || up.Port() == 0 || up.Addr().IsUnspecified() {
			return nil, fmt.Errorf("dns: upstream %v is not an address and port", up)
		}
	}
	var err error
	if cfg.Timeout, err = cfgcheck.OrDefault("Timeout", cfg.Timeout, defaultTimeout); err != nil {
		return nil, fmt.Errorf("dns: %w", err)
	}
	if cfg.MaxInFlight, err = cfgcheck.OrDefault("MaxInFlight", cfg.MaxInFlight, defaultMaxInFlight); err != nil {
		return nil, fmt.Errorf("dns: %w", err)
	}
	local := make(map[string][]netip.Addr, len(cfg.Local))
	for name, addrs := range cfg.Local {
		key, err := canonicalName(name)
		if err != nil {
			return nil, fmt.Errorf("dns: local name: %w", err)
		}
		if _, dup := local[key]; dup {
			return nil, fmt.Errorf("dns: local name %q given twice", name)
		}
		clean := make([]netip.Addr, 0, len(addrs))
		for _, a := range addrs {
			if !a.IsValid() {
				return nil, fmt.Errorf("dns: local name %q has an invalid address", name)
			}
			// Zones mean nothing to a guest; 4-in-6 forms are meant as IPv4.
			clean = append(clean, a.WithZone("").Unmap())
		}
		local[key] = clean
	}
	if cfg.Dial == nil {
		var d net.Dialer
		cfg.Dial = d.DialContext
	}
	return local, nil
}

// canonicalName checks a configured name and returns it lower-case with
// a trailing dot, the form queries are compared in.
func canonicalName(name string) (string, error) {
	if err := dnsname.Check(name); err != nil {
		return "", err
	}
	return lowerASCII(strings.TrimSuffix(name, ".")) + ".", nil
}

// lowerASCII folds A-Z only: DNS names compare case-insensitively in ASCII
// (RFC 4343), and other bytes must stay as they are.
func lowerASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// forwardBudget is the time one query may spend on all upstreams: one
// Timeout per upstream, capped so the guest hears back before its own
// resolver times out, but never less than one attempt.
func forwardBudget(timeout time.Duration, upstreams int) time.Duration {
	b := timeout * time.Duration(max(upstreams, 1))
	if b > maxForwardBudget {
		b = maxForwardBudget
	}
	return max(b, timeout)
}
