package netstack

import (
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/slipway-net/slipway/link"
)

// validateFrame checks one inbound frame (its virtio-net header and the
// Ethernet frame) before it
// reaches the stack, which trusts checksums because the endpoint claims RX
// checksum offload. It returns the network protocol to deliver the frame as,
// or false after counting why it was dropped.
//
// Frames whose virtio-net header says the checksum is partial or already
// validated (a kernel TAP peer, an offloading VMM) skip the L4 checksum: it
// was produced by the peer's own stack and is completed by nobody.
func (c *DropCounters) validateFrame(hdr, frame []byte) (tcpip.NetworkProtocolNumber, bool) {
	if len(frame) < header.EthernetMinimumSize {
		c.Runt.Add(1)
		return 0, false
	}
	trusted := hdr[0]&(link.FlagNeedsCsum|link.FlagDataValid) != 0
	proto := header.Ethernet(frame).Type()
	l3 := frame[header.EthernetMinimumSize:]
	switch proto {
	case header.ARPProtocolNumber:
		if !header.ARP(l3).IsValid() {
			c.BadIPHeader.Add(1)
			return 0, false
		}
		return proto, true
	case header.IPv4ProtocolNumber:
		return proto, c.validateIPv4(l3, trusted)
	case header.IPv6ProtocolNumber:
		return proto, c.validateIPv6(l3, trusted)
	default:
		c.UnknownType.Add(1)
		return 0, false
	}
}

func (c *DropCounters) validateIPv4(l3 []byte, trusted bool) bool {
	if len(l3) < header.IPv4MinimumSize {
		c.BadIPHeader.Add(1)
		return false
	}
	ip := header.IPv4(l3)
	hl := int(ip.HeaderLength())
	total := int(ip.TotalLength())
	if l3[0]>>4 != 4 || hl < header.IPv4MinimumSize || hl > total || total > len(l3) {
		c.BadIPHeader.Add(1)
		return false
	}
	if !ip.IsChecksumValid() {
		c.BadChecksum.Add(1)
		return false
	}
	if ip.More() || ip.FragmentOffset() != 0 {
		// A fragment's L4 checksum covers the whole datagram; the
		// stack reassembles and the transport sees it then.
		return true
	}
	payload := l3[hl:total]
	return c.validateL4(ip.TransportProtocol(), payload, trusted, ip.SourceAddress(), ip.DestinationAddress(), false)
}

func (c *DropCounters) validateIPv6(l3 []byte, trusted bool) bool {
	if len(l3) < header.IPv6MinimumSize {
		c.BadIPHeader.Add(1)
		return false
	}
	ip := header.IPv6(l3)
	total := header.IPv6MinimumSize + int(ip.PayloadLength())
	if l3[0]>>4 != 6 || total > len(l3) {
		c.BadIPHeader.Add(1)
		return false
	}
	// Extension header chains are parsed and checked by the stack.
	return c.validateL4(tcpip.TransportProtocolNumber(ip.NextHeader()), l3[header.IPv6MinimumSize:total], trusted, ip.SourceAddress(), ip.DestinationAddress(), true)
}

func (c *DropCounters) validateL4(proto tcpip.TransportProtocolNumber, payload []byte, trusted bool, src, dst tcpip.Address, v6 bool) bool {
	switch proto {
	case header.TCPProtocolNumber:
		if len(payload) < header.TCPMinimumSize {
			c.BadL4Header.Add(1)
			return false
		}
		off := int(header.TCP(payload).DataOffset())
		if off < header.TCPMinimumSize || off > len(payload) {
			c.BadL4Header.Add(1)
			return false
		}
	case header.UDPProtocolNumber:
		if len(payload) < header.UDPMinimumSize {
			c.BadL4Header.Add(1)
			return false
		}
		u := header.UDP(payload)
		if int(u.Length()) < header.UDPMinimumSize || int(u.Length()) > len(payload) {
			c.BadL4Header.Add(1)
			return false
		}
		payload = payload[:u.Length()]
		if u.Checksum() == 0 && !v6 {
			return true // IPv4 UDP may omit its checksum
		}
	default:
		return true
	}
	if trusted {
		return true
	}
	sum := header.PseudoHeaderChecksum(proto, src, dst, uint16(len(payload)))
	if checksum.Checksum(payload, sum) != 0xffff {
		c.BadChecksum.Add(1)
		return false
	}
	return true
}
