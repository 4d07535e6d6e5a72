package gso

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/slipway-net/slipway/internal/frame"
	"github.com/slipway-net/slipway/link"
)

var (
	macA = net.HardwareAddr{0x52, 0x54, 0, 0, 0, 1}
	macB = net.HardwareAddr{0x52, 0x54, 0, 0, 0, 2}
)

// superFrame4 is a TCP/IPv4 super-frame (header+frame) as an offloading
// guest sends it.
func superFrame4(payload []byte, mss uint16, flags header.TCPFlags) []byte {
	b := frame.TCP4(macB, macA, netip.MustParseAddrPort("10.0.2.15:40000"), netip.MustParseAddrPort("10.0.2.16:80"), flags, 1000, payload)
	setGSO(b, link.GSOTCPv4, mss, 14+20)
	return b
}

// superFrame6 is the same over IPv6.
func superFrame6(payload []byte, mss uint16) []byte {
	src, dst := netip.MustParseAddr("fd00::15"), netip.MustParseAddr("fd00::16")
	l4 := make([]byte, header.TCPMinimumSize+len(payload))
	header.TCP(l4).Encode(&header.TCPFields{SrcPort: 1, DstPort: 2, SeqNum: 0xfffff000, DataOffset: 20, Flags: header.TCPFlagAck | header.TCPFlagPsh, WindowSize: 1000})
	copy(l4[20:], payload)
	b := frame.Eth(macB, macA, uint16(header.IPv6ProtocolNumber), frame.IPv6(uint8(header.TCPProtocolNumber), src, dst, l4))
	setGSO(b, link.GSOTCPv6, mss, 14+40)
	return b
}

func setGSO(b []byte, typ uint8, mss uint16, csumStart int) {
	link.VnetHdr{Flags: link.FlagNeedsCsum, GSOType: typ, GSOSize: mss, CsumStart: uint16(csumStart), CsumOffset: 16}.Encode(b)
}

