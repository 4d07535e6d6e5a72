package link

import (
	"bytes"
	"encoding/binary"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

func TestVnetHdrRoundTrip(t *testing.T) {
	h := VnetHdr{Flags: FlagNeedsCsum, GSOType: GSOTCPv4, HdrLen: 54, GSOSize: 1448, CsumStart: 34, CsumOffset: 16}
	b := make([]byte, VnetHdrLen)
	h.Encode(b)
	want := []byte{1, 1, 54, 0, 0xa8, 0x05, 34, 0, 16, 0, 0, 0}
	for i := range want {
		if b[i] != want[i] {
			t.Fatalf("encoded % x, want % x", b, want)
		}
	}
	if got := DecodeVnetHdr(b); got != h {
		t.Fatalf("decoded %+v, want %+v", got, h)
	}
}

// partialFrame builds an IPv4 frame whose L4 checksum field holds only the
// pseudo-header sum, described by a NEEDS_CSUM header — what slipway's
// stack emits.
func partialFrame(t *testing.T, proto tcpip.TransportProtocolNumber, payload []byte) []byte {
	t.Helper()
	l4len := header.UDPMinimumSize
	csumOff := 6
	if proto == header.TCPProtocolNumber {
		l4len, csumOff = header.TCPMinimumSize, 16
	}
	total := header.IPv4MinimumSize + l4len + len(payload)
	buf := make([]byte, VnetHdrLen+EthHdrLen+total)
	f := buf[VnetHdrLen:]
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	ip := header.IPv4(f[EthHdrLen:])
	src := tcpip.AddrFrom4([4]byte{10, 0, 2, 15})
	dst := tcpip.AddrFrom4([4]byte{192, 0, 2, 1})
	ip.Encode(&header.IPv4Fields{TotalLength: uint16(total), TTL: 64, Protocol: uint8(proto), SrcAddr: src, DstAddr: dst})
	l4 := f[EthHdrLen+header.IPv4MinimumSize:]
	if proto == header.TCPProtocolNumber {
		header.TCP(l4).Encode(&header.TCPFields{SrcPort: 1000, DstPort: 80, SeqNum: 7, DataOffset: header.TCPMinimumSize, Flags: header.TCPFlagAck, WindowSize: 100})
	} else {
		header.UDP(l4).Encode(&header.UDPFields{SrcPort: 1000, DstPort: 53, Length: uint16(l4len + len(payload))})
	}
	copy(l4[l4len:], payload)
	pseudo := header.PseudoHeaderChecksum(proto, src, dst, uint16(l4len+len(payload)))
	binary.BigEndian.PutUint16(l4[csumOff:], pseudo)
	VnetHdr{Flags: FlagNeedsCsum, CsumStart: uint16(EthHdrLen + header.IPv4MinimumSize), CsumOffset: uint16(csumOff)}.Encode(buf)
	return buf
}

func TestFinishChecksumMakesValidSegments(t *testing.T) {
	for _, c := range []struct {
		name  string
		proto tcpip.TransportProtocolNumber
	}{{"tcp", header.TCPProtocolNumber}, {"udp", header.UDPProtocolNumber}} {
		t.Run(c.name, func(t *testing.T) {
			payload := []byte("an odd-length payload!!")
			buf := partialFrame(t, c.proto, payload)
			f := Contiguous(buf)
			if err := f.FinishChecksum(); err != nil {
				t.Fatal(err)
			}
			if buf[0] != 0 {
				t.Fatalf("header not cleared: % x", buf[:VnetHdrLen])
			}
			ip := header.IPv4(buf[VnetHdrLen+EthHdrLen:])
			l4 := ip.Payload()
			sum := header.PseudoHeaderChecksum(c.proto, ip.SourceAddress(), ip.DestinationAddress(), uint16(len(l4)))
			if got := checksum.Checksum(l4, sum); got != 0xffff {
				t.Fatalf("segment checksum does not verify: folded sum %#04x", got)
			}
		})
	}
}

func TestFinishChecksumRejectsBadOffsets(t *testing.T) {
	buf := partialFrame(t, header.TCPProtocolNumber, nil)
	VnetHdr{Flags: FlagNeedsCsum, CsumStart: 60000, CsumOffset: 16}.Encode(buf)
	if f := Contiguous(buf); f.FinishChecksum() != ErrBadChecksumOffsets {
		t.Fatal("offsets past the frame accepted")
	}
	plain := make([]byte, VnetHdrLen+EthHdrLen)
	if f := Contiguous(plain); f.FinishChecksum() != nil {
		t.Fatal("frame without NEEDS_CSUM refused")
	}
}

// FinishChecksum on any header and frame, cut into three pieces anywhere:
// it either refuses the offsets (changing nothing) or leaves a checksum
// that verifies, whatever the bytes.
func FuzzFinishChecksum(f *testing.F) {
	f.Add([]byte{1, 0, 0, 0, 0, 0, 34, 0, 16, 0, 0, 0, 0, 0}, uint16(0), uint16(0))
	f.Add(make([]byte, 80), uint16(20), uint16(50))
	f.Add(partialFrame(&testing.T{}, header.UDPProtocolNumber, []byte("seed payload")), uint16(36), uint16(41))
	f.Fuzz(func(t *testing.T, b []byte, cut1, cut2 uint16) {
		if len(b) < VnetHdrLen {
			return
		}
		frame := bytes.Clone(b[VnetHdrLen:])
		before := bytes.Clone(frame)
		c1 := min(int(cut1), len(frame))
		c2 := min(max(int(cut2), c1), len(frame))
		fr := Frame{Hdr: bytes.Clone(b[:VnetHdrLen]), Segs: [][]byte{frame[:c1], frame[c1:c2], frame[c2:]}}
		h := DecodeVnetHdr(b)
		start, field := int(h.CsumStart), int(h.CsumStart)+int(h.CsumOffset)
		var old uint16
		if field+2 <= len(frame) {
			old = binary.BigEndian.Uint16(frame[field:])
		}
		err := fr.FinishChecksum()
		switch {
		case b[0]&FlagNeedsCsum == 0 || err != nil:
			if err != nil && err != ErrBadChecksumOffsets {
				t.Fatalf("unexpected error %v", err)
			}
			if !bytes.Equal(frame, before) {
				t.Fatal("frame changed although nothing was to be done")
			}
		default:
			if fr.Hdr[0] != 0 {
				t.Fatal("header not cleared")
			}
			// The field held the pseudo-header's share: with it, the
			// range from csum_start verifies.
			if got := checksum.Checksum(frame[start:], old); got != 0xffff {
				t.Fatalf("sum from %d with the old field %#04x folds to %#04x, want 0xffff", start, old, got)
			}
		}
	})
}

func TestFinishChecksumInPiecesMatchesContiguous(t *testing.T) {
	for _, proto := range []tcpip.TransportProtocolNumber{header.TCPProtocolNumber, header.UDPProtocolNumber} {
		payload := make([]byte, 3001)
		for i := range payload {
			payload[i] = byte(i * 7)
		}
		whole := partialFrame(t, proto, payload)
		want := append([]byte(nil), whole...)
		if f := Contiguous(want); f.FinishChecksum() != nil {
			t.Fatal("contiguous frame refused")
		}
		// Cut the frame at awkward (odd) places, keeping the L4 header in
		// one piece as the stack does.
		frame := whole[VnetHdrLen:]
		l4 := EthHdrLen + header.IPv4MinimumSize + 20
		for _, cuts := range [][]int{{l4}, {13, l4, l4 + 1, l4 + 1000, l4 + 1003}, {l4 + 7, len(frame) - 1}} {
			hdr := append([]byte(nil), whole[:VnetHdrLen]...)
			cp := append([]byte(nil), frame...)
			var segs [][]byte
			prev := 0
			for _, c := range cuts {
				segs = append(segs, cp[prev:c])
				prev = c
			}
			segs = append(segs, cp[prev:])
			f := Frame{Hdr: hdr, Segs: segs}
			if err := f.FinishChecksum(); err != nil {
				t.Fatalf("cuts %v: %v", cuts, err)
			}
			if string(cp) != string(want[VnetHdrLen:]) {
				t.Fatalf("proto %d cuts %v: pieces give a different checksum than the whole frame", proto, cuts)
			}
			if f.Len() != len(frame) || hdr[0] != 0 {
				t.Fatal("length or header wrong")
			}
		}
	}
}
