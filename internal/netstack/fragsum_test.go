package netstack

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/slipway-net/slipway/link"
)

var (
	fragSrc = netip.MustParseAddr("fd00::2")
	fragDst = netip.MustParseAddr("fd00::15")
)

// udp6Datagram is a whole UDP datagram (header+payload) with its correct
// checksum, and the same datagram with the checksum left empty.
func udp6Datagram(dst netip.Addr, payload []byte) (want, empty []byte) {
	d := make([]byte, header.UDPMinimumSize+len(payload))
	u := header.UDP(d)
	u.Encode(&header.UDPFields{SrcPort: 53, DstPort: 40000, Length: uint16(len(d))})
	copy(d[header.UDPMinimumSize:], payload)
	empty = append([]byte(nil), d...)
	src, to := tcpip.AddrFrom16(fragSrc.As16()), tcpip.AddrFrom16(dst.As16())
	sum := checksum.Combine(header.PseudoHeaderChecksum(header.UDPProtocolNumber, src, to, uint16(len(d))), checksum.Checksum(d, 0))
	u.SetChecksum(^sum)
	return d, empty
}

// fragment6 is header+frame of one IPv6 fragment carrying part of a
// datagram at offset (bytes, a multiple of 8).
func fragment6(dst netip.Addr, id uint32, offset int, more bool, part []byte) []byte {
	buf := make([]byte, link.VnetHdrLen+link.EthHdrLen+header.IPv6MinimumSize+header.IPv6FragmentHeaderSize+len(part))
	f := buf[link.VnetHdrLen:]
	binary.BigEndian.PutUint16(f[12:], uint16(header.IPv6ProtocolNumber))
	ip := header.IPv6(f[link.EthHdrLen:])
	ip.Encode(&header.IPv6Fields{
		PayloadLength:     uint16(header.IPv6FragmentHeaderSize + len(part)),
		TransportProtocol: header.IPv6FragmentHeader,
		HopLimit:          64,
		SrcAddr:           tcpip.AddrFrom16(fragSrc.As16()),
		DstAddr:           tcpip.AddrFrom16(dst.As16()),
	})
	fh := f[link.EthHdrLen+header.IPv6MinimumSize:]
	fh[0] = uint8(header.UDPProtocolNumber)
	om := uint16(offset)
	if more {
		om |= 1
	}
	binary.BigEndian.PutUint16(fh[2:], om)
	binary.BigEndian.PutUint32(fh[4:], id)
	copy(fh[header.IPv6FragmentHeaderSize:], part)
	return buf
}

// The first fragment waits until the last one has passed, then leaves
// with the checksum of the whole datagram, before the last fragment.
func TestUDP6FragmentsCompleteTheChecksum(t *testing.T) {
	payload := make([]byte, 3001) // odd: the last part is odd too
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	want, empty := udp6Datagram(fragDst, payload)
	var u udp6Fragments
	var sent [][]byte
	for off := 0; off < len(empty); off += 1232 {
		end := min(off+1232, len(empty))
		sent = append(sent, u.take(fragment6(fragDst, 9, off, end < len(empty), empty[off:end]))...)
		if off == 0 && len(sent) != 0 {
			t.Fatal("the first fragment left before the datagram's checksum was known")
		}
	}
	if len(sent) != 3 {
		t.Fatalf("%d frames sent, want 3", len(sent))
	}
	first := sent[1] // the middle fragment went at once, the first before the last
	part := link.VnetHdrLen + link.EthHdrLen + header.IPv6MinimumSize + header.IPv6FragmentHeaderSize
	if got, w := header.UDP(first[part:]).Checksum(), header.UDP(want).Checksum(); got != w {
		t.Fatalf("checksum %#04x, want %#04x", got, w)
	}
	if _, _, off, _, _ := fragmentInfo(sent[2][link.VnetHdrLen:]); off == 0 {
		t.Fatal("the last frame sent is not the last fragment")
	}
}

// Two datagrams to different guests may carry the same fragment ID (IDs
// are counted per destination); each gets its own checksum.
func TestUDP6FragmentsSameIDOtherGuest(t *testing.T) {
	other := netip.MustParseAddr("fd00::16")
	wantA, emptyA := udp6Datagram(fragDst, make([]byte, 2000))
	payloadB := make([]byte, 2000)
	for i := range payloadB {
		payloadB[i] = 0xa5
	}
	wantB, emptyB := udp6Datagram(other, payloadB)
	var u udp6Fragments
	u.take(fragment6(fragDst, 7, 0, true, emptyA[:1232]))
	u.take(fragment6(other, 7, 0, true, emptyB[:1232]))
	sentA := u.take(fragment6(fragDst, 7, 1232, false, emptyA[1232:]))
	sentB := u.take(fragment6(other, 7, 1232, false, emptyB[1232:]))
	part := link.VnetHdrLen + link.EthHdrLen + header.IPv6MinimumSize + header.IPv6FragmentHeaderSize
	for _, c := range []struct {
		sent [][]byte
		want []byte
	}{{sentA, wantA}, {sentB, wantB}} {
		if len(c.sent) != 2 {
			t.Fatalf("%d frames sent at the last fragment, want 2", len(c.sent))
		}
		if got, w := header.UDP(c.sent[0][part:]).Checksum(), header.UDP(c.want).Checksum(); got != w {
			t.Fatalf("checksum %#04x, want %#04x", got, w)
		}
	}
}

// Held first fragments are bounded: a datagram whose last fragment never
// comes is let go when the table is full.
func TestUDP6FragmentsBounded(t *testing.T) {
	var u udp6Fragments
	_, empty := udp6Datagram(fragDst, make([]byte, 2000))
	for i := range maxHeldDatagrams {
		if out := u.take(fragment6(fragDst, uint32(i), 0, true, empty[:1232])); len(out) != 0 {
			t.Fatalf("first fragment %d let go early", i)
		}
	}
	if out := u.take(fragment6(fragDst, 1000, 0, true, empty[:1232])); len(out) != 1 {
		t.Fatalf("with %d held, a new first fragment let %d go, want 1", maxHeldDatagrams, len(out))
	}
	if len(u.held) != maxHeldDatagrams {
		t.Fatalf("%d held, want %d", len(u.held), maxHeldDatagrams)
	}
}

// Whatever frame the stack hands over, take neither panics nor loses it
// for good: a frame is either sent or held.
func FuzzUDP6Fragments(f *testing.F) {
	_, empty := udp6Datagram(fragDst, make([]byte, 1500))
	f.Add(fragment6(fragDst, 1, 0, true, empty[:1232]))
	f.Add(fragment6(fragDst, 1, 1232, false, empty[1232:]))
	f.Add(fragment6(fragDst, 2, 8, true, empty[:16]))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		var u udp6Fragments
		buf := append(make([]byte, link.VnetHdrLen), b...)
		out := u.take(buf)
		if len(out)+len(u.held) != 1 {
			t.Fatalf("%d sent and %d held of one frame", len(out), len(u.held))
		}
	})
}
