package nsrun

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
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
	mac, err := net.ParseMAC(spec.MAC)
	if err != nil {
		return fmt.Errorf("MAC %q: %w", spec.MAC, err)
	}
	if err := netlink.LinkSetHardwareAddr(eth, mac); err != nil {
		return fmt.Errorf("set %s MAC: %w", spec.IfName, err)
	}
	// The kernel queues frames for slipway here while its reader is busy;
	// 1000 (the default) overflowed under thousands of flows and the
	// drops came back as retransmission timeouts.
	if err := netlink.LinkSetTxQLen(eth, tapQueueLen); err != nil {
		return fmt.Errorf("set %s queue length: %w", spec.IfName, err)
	}
	if err := netlink.LinkSetMTU(eth, spec.MTU); err != nil {
		return fmt.Errorf("set %s MTU %d: %w", spec.IfName, spec.MTU, err)
	}
	if spec.Addr.IsValid() {
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: spec.Addr.Addr().AsSlice(), Mask: net.CIDRMask(spec.Addr.Bits(), 32)}}
		if err := netlink.AddrAdd(eth, addr); err != nil {
			return fmt.Errorf("add address %s: %w", spec.Addr, err)
		}
	}
	// slipway is the only other node on this link: duplicate address
	// detection would only delay the SLAAC address by a second or two.
	for _, f := range []string{"/proc/sys/net/ipv6/conf/" + spec.IfName + "/accept_dad", "/proc/sys/net/ipv6/conf/" + spec.IfName + "/router_solicitation_delay"} {
		os.WriteFile(f, []byte("0"), 0o644)
	}
	if err := netlink.LinkSetUp(eth); err != nil {
		return fmt.Errorf("bring %s up: %w", spec.IfName, err)
	}
	if !spec.Addr.IsValid() {
		return nil
	}
	route := &netlink.Route{LinkIndex: eth.Attrs().Index, Gw: spec.Gateway.AsSlice()}
	if err := netlink.RouteAdd(route); err != nil {
		return fmt.Errorf("default route via %s: %w", spec.Gateway, err)
	}
	return nil
}

// configure6 gives the (configured, up) interface a static IPv6 address
// without duplicate address detection and a default route via gw, as
// pasta copies the host's; an invalid addr does nothing.
func configure6(ifname string, addr netip.Prefix, gw netip.Addr) error {
	if !addr.IsValid() {
		return nil
	}
	eth, err := netlink.LinkByName(ifname)
	if err != nil {
		return fmt.Errorf("find %s: %w", ifname, err)
	}
	a := &netlink.Addr{IPNet: &net.IPNet{IP: addr.Addr().AsSlice(), Mask: net.CIDRMask(addr.Bits(), 128)}, Flags: unix.IFA_F_NODAD}
	if err := netlink.AddrAdd(eth, a); err != nil {
		return fmt.Errorf("add address %s: %w", addr, err)
	}
	// The address and route are static, as pasta's: slipway's router
	// advertisements must not add a second address and default route.
	os.WriteFile("/proc/sys/net/ipv6/conf/"+ifname+"/accept_ra", []byte("0"), 0o644)
	if !gw.IsValid() {
		return nil
	}
	route := &netlink.Route{LinkIndex: eth.Attrs().Index, Gw: gw.AsSlice()}
	if err := netlink.RouteAdd(route); err != nil {
		return fmt.Errorf("default route via %s: %w", gw, err)
	}
	return nil
}

// tapQueueLen is the TAP's transmit queue length (frames towards slipway).
const tapQueueLen = 10000

// ipv6Wait bounds how long the command waits for its IPv6 address; a
// network without IPv6 (or a slow answer) must not hold it up for long.
const ipv6Wait = 3 * time.Second

// waitForIPv6 waits until the interface has a global IPv6 address and a
// default IPv6 route (from slipway's router advertisement), or until
// timeout.
func waitForIPv6(ifname string, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if hasIPv6(ifname) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func hasIPv6(ifname string) bool {
	l, err := netlink.LinkByName(ifname)
	if err != nil {
		return false
	}
	addrs, err := netlink.AddrList(l, netlink.FAMILY_V6)
	if err != nil {
		return false
	}
	global := false
	for _, a := range addrs {
		if a.Scope == int(netlink.SCOPE_UNIVERSE) && a.Flags&0x40 == 0 { // not IFA_F_TENTATIVE
			global = true
		}
	}
	if !global {
		return false
	}
	routes, err := netlink.RouteList(l, netlink.FAMILY_V6)
	if err != nil {
		return false
	}
	for _, r := range routes {
		if r.Dst == nil || r.Dst.IP.IsUnspecified() {
			return true
		}
	}
	return false
}
