// Package framebuild builds well-formed Ethernet frames (with slipway's
// virtio-net header room in front) for tests and fuzz seed corpora.
package framebuild

import (
	"encoding/binary"
	"net"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/slipway-net/slipway/link"
)

// Broadcast is the Ethernet broadcast address.
var Broadcast = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

func addr(a netip.Addr) tcpip.Address { return tcpip.AddrFromSlice(a.AsSlice()) }

// Eth returns header room + an Ethernet header + payload.
func Eth(dst, src net.HardwareAddr, etherType uint16, payload []byte) []byte {
	b := make([]byte, link.VnetHdrLen+link.EthHdrLen+len(payload))
	f := b[link.VnetHdrLen:]
	copy(f[0:6], dst)
	copy(f[6:12], src)
	binary.BigEndian.PutUint16(f[12:], etherType)
	copy(f[14:], payload)
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
	return Eth(Broadcast, srcMAC, 0x0806, p)
}

// IPv4 wraps an L4 payload in a valid IPv4 header.
func IPv4(proto uint8, src, dst netip.Addr, l4 []byte) []byte {
	ip := make([]byte, header.IPv4MinimumSize+len(l4))
	h := header.IPv4(ip)
	h.Encode(&header.IPv4Fields{TotalLength: uint16(len(ip)), TTL: 64, Protocol: proto, SrcAddr: addr(src), DstAddr: addr(dst)})
	h.SetChecksum(^h.CalculateChecksum())
	copy(ip[header.IPv4MinimumSize:], l4)
	return ip
}

// UDP4 is a complete UDP/IPv4 frame with a valid checksum.
func UDP4(dstMAC, srcMAC net.HardwareAddr, src, dst netip.AddrPort, payload []byte) []byte {
	l4 := make([]byte, header.UDPMinimumSize+len(payload))
	u := header.UDP(l4)
	u.Encode(&header.UDPFields{SrcPort: src.Port(), DstPort: dst.Port(), Length: uint16(len(l4))})
	copy(l4[header.UDPMinimumSize:], payload)
	sum := header.PseudoHeaderChecksum(header.UDPProtocolNumber, addr(src.Addr()), addr(dst.Addr()), uint16(len(l4)))
	u.SetChecksum(^checksum.Checksum(l4, sum))
	return Eth(dstMAC, srcMAC, 0x0800, IPv4(17, src.Addr(), dst.Addr(), l4))
}

// TCP4 is a TCP/IPv4 segment with the given flags and a valid checksum.
func TCP4(dstMAC, srcMAC net.HardwareAddr, src, dst netip.AddrPort, flags header.TCPFlags, seq uint32, payload []byte) []byte {
	l4 := make([]byte, header.TCPMinimumSize+len(payload))
	tcp := header.TCP(l4)
	tcp.Encode(&header.TCPFields{SrcPort: src.Port(), DstPort: dst.Port(), SeqNum: seq, DataOffset: header.TCPMinimumSize, Flags: flags, WindowSize: 65535})
	copy(l4[header.TCPMinimumSize:], payload)
	sum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, addr(src.Addr()), addr(dst.Addr()), uint16(len(l4)))
	tcp.SetChecksum(^checksum.Checksum(l4, sum))
	return Eth(dstMAC, srcMAC, 0x0800, IPv4(6, src.Addr(), dst.Addr(), l4))
}

// Echo4 is an ICMP echo request.
func Echo4(dstMAC, srcMAC net.HardwareAddr, src, dst netip.Addr, id, seq uint16, payload []byte) []byte {
	m := make([]byte, 8+len(payload))
	m[0] = 8
	binary.BigEndian.PutUint16(m[4:], id)
	binary.BigEndian.PutUint16(m[6:], seq)
	copy(m[8:], payload)
	binary.BigEndian.PutUint16(m[2:], ^checksum.Checksum(m, 0))
	return Eth(dstMAC, srcMAC, 0x0800, IPv4(1, src, dst, m))
}

// IPv6 wraps a payload in an IPv6 header with the given next header.
func IPv6(next uint8, src, dst netip.Addr, payload []byte) []byte {
	ip := make([]byte, header.IPv6MinimumSize+len(payload))
	h := header.IPv6(ip)
	h.Encode(&header.IPv6Fields{PayloadLength: uint16(len(payload)), TransportProtocol: tcpip.TransportProtocolNumber(next), HopLimit: 255, SrcAddr: addr(src), DstAddr: addr(dst)})
	copy(ip[header.IPv6MinimumSize:], payload)
	return ip
}

// ICMPv6 is an ICMPv6 message of type typ with body, checksummed, in an
// IPv6 frame.
func ICMPv6(dstMAC, srcMAC net.HardwareAddr, src, dst netip.Addr, typ uint8, body []byte) []byte {
	m := make([]byte, 4+len(body))
	m[0] = typ
	copy(m[4:], body)
	sum := header.PseudoHeaderChecksum(header.ICMPv6ProtocolNumber, addr(src), addr(dst), uint16(len(m)))
	binary.BigEndian.PutUint16(m[2:], ^checksum.Checksum(m, sum))
	return Eth(dstMAC, srcMAC, 0x86dd, IPv6(58, src, dst, m))
}