// checkSegments cuts f and checks the segments: each a valid packet of at
// most mss payload bytes with correct checksums, sequence numbers in
// order, and together exactly the super-frame's payload.
func checkSegments(t *testing.T, f link.Frame, payload []byte, mss int) []*[]byte {
	t.Helper()
	var got []byte
	var segs []*[]byte
	err := NewSegmenter().Segment(&f, func(frames []link.Frame) {
		for i := range frames {
			b := make([]byte, link.VnetHdrLen+frames[i].Len())
			frames[i].CopyTo(b)
			segs = append(segs, &b)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	var nextSeq uint32
	for i, bp := range segs {
		b := *bp
		if !bytes.Equal(b[:link.VnetHdrLen], make([]byte, link.VnetHdrLen)) {
			t.Fatalf("segment %d keeps a virtio-net header %x", i, b[:link.VnetHdrLen])
		}
		_, l4, src, dst := parse(t, b[link.VnetHdrLen:])
		tcp := header.TCP(l4)
		data := l4[tcp.DataOffset():]
		if len(data) > mss {
			t.Fatalf("segment %d carries %d bytes, MSS %d", i, len(data), mss)
		}
		sum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, src, dst, uint16(len(l4)))
		if checksum.Checksum(l4, sum) != 0xffff {
			t.Fatalf("segment %d: bad TCP checksum", i)
		}
		if i > 0 && tcp.SequenceNumber() != nextSeq {
			t.Fatalf("segment %d: seq %d, want %d", i, tcp.SequenceNumber(), nextSeq)
		}
		nextSeq = tcp.SequenceNumber() + uint32(len(data))
		if last := i == len(segs)-1; !last && tcp.Flags()&(header.TCPFlagFin|header.TCPFlagPsh) != 0 {
			t.Fatalf("segment %d of %d has FIN or PSH", i, len(segs))
		}
		got = append(got, data...)
	}
	if !bytes.Equal(got, payload) {
		t.Fatalf("segments carry %d bytes, not the %d of the super-frame", len(got), len(payload))
	}
	return segs
}

// parse checks the IP header of a segment and returns it, its TCP part and
// the addresses.
func parse(t *testing.T, b []byte) ([]byte, []byte, tcpip.Address, tcpip.Address) {
	t.Helper()
	ip := b[header.EthernetMinimumSize:]
	switch binary.BigEndian.Uint16(b[12:]) {
	case uint16(header.IPv4ProtocolNumber):
		h := header.IPv4(ip)
		if !h.IsChecksumValid() || int(h.TotalLength()) != len(ip) {
			t.Fatalf("bad IPv4 header: checksum ok %v, length %d of %d", h.IsChecksumValid(), h.TotalLength(), len(ip))
		}
		return ip, ip[h.HeaderLength():], h.SourceAddress(), h.DestinationAddress()
	default:
		h := header.IPv6(ip)
		if int(h.PayloadLength())+header.IPv6MinimumSize != len(ip) {
			t.Fatalf("bad IPv6 payload length %d of %d", h.PayloadLength(), len(ip))
		}
		return ip, ip[header.IPv6MinimumSize:], h.SourceAddress(), h.DestinationAddress()
	}
}

func TestSegment(t *testing.T) {
	payload := make([]byte, 60000)
	for i := range payload {
		payload[i] = byte(rand.Uint32())
	}
	segs := checkSegments(t, link.Contiguous(superFrame4(payload, 1448, header.TCPFlagAck|header.TCPFlagPsh|header.TCPFlagFin)), payload, 1448)
	if want := (len(payload) + 1447) / 1448; len(segs) != want {
		t.Errorf("%d segments, want %d", len(segs), want)
	}
	// IPv4 IDs count up from the super-frame's.
	for i := 1; i < len(segs); i++ {
		a := header.IPv4((*segs[i-1])[link.VnetHdrLen+14:]).ID()
		b := header.IPv4((*segs[i])[link.VnetHdrLen+14:]).ID()
		if b != a+1 {
			t.Fatalf("IP IDs %d then %d", a, b)
		}
	}
	last := header.TCP((*segs[len(segs)-1])[link.VnetHdrLen+14+20:])
	if last.Flags()&header.TCPFlagFin == 0 {
		t.Error("the last segment lost FIN")
	}
	// IPv6, a sequence number that wraps, the frame in pieces as the
	// stack holds it.
	b := superFrame6(payload[:20000], 1220)
	pieces := link.Frame{Hdr: b[:link.VnetHdrLen], Segs: [][]byte{b[link.VnetHdrLen : link.VnetHdrLen+50], b[link.VnetHdrLen+50 : 9000], b[9000:]}}
	checkSegments(t, pieces, payload[:20000], 1220)
}

func TestSegmentRefuses(t *testing.T) {
	good := superFrame4(make([]byte, 5000), 1000, header.TCPFlagAck)
	for name, mangle := range map[string]func(b []byte){
		"tiny mss":       func(b []byte) { binary.LittleEndian.PutUint16(b[4:], 10) },
		"v6 type on v4":  func(b []byte) { b[1] = link.GSOTCPv6 },
		"udp":            func(b []byte) { b[link.VnetHdrLen+14+9] = 17 },
		"fragment":       func(b []byte) { b[link.VnetHdrLen+14+6] |= 0x20 },
		"length too big": func(b []byte) { binary.BigEndian.PutUint16(b[link.VnetHdrLen+14+2:], 60000) },
		"vlan":           func(b []byte) { binary.BigEndian.PutUint16(b[link.VnetHdrLen+12:], 0x8100) },
		"tcp offset": func(b []byte) {
			b[link.VnetHdrLen+14+20+12] = 0xf0 | b[link.VnetHdrLen+14+20+12]&0xf
			binary.BigEndian.PutUint16(b[link.VnetHdrLen+14+2:], 20+40)
		},
	} {
		b := bytes.Clone(good)
		mangle(b)
		f := link.Contiguous(b)
		called := false
		if err := NewSegmenter().Segment(&f, func([]link.Frame) { called = true }); err == nil {
			t.Errorf("%s: segmented", name)
		} else if err != nil && called {
			t.Errorf("%s: wrote segments before refusing", name)
		}
	}
}

// FuzzSegment: any frame with any GSO header either is refused or comes
// out as valid segments that carry the super-frame's payload exactly.
func FuzzSegment(f *testing.F) {
	f.Add(superFrame4(make([]byte, 3000), 1000, header.TCPFlagAck), 10)
	f.Add(superFrame6(make([]byte, 3000), 700), 60)
	f.Add(superFrame4(nil, 100, header.TCPFlagFin), 0)
	seg := NewSegmenter() // once: each input's cost decides how far fuzzing gets
	f.Fuzz(func(t *testing.T, b []byte, cut int) {
		if len(b) < link.VnetHdrLen || len(b) > link.BufSize {
			return
		}
		cut = link.VnetHdrLen + max(0, cut)%(len(b)-link.VnetHdrLen+1)
		fr := link.Frame{Hdr: b[:link.VnetHdrLen], Segs: [][]byte{b[link.VnetHdrLen:cut], b[cut:]}}
		orig := bytes.Clone(b)
		var out [][]byte
		err := seg.Segment(&fr, func(frames []link.Frame) {
			for i := range frames {
				c := make([]byte, link.VnetHdrLen+frames[i].Len())
				frames[i].CopyTo(c)
				out = append(out, c)
			}
		})
		if !bytes.Equal(b, orig) {
			t.Fatal("Segment changed its input")
		}
		if err != nil {
			return
		}
		mss := int(binary.LittleEndian.Uint16(b[4:]))
		var payload []byte
		for i, s := range out {
			_, l4, src, dst := parse(t, s[link.VnetHdrLen:])
			sum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, src, dst, uint16(len(l4)))
			if checksum.Checksum(l4, sum) != 0xffff {
				t.Fatalf("segment %d: bad TCP checksum", i)
			}
			data := l4[header.TCP(l4).DataOffset():]
			if len(data) > mss {
				t.Fatalf("segment %d: %d bytes over MSS %d", i, len(data), mss)
			}
			payload = append(payload, data...)
		}
		// The payload is what follows the first segment's headers in
		// the super-frame, up to its IP length.
		first := out[0][link.VnetHdrLen:]
		_, l4, _, _ := parse(t, first)
		hl := len(first) - len(l4) + int(header.TCP(l4).DataOffset())
		if !bytes.Equal(payload, b[link.VnetHdrLen+hl:link.VnetHdrLen+hl+len(payload)]) {
			t.Fatal("segments do not carry the super-frame's payload")
		}
	})
}
