package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// DefaultHostNames are the names guests find the host under, besides
// host.slipway.internal: the ones podman, docker and lima users know.
var DefaultHostNames = []string{"host.containers.internal", "host.docker.internal", "gateway.containers.internal", "host.lima.internal"}

// DNSRecord is a name slipway's DNS answers itself (--dns-record
// NAME=IP): A for an IPv4 address, AAAA for an IPv6 one.
type DNSRecord struct {
	Name string
	IP   netip.Addr
}

// ParseDNSRecord reads NAME=IP.
func ParseDNSRecord(s string) (DNSRecord, error) {
	name, ip, ok := strings.Cut(s, "=")
	if !ok {
		return DNSRecord{}, errors.New("want NAME=IP")
	}
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return DNSRecord{}, fmt.Errorf("address: %w", err)
	}
	if !validDNSName(name) {
		return DNSRecord{}, fmt.Errorf("%q is not a valid DNS name", name)
	}
	return DNSRecord{Name: name, IP: a.Unmap()}, nil
}

func (r DNSRecord) String() string { return r.Name + "=" + r.IP.String() }

// UnmarshalText lets YAML and flags share ParseDNSRecord.
func (r *DNSRecord) UnmarshalText(b []byte) error {
	v, err := ParseDNSRecord(string(b))
	if err != nil {
		return fieldErr("dns-record", string(b), "%v", err)
	}
	*r = v
	return nil
}

// MarshalText prints NAME=IP.
func (r DNSRecord) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// StaticLease pins a DHCP address to a MAC (--dhcp-static MAC=IP).
type StaticLease struct {
	MAC net.HardwareAddr
	IP  netip.Addr
}

// ParseStaticLease reads MAC=IP.
func ParseStaticLease(s string) (StaticLease, error) {
	mac, ip, ok := strings.Cut(s, "=")
	if !ok {
		return StaticLease{}, errors.New("want MAC=IP")
	}
	m, err := net.ParseMAC(mac)
	if err != nil || len(m) != 6 {
		return StaticLease{}, fmt.Errorf("%q is not an Ethernet address", mac)
	}
	a, err := netip.ParseAddr(ip)
	if err != nil || !a.Unmap().Is4() {
		return StaticLease{}, fmt.Errorf("%q is not an IPv4 address", ip)
	}
	return StaticLease{MAC: m, IP: a.Unmap()}, nil
}

func (l StaticLease) String() string { return l.MAC.String() + "=" + l.IP.String() }

// UnmarshalText lets YAML and flags share ParseStaticLease.
func (l *StaticLease) UnmarshalText(b []byte) error {
	v, err := ParseStaticLease(string(b))
	if err != nil {
		return fieldErr("dhcp-static", string(b), "%v", err)
	}
	*l = v
	return nil
}

// MarshalText prints MAC=IP.
func (l StaticLease) MarshalText() ([]byte, error) { return []byte(l.String()), nil }

// validateNames checks host names, records, static leases, the gateway's
// MAC and the log settings.
func (c *Config) validateNames() error {
	for _, n := range c.HostNames {
		if !validDNSName(n) {
			return fieldErr("host-name", n, "not a valid DNS name")
		}
	}
	for _, r := range c.DNSRecords {
		if !validDNSName(r.Name) || !r.IP.IsValid() {
			return fieldErr("dns-record", r, "want NAME=IP")
		}
	}
	ips, macs := map[netip.Addr]bool{}, map[string]bool{}
	for _, l := range c.DHCPStatic {
		switch {
		case len(l.MAC) != 6 || l.MAC[0]&1 != 0:
			return fieldErr("dhcp-static", l, "not a unicast Ethernet address")
		case !c.CIDR.Contains(l.IP) || l.IP == c.CIDR.Addr() || l.IP == broadcast(c.CIDR):
			return fieldErr("dhcp-static", l, "not a guest address of --cidr %s", c.CIDR)
		case l.IP == c.Gateway || l.IP == c.DNSAddress:
			return fieldErr("dhcp-static", l, "is slipway's own address")
		case ips[l.IP] || macs[l.MAC.String()]:
			return fieldErr("dhcp-static", l, "address or MAC given twice")
		}
		ips[l.IP], macs[l.MAC.String()] = true, true
	}
	if c.GatewayMAC != "" {
		m, err := net.ParseMAC(c.GatewayMAC)
		if err != nil || len(m) != 6 || m[0]&1 != 0 {
			return fieldErr("gateway-mac", c.GatewayMAC, "not a unicast Ethernet address")
		}
	}
	switch c.LogFormat {
	case "", "text", "json":
	default:
		return fieldErr("log-format", c.LogFormat, "must be text or json")
	}
	return nil
}
