package network

import (
	"net"
	"net/netip"
)

// services runs DHCP and DNS on the stack's addresses.
type services struct{}

func startServices(n *Network) (*services, error) { return &services{}, nil }

func (s *services) close() {}

// Reserve pins a DHCP address to a MAC (the namespace of `slipway run`).
func (n *Network) Reserve(mac net.HardwareAddr, addr netip.Addr) error { return nil }

// SearchDomains is the DNS search list the guests get.
func (n *Network) SearchDomains() []string { return n.cfg.DNSSearch }
