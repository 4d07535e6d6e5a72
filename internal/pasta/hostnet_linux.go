package pasta

import (
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/slipway-net/slipway/network"
)

// ReadHostNet reads it with netlink, and /etc/resolv.conf; ifname, if
// set, names the interface (pasta's --interface). A family without a
// default route is left zero.
func ReadHostNet(ifname string) (HostNet, error) {
	var h HostNet
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		routes, err := netlink.RouteListFiltered(fam, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
		if err != nil {
			return h, fmt.Errorf("read the host's routes: %w", err)
		}
		for _, r := range routes {
			if r.Dst != nil && !isDefault(r.Dst.Mask) || r.Gw == nil {
				continue
			}
			l, err := netlink.LinkByIndex(r.LinkIndex)
			if err != nil {
				continue
			}
			name := l.Attrs().Name
			if ifname != "" && name != ifname {
				continue
			}
			addr, ok := globalAddr(l, fam)
			if !ok {
				continue
			}
			gw, _ := netip.AddrFromSlice(r.Gw)
			if fam == netlink.FAMILY_V4 {
				h.Addr4, h.Gw4 = addr, gw.Unmap()
			} else {
				h.Addr6, h.Gw6 = addr, gw
			}
			if h.IfName == "" {
				h.IfName = name
			}
			break
		}
	}
	// An unreadable resolv.conf names none, as for pasta.
	for _, ns := range network.ReadResolv().Servers {
		h.Resolvers = append(h.Resolvers, ns.Addr().Unmap().WithZone(""))
	}
	return h, nil
}

// isDefault reports whether a route's mask is /0: a default route.
func isDefault(mask []byte) bool {
	for _, b := range mask {
		if b != 0 {
			return false
		}
	}
	return true
}

// globalAddr is the interface's first global, non-temporary address of
// the family.
func globalAddr(l netlink.Link, fam int) (netip.Prefix, bool) {
	as, err := netlink.AddrList(l, fam)
	if err != nil {
		return netip.Prefix{}, false
	}
	for _, a := range as {
		if a.Scope != unix.RT_SCOPE_UNIVERSE || a.Flags&(unix.IFA_F_TEMPORARY|unix.IFA_F_DEPRECATED|unix.IFA_F_TENTATIVE) != 0 {
			continue
		}
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		bits, _ := a.Mask.Size()
		return netip.PrefixFrom(ip.Unmap(), bits), true
	}
	return netip.Prefix{}, false
}
