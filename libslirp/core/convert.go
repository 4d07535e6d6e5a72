package main

/*
#include "core.h"
*/
import "C"

import (
	"net/netip"
	"unsafe"

	"github.com/slipway-net/slipway/internal/slirpabi"
)

// maxSearch bounds the DNS search list read from the host (libslirp
// itself fits it into one DHCP option).
const maxSearch = 64

// settings copies the shim's flat config into Go values; nothing of C is
// kept.
func settings(c *C.struct_slipway_cfg) slirpabi.Settings {
	s := slirpabi.Settings{
		Version:             int(c.version),
		Restricted:          c.restricted != 0,
		IPv4:                c.in_enabled != 0,
		Network:             addr4(&c.vnetwork),
		Netmask:             addr4(&c.vnetmask),
		Host:                addr4(&c.vhost),
		DHCPStart:           addr4(&c.vdhcp_start),
		Nameserver:          addr4(&c.vnameserver),
		IPv6:                c.in6_enabled != 0,
		Prefix6:             addr16(&c.vprefix_addr6),
		Prefix6Len:          int(c.vprefix_len),
		Host6:               addr16(&c.vhost6),
		Nameserver6:         addr16(&c.vnameserver6),
		Hostname:            str(c.vhostname),
		TFTPServerName:      str(c.tftp_server_name),
		TFTPPath:            str(c.tftp_path),
		Bootfile:            str(c.bootfile),
		Domain:              str(c.vdomainname),
		MTU:                 int(c.if_mtu),
		MRU:                 int(c.if_mru),
		DisableHostLoopback: c.disable_host_loopback != 0,
		EnableEmu:           c.enable_emu != 0,
		DisableDNS:          c.disable_dns != 0,
		DisableDHCP:         c.disable_dhcp != 0,
	}
	if c.has_outbound_addr != 0 {
		s.OutboundAddr = addr4(&c.outbound_addr)
	}
	if c.has_outbound_addr6 != 0 {
		s.OutboundAddr6 = addr16(&c.outbound_addr6)
	}
	if c.vdnssearch != nil {
		list := unsafe.Slice(c.vdnssearch, maxSearch+1)
		for _, p := range list {
			if p == nil || len(s.DNSSearch) == maxSearch {
				break
			}
			s.DNSSearch = append(s.DNSSearch, C.GoString(p))
		}
	}
	return s
}

func addr4(b *[4]C.uint8_t) netip.Addr {
	return netip.AddrFrom4(*(*[4]byte)(unsafe.Pointer(b)))
}

func addr16(b *[16]C.uint8_t) netip.Addr {
	return netip.AddrFrom16(*(*[16]byte)(unsafe.Pointer(b)))
}

func str(p *C.char) string {
	if p == nil {
		return ""
	}
	return C.GoString(p)
}
