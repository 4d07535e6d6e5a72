package frame

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/slipway-net/slipway/link"
)

const (
	nhHopByHop = uint8(header.IPv6HopByHopOptionsExtHdrIdentifier)
	nhFragment = uint8(header.IPv6FragmentExtHdrIdentifier)
	nhDestOpts = uint8(header.IPv6DestinationOptionsExtHdrIdentifier)
	nhICMPv6   = uint8(header.ICMPv6ProtocolNumber)
)

// v6frame builds an Ethernet/IPv6 frame (no virtio-net header) with the
// given extension headers (each: its next-header value, then its bytes)
// ending in an 8-byte ICMPv6 message of type t.
func v6frame(t byte, exts ...[]byte) []byte {
	var payload []byte
	next := nhICMPv6
	if len(exts) > 0 {
		next = exts[0][0]
	}
	for i, e := range exts {
		h := append([]byte(nil), e[1:]...)
		h[0] = nhICMPv6
		if i+1 < len(exts) {
			h[0] = exts[i+1][0]
		}
		payload = append(payload, h...)
	}
	payload = append(payload, t, 0, 0, 0, 0, 0, 0, 0)
	b := IPv6(next, netip.MustParseAddr("fe80::1"), netip.MustParseAddr("ff02::1"), payload)
	f := Eth(net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1}, net.HardwareAddr{2, 0, 0, 0, 0, 1}, uint16(header.IPv6ProtocolNumber), b)
	return f[link.VnetHdrLen:]
}

func parse(eth []byte) View { return Parse(make([]byte, link.VnetHdrLen), eth) }

func TestRouterMessagesRecognised(t *testing.T) {
	hbh := append([]byte{nhHopByHop}, make([]byte, 8)...)
	dst := append([]byte{nhDestOpts}, make([]byte, 8)...)
	firstFrag := append([]byte{nhFragment}, 0, 0, 0, 1, 0, 0, 0, 1)
	laterFrag := append([]byte{nhFragment}, 0, 0, 0x01, 0x00, 0, 0, 0, 1)
	long := make([][]byte, maxExtHeaders+1)
	for i := range long {
		long[i] = dst
	}
	cases := []struct {
		name  string
		frame []byte
		want  bool
	}{
		{"ra", v6frame(134), true},
		{"redirect", v6frame(137), true},
		{"rs", v6frame(133), false},
		{"ns", v6frame(135), false},
		{"echo", v6frame(128), false},
		{"ra behind hop-by-hop", v6frame(134, hbh), true},
		{"ra behind two headers", v6frame(134, hbh, dst), true},
		{"ra in a first fragment", v6frame(134, firstFrag), true},
		{"later fragment", v6frame(134, laterFrag), false},
		{"a chain too long to walk", v6frame(128, long...), true},
		{"truncated", v6frame(134)[:14+40], false},
		{"ipv4", Echo4(Broadcast(), Broadcast(), netip.MustParseAddr("10.0.2.15"), netip.MustParseAddr("10.0.2.2"), 1, 1, nil)[link.VnetHdrLen:], false},
	}
	for _, c := range cases {
		v := parse(c.frame)
		if got := v.IsRouterMessage(); got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, got, c.want)
		}
	}
}

// Every problem Parse reports, from frames that have it.
func TestParseProblems(t *testing.T) {
	g, gw := netip.MustParseAddrPort("10.0.2.15:4000"), netip.MustParseAddrPort("10.0.2.2:80")
	good := TCP4(Broadcast(), Broadcast(), g, gw, header.TCPFlagSyn, 1, nil)[link.VnetHdrLen:]
	ihl := append([]byte(nil), good...)
	ihl[14] = 0x4f // header longer than the packet
	short := append([]byte(nil), good[:14+20+10]...)
	binary.BigEndian.PutUint16(short[14+2:], 30) // IP is consistent, TCP is cut
	udp := UDP4(Broadcast(), Broadcast(), g, gw, []byte("x"))[link.VnetHdrLen:]
	binary.BigEndian.PutUint16(udp[14+20+4:], 200) // UDP length past the packet
	v6 := v6frame(128)
	binary.BigEndian.PutUint16(v6[14+4:], 500) // payload length past the frame
	cases := []struct {
		name  string
		frame []byte
		want  Problem
	}{
		{"good", good, OK},
		{"runt", good[:10], Runt},
		{"vlan", Eth(Broadcast(), Broadcast(), 0x8100, make([]byte, 40))[link.VnetHdrLen:], UnknownType},
		{"ihl past the packet", ihl, BadIPHeader},
		{"tcp header cut", short, BadL4Header},
		{"udp length", udp, BadL4Header},
		{"syn-fin", TCP4(Broadcast(), Broadcast(), g, gw, header.TCPFlagSyn|header.TCPFlagFin, 1, nil)[link.VnetHdrLen:], BadTCPFlags},
		{"syn-rst", TCP4(Broadcast(), Broadcast(), g, gw, header.TCPFlagSyn|header.TCPFlagRst, 1, nil)[link.VnetHdrLen:], BadTCPFlags},
		{"fin-ack", TCP4(Broadcast(), Broadcast(), g, gw, header.TCPFlagFin|header.TCPFlagAck, 1, nil)[link.VnetHdrLen:], OK},
		{"ipv6 payload length", v6, BadIPHeader},
		{"bad arp", Eth(Broadcast(), Broadcast(), 0x0806, make([]byte, 28))[link.VnetHdrLen:], BadIPHeader},
		{"arp", ARPRequest(Broadcast(), g.Addr(), gw.Addr())[link.VnetHdrLen:], OK},
	}
	for _, c := range cases {
		if v := parse(c.frame); v.Bad != c.want {
			t.Errorf("%s: Bad = %d, want %d", c.name, v.Bad, c.want)
		}
	}
}

