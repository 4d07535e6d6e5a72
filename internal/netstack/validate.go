package netstack

import (
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/slipway-net/slipway/internal/frame"
)

// validate checks one parsed inbound frame before it reaches the stack,
// which trusts checksums because the endpoint claims RX checksum offload.
// It reports false after counting, under exactly one reason, why the frame
// was dropped.
//
// Frames whose virtio-net header says the checksum is partial or already
// validated (a kernel TAP peer, an offloading VMM) skip the L4 checksum: it
// was produced by the peer's own stack and is completed by nobody.
func (c *DropCounters) validate(v *frame.View) bool {
	switch v.Bad {
	case frame.Runt:
		c.Runt.Add(1)
		return false
	case frame.UnknownType:
		c.UnknownType.Add(1)
		return false
	case frame.BadIPHeader:
		c.BadIPHeader.Add(1)
		return false
	case frame.BadL4Header:
		c.BadL4Header.Add(1)
		return false
	case frame.BadTCPFlags:
		c.BadTCPFlags.Add(1)
		return false
	}
	if v.EtherType == header.IPv4ProtocolNumber && !header.IPv4(v.L3).IsChecksumValid() {
		c.BadChecksum.Add(1)
		return false
	}
	// A fragment's L4 checksum covers the whole datagram; the stack
	// reassembles and the transport sees it then.
	if v.Fragment || v.Trusted() || v.L4Off == 0 {
		return true
	}
	l4 := v.L4()
	switch v.Proto {
	case header.TCPProtocolNumber:
	case header.UDPProtocolNumber:
		u := header.UDP(l4)
		if u.Checksum() == 0 && v.EtherType == header.IPv4ProtocolNumber {
			return true // IPv4 UDP may omit its checksum
		}
		l4 = l4[:u.Length()]
	default:
		return true
	}
	src, dst := tcpipAddr(v.Src), tcpipAddr(v.Dst)
	sum := header.PseudoHeaderChecksum(v.Proto, src, dst, uint16(len(l4)))
	if checksum.Checksum(l4, sum) != 0xffff {
		c.BadChecksum.Add(1)
		return false
	}
	return true
}

// tcpipAddr is a as gVisor's type, without the allocation AsSlice makes.
func tcpipAddr(a netip.Addr) tcpip.Address {
	if a.Is4() {
		return tcpip.AddrFrom4(a.As4())
	}
	return tcpip.AddrFrom16(a.As16())
}
