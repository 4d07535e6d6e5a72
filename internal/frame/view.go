// Package frame reads and writes the Ethernet frames slipway handles itself.
// A guest's frame is parsed once, as the switch takes it, into a View that
// every later stage reads (the switch's router-advertisement guard, the
// stack's address filter, the interceptors, the stack's validation); and
// the headers of the frames slipway builds itself (router advertisements,
// ICMP answers, test frames) are written by one set of builders.
package frame

import (
	"encoding/binary"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/slipway-net/slipway/link"
)

// Problem says why a frame's structure is unusable; the zero Problem means
// it parsed.
type Problem uint8

// Problems Parse finds.
const (
	OK          Problem = iota
	Runt                // shorter than an Ethernet header
	UnknownType         // not IPv4, IPv6 or ARP
	BadIPHeader         // truncated or inconsistent IP (or ARP) header
	BadL4Header         // truncated or inconsistent TCP or UDP header
	// BadTCPFlags: a SYN with FIN or RST. No stack sends one; scanners
	// and evasion tricks do, and Linux drops them. gVisor took a SYN-FIN
	// for a SYN and slipway dialled the host for it.
	BadTCPFlags
)

// maxExtHeaders bounds the IPv6 extension headers walked: a longer chain
// is hostile (see View.LongChain).
const maxExtHeaders = 8

// View is one parsed guest frame. Its slices point into the frame.
type View struct {
	Hdr []byte // the virtio-net header
	Eth []byte // the Ethernet frame

	// EtherType is the frame's network protocol.
	EtherType tcpip.NetworkProtocolNumber
	// L3 is the network packet: an IP packet cut to the length its header
	// gives (trailing padding dropped), or the ARP packet.
	L3 []byte
	// IPHdrLen is the IP header's length: IHL for IPv4, the 40-byte fixed
	// header for IPv6.
	IPHdrLen int
	// Src and Dst are the IP addresses.
	Src, Dst netip.Addr
	// Proto is the upper-layer protocol, after any IPv6 extension headers.
	Proto tcpip.TransportProtocolNumber
	// L4Off is where the upper-layer header starts in L3, or 0 when there
	// is none to read: a later fragment, a truncated or too long chain of
	// extension headers.
	L4Off int
	// Fragment is set for any fragment of a datagram, the first included.
	Fragment bool
	// LongChain is set for an IPv6 packet with more extension headers
	// than any sender needs.
	LongChain bool
	// Bad is why the frame cannot be used, OK if it can.
	Bad Problem
}

// Parse reads a frame (its virtio-net header and the Ethernet frame). It
// never fails: what it found, and what is wrong, are in the View.
func Parse(hdr, eth []byte) View {
	v := View{Hdr: hdr, Eth: eth}
	if len(eth) < header.EthernetMinimumSize {
		v.Bad = Runt
		return v
	}
	v.EtherType = header.Ethernet(eth).Type()
	l3 := eth[header.EthernetMinimumSize:]
	switch v.EtherType {
	case header.ARPProtocolNumber:
		v.L3 = l3
		if !header.ARP(l3).IsValid() {
			v.Bad = BadIPHeader
		}
	case header.IPv4ProtocolNumber:
		v.parseIPv4(l3)
	case header.IPv6ProtocolNumber:
		v.parseIPv6(l3)
	default:
		v.Bad = UnknownType
	}
	return v
}

func (v *View) parseIPv4(l3 []byte) {
	if len(l3) < header.IPv4MinimumSize {
		v.Bad = BadIPHeader
		return
	}
	ip := header.IPv4(l3)
	hl, total := int(ip.HeaderLength()), int(ip.TotalLength())
	if l3[0]>>4 != 4 || hl < header.IPv4MinimumSize || hl > total || total > len(l3) {
		v.Bad = BadIPHeader
		return
	}
	v.L3, v.IPHdrLen = l3[:total], hl
	v.Src, v.Dst = netip.AddrFrom4(ip.SourceAddress().As4()), netip.AddrFrom4(ip.DestinationAddress().As4())
	v.Proto = ip.TransportProtocol()
	v.Fragment = ip.More() || ip.FragmentOffset() != 0
	if ip.FragmentOffset() == 0 {
		v.L4Off = hl
		v.checkL4()
	}
}

func (v *View) parseIPv6(l3 []byte) {
	if len(l3) < header.IPv6MinimumSize {
		v.Bad = BadIPHeader
		return
	}
	ip := header.IPv6(l3)
	total := header.IPv6MinimumSize + int(ip.PayloadLength())
	if l3[0]>>4 != 6 || total > len(l3) {
		v.Bad = BadIPHeader
		return
	}
	v.L3, v.IPHdrLen = l3[:total], header.IPv6MinimumSize
	v.Src, v.Dst = netip.AddrFrom16(ip.SourceAddress().As16()), netip.AddrFrom16(ip.DestinationAddress().As16())
	v.walkExtHeaders(ip.NextHeader())
}