// gvisorUpper walks an IPv6 packet's extension headers with gVisor's own
// iterator and returns the upper-layer protocol and message, ok false when
// gVisor finds no upper layer to read (malformed, or a later fragment).
func gvisorUpper(ip header.IPv6) (tcpip.TransportProtocolNumber, []byte, bool) {
	payload := buffer.MakeWithData(ip[header.IPv6MinimumSize:])
	it := header.MakeIPv6PayloadIterator(header.IPv6ExtensionHeaderIdentifier(ip.NextHeader()), payload)
	defer it.Release()
	for hops := 0; hops < maxExtHeaders; hops++ {
		h, done, err := it.Next()
		if err != nil || done {
			return 0, nil, false
		}
		switch h := h.(type) {
		case header.IPv6FragmentExtHdr:
			if h.FragmentOffset() != 0 {
				h.Release()
				return 0, nil, false
			}
		case header.IPv6RawPayloadHeader:
			b := h.Buf.Flatten()
			h.Release()
			return tcpip.TransportProtocolNumber(h.Identifier), b, true
		}
		h.Release()
	}
	return 0, nil, false
}

// The view's walk of extension headers agrees with gVisor's (the stack the
// frame then goes to): the same upper-layer protocol at the same bytes.
func FuzzViewAgreesWithGVisor(f *testing.F) {
	hbh := append([]byte{nhHopByHop}, make([]byte, 8)...)
	f.Add(v6frame(134))
	f.Add(v6frame(134, hbh))
	f.Add(v6frame(135, hbh, append([]byte{nhFragment}, 0, 0, 0, 1, 0, 0, 0, 1)))
	f.Add(v6frame(1, append([]byte{nhFragment}, 0, 0, 0x01, 0x00, 0, 0, 0, 1)))
	f.Fuzz(func(t *testing.T, eth []byte) {
		v := parse(eth)
		if v.EtherType != header.IPv6ProtocolNumber || v.Bad == BadIPHeader || v.Bad == Runt || v.LongChain {
			return
		}
		proto, upper, ok := gvisorUpper(header.IPv6(v.L3))
		switch {
		case ok && v.L4Off == 0:
			t.Fatalf("gVisor reads upper layer %d (%d bytes); the view reads none", proto, len(upper))
		case ok && (v.Proto != proto || len(v.L4()) != len(upper)):
			t.Fatalf("gVisor reads protocol %d in %d bytes, the view protocol %d in %d", proto, len(upper), v.Proto, len(v.L4()))
		case !ok && v.L4Off != 0 && !v.Fragment:
			t.Fatalf("the view reads upper layer %d where gVisor reads none", v.Proto)
		}
	})
}

// Whatever the bytes: Parse's slices stay inside the frame and agree with
// each other.
func FuzzParse(f *testing.F) {
	g, gw := netip.MustParseAddrPort("10.0.2.15:4000"), netip.MustParseAddrPort("10.0.2.2:80")
	f.Add(TCP4(Broadcast(), Broadcast(), g, gw, header.TCPFlagSyn, 1, nil)[link.VnetHdrLen:])
	f.Add(UDP4(Broadcast(), Broadcast(), g, gw, []byte("x"))[link.VnetHdrLen:])
	f.Add(v6frame(134))
	f.Add(ARPRequest(Broadcast(), g.Addr(), gw.Addr())[link.VnetHdrLen:])
	f.Fuzz(func(t *testing.T, eth []byte) {
		v := parse(eth)
		if v.Bad != OK && v.Bad != BadL4Header && v.Bad != BadTCPFlags {
			return
		}
		if len(v.L3) > len(eth)-header.EthernetMinimumSize {
			t.Fatalf("L3 of %d bytes in a frame of %d", len(v.L3), len(eth))
		}
		if v.L4Off > len(v.L3) {
			t.Fatalf("L4 at %d of an L3 of %d bytes", v.L4Off, len(v.L3))
		}
		if v.L4Off != 0 && v.L4Off < v.IPHdrLen {
			t.Fatalf("L4 at %d inside the %d-byte IP header", v.L4Off, v.IPHdrLen)
		}
		if v.Bad == OK && !v.Fragment && v.L4Off != 0 {
			switch l4 := v.L4(); v.Proto {
			case header.TCPProtocolNumber:
				if len(l4) < header.TCPMinimumSize || int(header.TCP(l4).DataOffset()) > len(l4) {
					t.Fatal("a TCP header that does not fit passed")
				}
			case header.UDPProtocolNumber:
				if len(l4) < header.UDPMinimumSize || int(header.UDP(l4).Length()) > len(l4) {
					t.Fatal("a UDP length past the packet passed")
				}
			}
		}
	})
}
