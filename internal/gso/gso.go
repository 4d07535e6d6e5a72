// Package gso cuts TCP super-frames into MSS-sized segments in software,
// for a link whose peer cannot take them. A guest whose virtio-net device
// offloads (vhost-user with HOST_TSO, a TAP with TSO) sends frames of up
// to 64 KiB; when such a frame is bound for a guest on a link without
// offloads (a stream socket, iPXE), the switch segments it here, as the
// host kernel's GSO would.
package gso

import (
	"encoding/binary"
	"errors"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/slipway-net/slipway/link"
)

// MinMSS is the smallest segment size accepted: Linux's TCP_MIN_MSS. A
// smaller one would turn one frame into thousands.
const MinMSS = 88

// ErrNotSegmentable reports a super-frame this package cannot cut: not
// TCP over untagged IPv4 or IPv6 (without extension headers), headers
// that do not fit the frame, or a segment size below MinMSS.
var ErrNotSegmentable = errors.New("gso: super-frame cannot be segmented")

const (
	bufSize = 256 << 10
	// maxBatch is how many segments are handed to write at once.
	maxBatch = 64
	// maxHeaders is the longest header run of a segmentable frame:
	// Ethernet, IPv4 with options, TCP with options.
	maxHeaders = header.EthernetMinimumSize + 60 + 60
)

// Segmenter holds the buffers segmentation writes into; reuse one (it is
// not safe for concurrent use).
type Segmenter struct {
	buf    []byte
	frames []link.Frame
	segs   [][1][]byte
}

// NewSegmenter allocates a Segmenter's buffers.
func NewSegmenter() *Segmenter {
	return &Segmenter{buf: make([]byte, bufSize), frames: make([]link.Frame, 0, maxBatch), segs: make([][1][]byte, maxBatch)}
}

// Segment cuts the super-frame f into complete frames (checksums filled
// in, headers cleared) of at most its GSO size of payload each, and hands
// them to write in batches, in order. The batches are only valid during
// write. f itself is not changed.
func (s *Segmenter) Segment(f *link.Frame, write func([]link.Frame)) error {
	h := link.DecodeVnetHdr(f.Hdr)
	mss := int(h.GSOSize)
	if mss < MinMSS {
		return ErrNotSegmentable
	}
	var hb [maxHeaders]byte
	hdrs := hb[:gather(f.Segs, 0, hb[:])]
	total := f.Len()
	if len(hdrs) < header.EthernetMinimumSize {
		return ErrNotSegmentable
	}
	var l3, l4, end int // header offsets, and the packet's end per its IP header
	v4 := false
	switch binary.BigEndian.Uint16(hdrs[12:]) {
	case uint16(header.IPv4ProtocolNumber):
		if h.GSOType != link.GSOTCPv4 || len(hdrs) < header.EthernetMinimumSize+header.IPv4MinimumSize {
			return ErrNotSegmentable
		}
		ip := header.IPv4(hdrs[header.EthernetMinimumSize:])
		ihl := int(ip.HeaderLength())
		if ip.TransportProtocol() != header.TCPProtocolNumber || ihl < header.IPv4MinimumSize ||
			ip.More() || ip.FragmentOffset() != 0 {
			return ErrNotSegmentable
		}
		l3, l4, end, v4 = header.EthernetMinimumSize, header.EthernetMinimumSize+ihl, header.EthernetMinimumSize+int(ip.TotalLength()), true
	case uint16(header.IPv6ProtocolNumber):
		if h.GSOType != link.GSOTCPv6 || len(hdrs) < header.EthernetMinimumSize+header.IPv6MinimumSize {
			return ErrNotSegmentable
		}
		ip := header.IPv6(hdrs[header.EthernetMinimumSize:])
		if ip.NextHeader() != uint8(header.TCPProtocolNumber) {
			return ErrNotSegmentable
		}
		l3, l4 = header.EthernetMinimumSize, header.EthernetMinimumSize+header.IPv6MinimumSize
		end = l4 + int(ip.PayloadLength())
	default:
		return ErrNotSegmentable
	}
	if len(hdrs) < l4+header.TCPMinimumSize {
		return ErrNotSegmentable
	}
	doff := int(header.TCP(hdrs[l4:]).DataOffset())
	payStart := l4 + doff
	if doff < header.TCPMinimumSize || payStart > len(hdrs) || end > total || end < payStart {
		return ErrNotSegmentable
	}
	hdrs = hdrs[:payStart]
	tcp := header.TCP(hdrs[l4:])
	seq, flags := tcp.SequenceNumber(), tcp.Flags()
	var id uint16
	if v4 {
		id = header.IPv4(hdrs[l3:]).ID()
	}

	s.frames = s.frames[:0]
	used := 0
	for off, i := payStart, 0; off < end || i == 0; i++ {
		n := min(mss, end-off)
		size := link.VnetHdrLen + payStart + n
		if used+size > len(s.buf) || len(s.frames) == maxBatch {
			write(s.frames)
			s.frames, used = s.frames[:0], 0
		}
		b := s.buf[used : used+size : used+size]
		used += size
		link.ClearVnetHdr(b)
		seg := b[link.VnetHdrLen:]
		copy(seg, hdrs)
		gather(f.Segs, off, seg[payStart:])
		t := header.TCP(seg[l4:])
		t.SetSequenceNumber(seq + uint32(off-payStart))
		fl := flags
		if off+n < end {
			fl &^= header.TCPFlagFin | header.TCPFlagPsh
		}
		if i > 0 {
			fl &^= header.TCPFlagCwr
		}
		t.SetFlags(uint8(fl))
		var src, dst tcpip.Address
		if v4 {
			ip := header.IPv4(seg[l3:])
			ip.SetTotalLength(uint16(l4 - l3 + doff + n))
			ip.SetID(id + uint16(i))
			ip.SetChecksum(0)
			ip.SetChecksum(^ip.CalculateChecksum())
			src, dst = ip.SourceAddress(), ip.DestinationAddress()
		} else {
			ip := header.IPv6(seg[l3:])
			ip.SetPayloadLength(uint16(doff + n))
			src, dst = ip.SourceAddress(), ip.DestinationAddress()
		}
		t.SetChecksum(0)
		sum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, src, dst, uint16(doff+n))
		t.SetChecksum(^checksum.Checksum(seg[l4:], sum))
		k := len(s.frames)
		s.frames = append(s.frames, link.OnePiece(b, &s.segs[k]))
		off += n
	}
	write(s.frames)
	clear(s.frames)
	s.frames = s.frames[:0]
	return nil
}

// gather copies the frame's bytes from offset off on into b, as many as
// fit, and returns how many it copied.
func gather(segs [][]byte, off int, b []byte) int {
	n := 0
	for _, s := range segs {
		if off >= len(s) {
			off -= len(s)
			continue
		}
		n += copy(b[n:], s[off:])
		off = 0
		if n == len(b) {
			break
		}
	}
	return n
}