// walkExtHeaders follows IPv6 extension headers from the fixed header to
// the upper layer. Only the first fragment carries the upper-layer header;
// a chain that is truncated leaves the upper layer unread (the stack then
// drops the packet), and one longer than maxExtHeaders is marked.
func (v *View) walkExtHeaders(next uint8) {
	p := v.L3
	off := header.IPv6MinimumSize
	for hops := 0; ; hops++ {
		if hops == maxExtHeaders {
			v.LongChain = true
			return
		}
		switch header.IPv6ExtensionHeaderIdentifier(next) {
		case header.IPv6HopByHopOptionsExtHdrIdentifier, header.IPv6RoutingExtHdrIdentifier, header.IPv6DestinationOptionsExtHdrIdentifier:
			if off+2 > len(p) {
				return
			}
			next = p[off]
			off += (int(p[off+1]) + 1) * 8
		case header.IPv6FragmentExtHdrIdentifier:
			if off+header.IPv6FragmentExtHdrLength > len(p) {
				return
			}
			v.Fragment = true
			if binary.BigEndian.Uint16(p[off+2:])&0xfff8 != 0 {
				v.Proto = tcpip.TransportProtocolNumber(p[off])
				return // a later fragment: no upper-layer header here
			}
			next = p[off]
			off += header.IPv6FragmentExtHdrLength
		case header.IPv6ExperimentExtHdrIdentifier:
			// gVisor walks this experimental header (fixed length), so
			// the view must too: an NDP message behind it reaches the
			// stack's NDP all the same.
			if off+header.IPv6ExperimentHdrLength > len(p) {
				return
			}
			next = p[off]
			off += header.IPv6ExperimentHdrLength
		case header.IPv6NoNextHeaderIdentifier:
			return // nothing follows
		default:
			v.Proto = tcpip.TransportProtocolNumber(next)
			if off <= len(p) {
				v.L4Off = off
				v.checkL4()
			}
			return
		}
	}
}

// checkL4 checks the TCP or UDP header's own lengths (the checksum is the
// stack's to verify). Fragments are checked once reassembled, by the
// stack.
func (v *View) checkL4() {
	if v.Fragment {
		return
	}
	l4 := v.L3[v.L4Off:]
	switch v.Proto {
	case header.TCPProtocolNumber:
		if len(l4) < header.TCPMinimumSize {
			v.Bad = BadL4Header
			return
		}
		if off := int(header.TCP(l4).DataOffset()); off < header.TCPMinimumSize || off > len(l4) {
			v.Bad = BadL4Header
			return
		}
		if f := header.TCP(l4).Flags(); f&header.TCPFlagSyn != 0 && f&(header.TCPFlagFin|header.TCPFlagRst) != 0 {
			v.Bad = BadTCPFlags
		}
	case header.UDPProtocolNumber:
		if len(l4) < header.UDPMinimumSize {
			v.Bad = BadL4Header
			return
		}
		if n := int(header.UDP(l4).Length()); n < header.UDPMinimumSize || n > len(l4) {
			v.Bad = BadL4Header
		}
	}
}

// L4 is the upper-layer message (header and payload), nil when there is
// none to read (see L4Off).
func (v *View) L4() []byte {
	if v.L4Off == 0 {
		return nil
	}
	return v.L3[v.L4Off:]
}

// Trusted reports whether the frame's header vouches for its checksum: the
// peer left it partial for offload (NEEDS_CSUM) or checked it already
// (DATA_VALID).
func (v *View) Trusted() bool {
	return len(v.Hdr) == link.VnetHdrLen && v.Hdr[0]&(link.FlagNeedsCsum|link.FlagDataValid) != 0
}

// ICMPType is the type of an ICMP or ICMPv6 message, and whether the frame
// holds one (a first fragment has its type too).
func (v *View) ICMPType() (uint8, bool) {
	l4 := v.L4()
	isICMP := v.EtherType == header.IPv4ProtocolNumber && v.Proto == header.ICMPv4ProtocolNumber ||
		v.EtherType == header.IPv6ProtocolNumber && v.Proto == header.ICMPv6ProtocolNumber
	if !isICMP || len(l4) == 0 {
		return 0, false
	}
	return l4[0], true
}

// IsRouterMessage reports an IPv6 router advertisement or redirect, which
// only slipway may send on its network (the RA guard drops a guest's), or
// an extension header chain so long that it could hide one.
func (v *View) IsRouterMessage() bool {
	if v.EtherType != header.IPv6ProtocolNumber {
		return false
	}
	if v.LongChain {
		return true
	}
	t, ok := v.ICMPType()
	return ok && (t == uint8(header.ICMPv6RouterAdvert) || t == uint8(header.ICMPv6RedirectMsg))
}
