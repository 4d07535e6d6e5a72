package dhcp4

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/slipway-net/slipway/services/internal/cfgcheck"
	"github.com/slipway-net/slipway/services/internal/dnsname"
)

// Config describes the network the server hands out addresses on.
type Config struct {
	// ServerIP is the gateway address the server answers from; it is sent
	// as the server identifier (option 54) and never handed out.
	ServerIP netip.Addr
	// Subnet is the guest network, e.g. 10.0.2.0/24. Host bits are ignored.
	Subnet netip.Prefix
	// Router is sent as option 3; it is never handed out. Unset means no
	// router option (an isolated network).
	Router netip.Addr
	// DNS servers are sent as option 6; those inside Subnet are never
	// handed out.
	DNS []netip.Addr
	// RangeStart is the first address handed out; the server goes up from
	// there to the last host address of Subnet.
	RangeStart netip.Addr
	// MaxLeases bounds the dynamic leases (offers included) the guest can
	// hold; 0 means 256.
	MaxLeases int
	// LeaseTime is the lease duration; 0 means one hour.
	LeaseTime time.Duration
	// MTU is sent as option 26; 0 omits it.
	MTU int
	// Domain is sent as option 15 when non-empty.
	Domain string
	// Search is sent as option 119 (RFC 3397) when non-empty.
	Search []string
	// Hostname is sent as option 12 when non-empty.
	Hostname string
	// BootFile, when non-empty, is the network boot file: sent in the
	// BOOTP file field and as option 67, with ServerIP as the next server
	// (siaddr), as PXE firmware expects. At most 127 bytes.
	BootFile string
	// TFTPServerName is sent as option 66 when non-empty.
	TFTPServerName string
	// Reserved addresses are never handed out dynamically.
	Reserved []netip.Addr
	// Known, if set, says whether a client (by its hardware address) is
	// one the network has seen: only those get a new lease. slipway's
	// switch learns a bounded number of MACs per link, so a guest
	// inventing MACs (a DHCP exhaustion attack) gets at most that many
	// leases and cannot starve the other guests, nor its own first MAC.
	Known func(mac net.HardwareAddr) bool
	// Now is the clock; nil means time.Now. Tests replace it.
	Now func() time.Time
}

const (
	defaultMaxLeases = 256
	defaultLeaseTime = time.Hour
	// maxLeaseSeconds keeps the lease below 0xffffffff, which means
	// "infinite" on the wire.
	maxLeaseSeconds = 0xfffffffe
	// maxDNSServers keeps option 6 within one 255-byte option.
	maxDNSServers = 63
)

