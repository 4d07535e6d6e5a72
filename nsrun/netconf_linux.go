package nsrun

import (
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
)

// configure sets up lo and the TAP interface in the current namespace.
func configure(spec Spec) error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("find lo: %w", err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return fmt.Errorf("bring lo up: %w", err)
	}
	eth, err := netlink.LinkByName(spec.IfName)
	if err != nil {
		return fmt.Errorf("find %s: %w", spec.IfName, err)
	}
	mac, err := parseMAC(spec.MAC)
	if err != nil {
		return fmt.Errorf("MAC %q: %w", spec.MAC, err)
	}
	if err := netlink.LinkSetHardwareAddr(eth, mac); err != nil {
		return fmt.Errorf("set %s MAC: %w", spec.IfName, err)
	}
	if err := netlink.LinkSetMTU(eth, spec.MTU); err != nil {
		return fmt.Errorf("set %s MTU %d: %w", spec.IfName, spec.MTU, err)
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: spec.Addr.Addr().AsSlice(), Mask: net.CIDRMask(spec.Addr.Bits(), 32)}}
	if err := netlink.AddrAdd(eth, addr); err != nil {
		return fmt.Errorf("add address %s: %w", spec.Addr, err)
	}
	if err := netlink.LinkSetUp(eth); err != nil {
		return fmt.Errorf("bring %s up: %w", spec.IfName, err)
	}
	route := &netlink.Route{LinkIndex: eth.Attrs().Index, Gw: spec.Gateway.AsSlice()}
	if err := netlink.RouteAdd(route); err != nil {
		return fmt.Errorf("default route via %s: %w", spec.Gateway, err)
	}
	return nil
}
