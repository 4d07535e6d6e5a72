package frame

import (
	"encoding/binary"
	"net"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/slipway-net/slipway/link"
)

// The headers of every frame slipway writes itself. Each Put function
// writes its header at the start of b and returns the rest of b, where
// what it carries goes.

// PutEth writes an Ethernet header from src to dst.
func PutEth(b []byte, dst, src [6]byte, etherType tcpip.NetworkProtocolNumber) []byte {
	copy(b[0:6], dst[:])
	copy(b[6:12], src[:])
	binary.BigEndian.PutUint16(b[12:], uint16(etherType))
	return b[header.EthernetMinimumSize:]
}

// PutIPv4 writes a 20-byte IPv4 header, checksum included, for payloadLen
// bytes of protocol proto.
func PutIPv4(b []byte, proto tcpip.TransportProtocolNumber, ttl uint8, src, dst netip.Addr, payloadLen int) []byte {
	ip := header.IPv4(b[:header.IPv4MinimumSize])
	ip.Encode(&header.IPv4Fields{
		TotalLength: uint16(header.IPv4MinimumSize + payloadLen),
		TTL:         ttl,
		Protocol:    uint8(proto),
		SrcAddr:     tcpip.AddrFrom4(src.As4()),
		DstAddr:     tcpip.AddrFrom4(dst.As4()),
	})
	ip.SetChecksum(^ip.CalculateChecksum())
	return b[header.IPv4MinimumSize:]
}

// PutIPv6 writes a 40-byte IPv6 header for payloadLen bytes of protocol
// next.
func PutIPv6(b []byte, next tcpip.TransportProtocolNumber, hopLimit uint8, src, dst netip.Addr, payloadLen int) []byte {
	header.IPv6(b[:header.IPv6MinimumSize]).Encode(&header.IPv6Fields{
		PayloadLength:     uint16(payloadLen),
		TransportProtocol: next,
		HopLimit:          hopLimit,
		SrcAddr:           tcpip.AddrFrom16(src.As16()),
		DstAddr:           tcpip.AddrFrom16(dst.As16()),
	})
	return b[header.IPv6MinimumSize:]
}

// SetICMPChecksum fills the checksum of an ICMP (IPv4) or ICMPv6 message
// (which covers a pseudo-header of src and dst); msg's checksum field is
// overwritten.
func SetICMPChecksum(msg []byte, src, dst netip.Addr) {
	binary.BigEndian.PutUint16(msg[2:], 0)
	binary.BigEndian.PutUint16(msg[2:], ^ICMPSum(msg, src, dst))
}

// ICMPSum is the one's complement sum an ICMP message's checksum is made
// of: over the message alone for IPv4, with the pseudo-header for ICMPv6.
// A message whose checksum is right sums to 0xffff.
func ICMPSum(msg []byte, src, dst netip.Addr) uint16 {
	var sum uint16
	if src.Is6() {
		sum = header.PseudoHeaderChecksum(header.ICMPv6ProtocolNumber, tcpip.AddrFrom16(src.As16()), tcpip.AddrFrom16(dst.As16()), uint16(len(msg)))
	}
	return checksum.Checksum(msg, sum)
}

// Frames for tests and fuzz seed corpora: complete, valid frames with the
// virtio-net header room in front (link's layout), built with the same
// Put functions.

// Broadcast is the Ethernet broadcast address (a new slice each time: the
// callers own it).
func Broadcast() net.HardwareAddr { return net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff} }

func mac(m net.HardwareAddr) (a [6]byte) {
	copy(a[:], m)
	return a
}

// Eth returns header room + an Ethernet header + payload.
func Eth(dst, src net.HardwareAddr, etherType uint16, payload []byte) []byte {
	b := make([]byte, link.VnetHdrLen+link.EthHdrLen+len(payload))
	copy(PutEth(b[link.VnetHdrLen:], mac(dst), mac(src), tcpip.NetworkProtocolNumber(etherType)), payload)
	return b
}

// ARPRequest asks who has target.
func ARPRequest(srcMAC net.HardwareAddr, src, target netip.Addr) []byte {
	p := make([]byte, header.ARPSize)
	a := header.ARP(p)
	a.SetIPv4OverEthernet()
	a.SetOp(header.ARPRequest)
	copy(a.HardwareAddressSender(), srcMAC)
	copy(a.ProtocolAddressSender(), src.AsSlice())
	copy(a.ProtocolAddressTarget(), target.AsSlice())
	return Eth(Broadcast(), srcMAC, uint16(header.ARPProtocolNumber), p)
}