// validate checks cfg and returns a copy with defaults filled in. Every
// error names the offending field and value.
func (cfg Config) validate() (Config, error) {
	if !cfg.Subnet.IsValid() || !cfg.Subnet.Addr().Is4() {
		return cfg, fmt.Errorf("dhcp4: Subnet %v is not an IPv4 prefix", cfg.Subnet)
	}
	if cfg.Subnet.Bits() < 1 || cfg.Subnet.Bits() > 30 {
		return cfg, fmt.Errorf("dhcp4: Subnet %v must be between /1 and /30 to have host addresses", cfg.Subnet)
	}
	cfg.Subnet = cfg.Subnet.Masked()
	p := newPlan(cfg.Subnet)

	if err := p.checkHost("ServerIP", cfg.ServerIP); err != nil {
		return cfg, err
	}
	if cfg.Router.IsValid() {
		if err := p.checkHost("Router", cfg.Router); err != nil {
			return cfg, err
		}
	}
	if err := p.checkHost("RangeStart", cfg.RangeStart); err != nil {
		return cfg, err
	}
	if len(cfg.DNS) > maxDNSServers {
		return cfg, fmt.Errorf("dhcp4: %d DNS servers given, at most %d fit", len(cfg.DNS), maxDNSServers)
	}
	for _, a := range cfg.DNS {
		if !a.Is4() {
			return cfg, fmt.Errorf("dhcp4: DNS server %v is not an IPv4 address", a)
		}
	}
	for _, a := range cfg.Reserved {
		if !a.Is4() {
			return cfg, fmt.Errorf("dhcp4: Reserved address %v is not an IPv4 address", a)
		}
	}
	var err error
	if cfg.MaxLeases, err = cfgcheck.OrDefault("MaxLeases", cfg.MaxLeases, defaultMaxLeases); err != nil {
		return cfg, fmt.Errorf("dhcp4: %w", err)
	}
	if cfg.LeaseTime, err = cfgcheck.OrDefault("LeaseTime", cfg.LeaseTime, defaultLeaseTime); err != nil {
		return cfg, fmt.Errorf("dhcp4: %w", err)
	}
	switch {
	case cfg.LeaseTime < time.Second:
		return cfg, fmt.Errorf("dhcp4: LeaseTime %v is shorter than one second", cfg.LeaseTime)
	case cfg.LeaseTime/time.Second > maxLeaseSeconds:
		return cfg, fmt.Errorf("dhcp4: LeaseTime %v is too long for the 32-bit option", cfg.LeaseTime)
	}
	if cfg.MTU != 0 && (cfg.MTU < 68 || cfg.MTU > 65535) {
		// RFC 2132 section 5.1: 68 is the smallest legal MTU.
		return cfg, fmt.Errorf("dhcp4: MTU %d is outside 68..65535", cfg.MTU)
	}
	if cfg.Domain != "" {
		if err := dnsname.Check(cfg.Domain); err != nil {
			return cfg, fmt.Errorf("dhcp4: Domain: %w", err)
		}
	}
	if err := cfgcheck.Names("Search", cfg.Search); err != nil {
		return cfg, fmt.Errorf("dhcp4: %w", err)
	}
	if cfg.Hostname != "" {
		if err := dnsname.Check(cfg.Hostname); err != nil {
			return cfg, fmt.Errorf("dhcp4: Hostname: %w", err)
		}
	}
	if len(cfg.BootFile) > 127 || strings.IndexByte(cfg.BootFile, 0) >= 0 {
		return cfg, fmt.Errorf("dhcp4: BootFile %q is longer than the 127 bytes of the BOOTP file field or holds a NUL", cfg.BootFile)
	}
	if len(cfg.TFTPServerName) > 255 || strings.IndexByte(cfg.TFTPServerName, 0) >= 0 {
		return cfg, fmt.Errorf("dhcp4: TFTPServerName %q is longer than one option or holds a NUL", cfg.TFTPServerName)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return cfg, nil
}

// plan is the numeric view of the subnet: addresses as integers so the
// pool can be walked.
type plan struct {
	network, broadcast uint32
	mask               [4]byte
}

func newPlan(subnet netip.Prefix) plan {
	n := addrToUint(subnet.Addr())
	hostBits := 32 - subnet.Bits()
	m := ^uint32(0) << hostBits
	var mask [4]byte
	putUint(mask[:], m)
	return plan{network: n, broadcast: n | ^m, mask: mask}
}

// isHost reports whether a is an assignable address of the subnet (not its
// network or broadcast address).
func (p plan) isHost(a netip.Addr) bool {
	if !a.Is4() {
		return false
	}
	u := addrToUint(a)
	return u > p.network && u < p.broadcast
}

func (p plan) checkHost(field string, a netip.Addr) error {
	if !a.Is4() {
		return fmt.Errorf("dhcp4: %s %v is not an IPv4 address", field, a)
	}
	if !p.isHost(a) {
		return fmt.Errorf("dhcp4: %s %v is not a host address of the subnet", field, a)
	}
	return nil
}

var errNotInSubnet = errors.New("address is not a host address of the subnet")

func addrToUint(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func uintToAddr(u uint32) netip.Addr {
	var b [4]byte
	putUint(b[:], u)
	return netip.AddrFrom4(b)
}

func putUint(b []byte, u uint32) {
	b[0], b[1], b[2], b[3] = byte(u>>24), byte(u>>16), byte(u>>8), byte(u)
}
