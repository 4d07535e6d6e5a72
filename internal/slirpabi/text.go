package slirpabi

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// maxSettingsText bounds the config text the process shape's shim sends.
const maxSettingsText = 64 << 10

// ParseSettings reads the settings as the shim of the process shape
// writes them: "key=value" lines, keys named as SlirpConfig's fields,
// vdnssearch repeated. Unknown keys are errors (a shim and server of
// different builds).
func ParseSettings(text string) (Settings, error) {
	var s Settings
	if len(text) > maxSettingsText {
		return s, fmt.Errorf("settings: %d bytes", len(text))
	}
	for _, line := range strings.Split(text, "\n") {
		if line == "" {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return s, fmt.Errorf("settings: line %q has no '='", line)
		}
		if err := s.set(k, v); err != nil {
			return s, fmt.Errorf("settings: %s=%q: %w", k, v, err)
		}
	}
	return s, nil
}

func (s *Settings) set(k, v string) error {
	num := func(dst *int) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 1<<20 {
			return fmt.Errorf("not a small number")
		}
		*dst = n
		return nil
	}
	flag := func(dst *bool) error {
		var n int
		if err := num(&n); err != nil {
			return err
		}
		*dst = n != 0
		return nil
	}
	addr := func(dst *netip.Addr) error {
		a, err := netip.ParseAddr(v)
		if err != nil {
			return err
		}
		*dst = a
		return nil
	}
	switch k {
	case "version":
		return num(&s.Version)
	case "restricted":
		return flag(&s.Restricted)
	case "in_enabled":
		return flag(&s.IPv4)
	case "in6_enabled":
		return flag(&s.IPv6)
	case "vprefix_len":
		return num(&s.Prefix6Len)
	case "if_mtu":
		return num(&s.MTU)
	case "if_mru":
		return num(&s.MRU)
	case "disable_host_loopback":
		return flag(&s.DisableHostLoopback)
	case "enable_emu":
		return flag(&s.EnableEmu)
	case "disable_dns":
		return flag(&s.DisableDNS)
	case "disable_dhcp":
		return flag(&s.DisableDHCP)
	case "vnetwork":
		return addr(&s.Network)
	case "vnetmask":
		return addr(&s.Netmask)
	case "vhost":
		return addr(&s.Host)
	case "vdhcp_start":
		return addr(&s.DHCPStart)
	case "vnameserver":
		return addr(&s.Nameserver)
	case "vprefix_addr6":
		return addr(&s.Prefix6)
	case "vhost6":
		return addr(&s.Host6)
	case "vnameserver6":
		return addr(&s.Nameserver6)
	case "outbound_addr":
		return addr(&s.OutboundAddr)
	case "outbound_addr6":
		return addr(&s.OutboundAddr6)
	case "vhostname":
		s.Hostname = v
	case "tftp_server_name":
		s.TFTPServerName = v
	case "tftp_path":
		s.TFTPPath = v
	case "bootfile":
		s.Bootfile = v
	case "vdomainname":
		s.Domain = v
	case "vdnssearch":
		if len(s.DNSSearch) < 64 {
			s.DNSSearch = append(s.DNSSearch, v)
		}
	default:
		return fmt.Errorf("unknown key")
	}
	return nil
}