// IPv4 wraps an L4 payload in a valid IPv4 header.
func IPv4(proto uint8, src, dst netip.Addr, l4 []byte) []byte {
	ip := make([]byte, header.IPv4MinimumSize+len(l4))
	copy(PutIPv4(ip, tcpip.TransportProtocolNumber(proto), 64, src, dst, len(l4)), l4)
	return ip
}

// IPv6 wraps a payload in an IPv6 header with the given next header.
func IPv6(next uint8, src, dst netip.Addr, payload []byte) []byte {
	ip := make([]byte, header.IPv6MinimumSize+len(payload))
	copy(PutIPv6(ip, tcpip.TransportProtocolNumber(next), 255, src, dst, len(payload)), payload)
	return ip
}

// l4Sum is the TCP or UDP checksum of l4 between src and dst.
func l4Sum(proto tcpip.TransportProtocolNumber, src, dst netip.Addr, l4 []byte) uint16 {
	sum := header.PseudoHeaderChecksum(proto, tcpip.AddrFromSlice(src.AsSlice()), tcpip.AddrFromSlice(dst.AsSlice()), uint16(len(l4)))
	return ^checksum.Checksum(l4, sum)
}

// udp is a UDP datagram from src to dst with a valid checksum.
func udp(src, dst netip.AddrPort, payload []byte) []byte {
	l4 := make([]byte, header.UDPMinimumSize+len(payload))
	u := header.UDP(l4)
	u.Encode(&header.UDPFields{SrcPort: src.Port(), DstPort: dst.Port(), Length: uint16(len(l4))})
	copy(l4[header.UDPMinimumSize:], payload)
	u.SetChecksum(l4Sum(header.UDPProtocolNumber, src.Addr(), dst.Addr(), l4))
	return l4
}

// UDP4 is a complete UDP/IPv4 frame with a valid checksum.
func UDP4(dstMAC, srcMAC net.HardwareAddr, src, dst netip.AddrPort, payload []byte) []byte {
	return Eth(dstMAC, srcMAC, uint16(header.IPv4ProtocolNumber), IPv4(uint8(header.UDPProtocolNumber), src.Addr(), dst.Addr(), udp(src, dst, payload)))
}

// UDP6 is a complete UDP/IPv6 frame with a valid checksum.
func UDP6(dstMAC, srcMAC net.HardwareAddr, src, dst netip.AddrPort, payload []byte) []byte {
	return Eth(dstMAC, srcMAC, uint16(header.IPv6ProtocolNumber), IPv6(uint8(header.UDPProtocolNumber), src.Addr(), dst.Addr(), udp(src, dst, payload)))
}

// TCP4 is a TCP/IPv4 segment with the given flags and a valid checksum.
func TCP4(dstMAC, srcMAC net.HardwareAddr, src, dst netip.AddrPort, flags header.TCPFlags, seq uint32, payload []byte) []byte {
	l4 := make([]byte, header.TCPMinimumSize+len(payload))
	tcp := header.TCP(l4)
	tcp.Encode(&header.TCPFields{SrcPort: src.Port(), DstPort: dst.Port(), SeqNum: seq, DataOffset: header.TCPMinimumSize, Flags: flags, WindowSize: 65535})
	copy(l4[header.TCPMinimumSize:], payload)
	tcp.SetChecksum(l4Sum(header.TCPProtocolNumber, src.Addr(), dst.Addr(), l4))
	return Eth(dstMAC, srcMAC, uint16(header.IPv4ProtocolNumber), IPv4(uint8(header.TCPProtocolNumber), src.Addr(), dst.Addr(), l4))
}

// Echo4 is an ICMP echo request.
func Echo4(dstMAC, srcMAC net.HardwareAddr, src, dst netip.Addr, id, seq uint16, payload []byte) []byte {
	m := make([]byte, header.ICMPv4MinimumSize+len(payload))
	m[0] = uint8(header.ICMPv4Echo)
	binary.BigEndian.PutUint16(m[4:], id)
	binary.BigEndian.PutUint16(m[6:], seq)
	copy(m[header.ICMPv4MinimumSize:], payload)
	SetICMPChecksum(m, src, dst)
	return Eth(dstMAC, srcMAC, uint16(header.IPv4ProtocolNumber), IPv4(uint8(header.ICMPv4ProtocolNumber), src, dst, m))
}

// ICMPv6 is an ICMPv6 message of type typ with body, checksummed, in an
// IPv6 frame.
func ICMPv6(dstMAC, srcMAC net.HardwareAddr, src, dst netip.Addr, typ uint8, body []byte) []byte {
	m := make([]byte, 4+len(body))
	m[0] = typ
	copy(m[4:], body)
	SetICMPChecksum(m, src, dst)
	return Eth(dstMAC, srcMAC, uint16(header.IPv6ProtocolNumber), IPv6(uint8(header.ICMPv6ProtocolNumber), src, dst, m))
}
