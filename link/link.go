// Package link defines how slipway moves Ethernet frames to and from a guest:
// one small batched interface that every transport (link/tap, link/stream,
// link/dgram for datagram and seqpacket sockets, link/pipe in process)
// implements, and the frame layout they share.
//
// Every frame buffer starts with VnetHdrLen bytes holding a virtio-net header
// (the offload metadata of the frame), followed by the Ethernet frame. Links
// whose peer speaks virtio-net headers (TAP with IFF_VNET_HDR) pass the
// header through unchanged; the others zero it on read, and the switch
// completes any partial checksum in software before they write (see
// Frame.FinishChecksum).
package link

import (
	"encoding/binary"
	"errors"
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
)

const (
	// VnetHdrLen is the size of the virtio-net header (version 1) in front
	// of every frame.
	VnetHdrLen = 12
	// EthHdrLen is the size of an untagged Ethernet header.
	EthHdrLen = 14
	// MinFrameLen is the smallest frame accepted: an Ethernet header.
	MinFrameLen = EthHdrLen
	// MaxFrameLen is the largest frame any transport carries: an Ethernet
	// header and a full 64 KiB IP packet.
	MaxFrameLen = EthHdrLen + 65535
	// BufSize is the size of a buffer that holds any frame with its header.
	BufSize = VnetHdrLen + MaxFrameLen
)

// Virtio-net header flags and GSO types (virtio spec 5.1.6).
const (
	FlagNeedsCsum = 1
	FlagDataValid = 2

	GSONone  = 0
	GSOTCPv4 = 1
	GSOUDP   = 3
	GSOTCPv6 = 4
)

// Link is one guest-facing transport endpoint. Read and Write move frames in
// batches into and out of caller-owned buffers laid out as described in the
// package comment; neither allocates per frame.
type Link interface {
	// Read blocks until at least one frame is available, then reads up to
	// len(bufs) frames. Frame i occupies bufs[i][:VnetHdrLen+sizes[i]],
	// that is sizes[i] is the length of the Ethernet frame alone. Each
	// buffer must be at least BufSize long (or VnetHdrLen+MaxFrame()).
	// An error ends the link; frames returned with it are still valid.
	Read(bufs [][]byte, sizes []int) (n int, err error)
	// Write sends frames. Their pieces are the caller's again when Write
	// returns: a link that must keep a frame (its peer is busy) copies
	// it. It may be called concurrently. It returns how many frames were
	// written; a frame the link cannot carry (too large) is dropped and
	// counted, not an error.
	Write(frames []Frame) (n int, err error)
	// BatchSize is how many frames one Read call can usefully return.
	BatchSize() int
	// Offloads reports whether the peer consumes and produces virtio-net
	// headers (partial checksums in both directions).
	Offloads() bool
	// Counters are the drops the link sees itself.
	Counters() *Counters
	// Close releases the link; a blocked Read returns an error.
	Close() error
	// String describes the link for logs and the control API.
	String() string
}

// MultiQueue is a link with more than one transmit queue (vhost-user with
// MQ): the switch reads each with ReadQueue on a goroutine of its own
// instead of calling Read. Queue 0's ReadQueue is Read.
type MultiQueue interface {
	Link
	// Queues is how many queues there are to read, 1 or more.
	Queues() int
	// ReadQueue is Read for queue i; each queue has one reader.
	ReadQueue(i int, bufs [][]byte, sizes []int) (n int, err error)
}

// Carrier is a link that can tell its peer the link went down or came up
// (vhost-user: the device's link status, and a configuration change
// message to the VMM).
type Carrier interface {
	SetCarrier(up bool)
}

// Counters are the drops a link sees itself, before the switch has a frame
// or after the switch handed one over, which the switch's per-port counters
// cannot see; the switch's ports expose them next to their own. (Frames a
// busy peer does not take are reported to the switch with ErrQueueFull
// instead, and counted there.)
type Counters struct {
	// RxOversized: a message larger than the largest frame (discarded).
	RxOversized atomic.Uint64 `counter:"rx_oversized"`
	// RxOverrun: the link's receive queue was full because the switch
	// fell behind reading it.
	RxOverrun atomic.Uint64 `counter:"rx_overrun"`
	// RxBadFraming: a stream length prefix out of range, or the peer
	// left in the middle of a frame; the link ends.
	RxBadFraming atomic.Uint64 `counter:"rx_bad_framing"`
	// TxTooLarge: a frame larger than the link or its peer carries.
	TxTooLarge atomic.Uint64 `counter:"tx_too_large"`
	// TxStalled: frames that waited for a peer that took nothing for a
	// long while (a paused VM) and were dropped.
	TxStalled atomic.Uint64 `counter:"tx_stalled"`
	// TxRefused: a frame the peer's kernel refused (a TAP device answers
	// EINVAL for a frame it cannot take).
	TxRefused atomic.Uint64 `counter:"tx_refused"`
	// RxBadRing: a descriptor chain of the guest's transmit ring that
	// breaks the virtqueue rules (a buffer outside the guest's memory, a
	// loop, a nested indirect table, ...), given back unread; or the
	// ring itself broken (its index jumped), after which it is not used
	// until the VMM sets it up again (vhost-user).
	RxBadRing atomic.Uint64 `counter:"rx_bad_ring"`
	// RxBadHeader: a frame whose virtio-net header asks for an offload
	// the guest did not negotiate, or points outside the frame.
	RxBadHeader atomic.Uint64 `counter:"rx_bad_header"`
	// TxBadRing: a receive buffer chain that breaks the virtqueue rules,
	// given back empty; or the receive ring broken (vhost-user).
	TxBadRing atomic.Uint64 `counter:"tx_bad_ring"`
	// TxUnsupported: a frame with an offload the peer no longer takes
	// (a guest that renegotiated while it was on its way).
	TxUnsupported atomic.Uint64 `counter:"tx_unsupported"`
}

// ErrQueueFull reports frames dropped because the peer is not taking any
// (its socket buffer is full), as a full NIC ring drops them.
var ErrQueueFull = errors.New("peer not reading: frames dropped")

// ErrFrameTooLarge reports a frame the link cannot carry.
var ErrFrameTooLarge = errors.New("frame too large for link")

// VnetHdr is the decoded virtio-net header.
type VnetHdr struct {
	Flags      uint8
	GSOType    uint8
	HdrLen     uint16
	GSOSize    uint16
	CsumStart  uint16
	CsumOffset uint16
}

// DecodeVnetHdr reads the header at the start of b (little-endian).
func DecodeVnetHdr(b []byte) VnetHdr {
	_ = b[VnetHdrLen-1]
	return VnetHdr{
		Flags:      b[0],
		GSOType:    b[1],
		HdrLen:     binary.LittleEndian.Uint16(b[2:]),
		GSOSize:    binary.LittleEndian.Uint16(b[4:]),
		CsumStart:  binary.LittleEndian.Uint16(b[6:]),
		CsumOffset: binary.LittleEndian.Uint16(b[8:]),
	}
}

// Encode writes h at the start of b; num_buffers is written as zero.
func (h VnetHdr) Encode(b []byte) {
	_ = b[VnetHdrLen-1]
	b[0] = h.Flags
	b[1] = h.GSOType
	binary.LittleEndian.PutUint16(b[2:], h.HdrLen)
	binary.LittleEndian.PutUint16(b[4:], h.GSOSize)
	binary.LittleEndian.PutUint16(b[6:], h.CsumStart)
	binary.LittleEndian.PutUint16(b[8:], h.CsumOffset)
	binary.LittleEndian.PutUint16(b[10:], 0)
}

// ClearVnetHdr zeroes the header at the start of b: a plain frame with no
// offload metadata.
func ClearVnetHdr(b []byte) {
	clear(b[:VnetHdrLen])
}

// ErrBadChecksumOffsets reports a partial-checksum header pointing outside
// its frame, or at a field no checksum can be stored in.
var ErrBadChecksumOffsets = errors.New("checksum offsets outside frame")

// NewBuffers allocates n frame buffers of BufSize bytes (once per reader, not
// per frame) and the matching sizes slice.
func NewBuffers(n int) ([][]byte, []int) {
	backing := make([]byte, n*BufSize)
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = backing[i*BufSize : (i+1)*BufSize : (i+1)*BufSize]
	}
	return bufs, make([]int, n)
}

// Frame is one frame on its way out of a link: its virtio-net header and
// the Ethernet frame in one piece or in several consecutive ones (headers,
// then payload views, as the stack holds a packet). A frame read from a
// link is a one-piece frame.
type Frame struct {
	Hdr  []byte   // VnetHdrLen bytes
	Segs [][]byte // the Ethernet frame, in order
}

// Contiguous is the one-piece frame of buf, laid out as header+frame. It
// allocates the piece list: the data path keeps its own (see OnePiece).
func Contiguous(buf []byte) Frame {
	return Frame{Hdr: buf[:VnetHdrLen], Segs: [][]byte{buf[VnetHdrLen:]}}
}

// Frames returns the one-piece frames of bufs (header+frame each): the
// simple way to write frames held in contiguous buffers. It allocates.
func Frames(bufs ...[]byte) []Frame {
	out := make([]Frame, len(bufs))
	for i, b := range bufs {
		out[i] = Contiguous(b)
	}
	return out
}

// OnePiece is the one-piece frame of buf (header+frame) whose piece list
// is seg, a caller-owned slot, so making it allocates nothing.
func OnePiece(buf []byte, seg *[1][]byte) Frame {
	seg[0] = buf[VnetHdrLen:]
	return Frame{Hdr: buf[:VnetHdrLen], Segs: seg[:]}
}

// Len is the Ethernet frame's length.
func (f *Frame) Len() int {
	n := 0
	for _, s := range f.Segs {
		n += len(s)
	}
	return n
}

// GSO reports whether the frame is a super-frame its receiver must segment.
func (f *Frame) GSO() bool { return f.Hdr[1] != GSONone }

// CopyTo copies header and frame into b, which must hold VnetHdrLen+Len()
// bytes, and returns how many it wrote.
func (f *Frame) CopyTo(b []byte) int {
	n := copy(b, f.Hdr)
	for _, s := range f.Segs {
		n += copy(b[n:], s)
	}
	return n
}

// FinishChecksum completes, in software, a frame whose header says its L4
// checksum is partial (NEEDS_CSUM): the one's complement sum from CsumStart
// to the end of the frame is stored at CsumStart+CsumOffset, and the header
// is cleared. Links whose peer cannot take partial checksums have it done
// before they get a frame. The checksum field must lie within one piece
// (it does: it is in the transport header, which the stack keeps in one
// slice). GSO frames are not segmented here.
func (f *Frame) FinishChecksum() error {
	if f.Hdr[0]&FlagNeedsCsum == 0 {
		return nil
	}
	h := DecodeVnetHdr(f.Hdr)
	start, field := int(h.CsumStart), int(h.CsumStart)+int(h.CsumOffset)
	var sum uint16
	var fieldSeg []byte
	fieldOff := -1
	off := 0
	odd := false
	for _, s := range f.Segs {
		end := off + len(s)
		if field >= off && field+2 <= end {
			fieldSeg, fieldOff = s, field-off
		}
		if end > start {
			part := s
			if start > off {
				part = s[start-off:]
			}
			sum = checksumCombine(sum, part, &odd)
		}
		off = end
	}
	// An odd offset cannot hold a 16-bit sum of the range (TCP's is 16,
	// UDP's 6): refuse it rather than store a wrong one.
	if fieldOff < 0 || start >= off || h.CsumOffset%2 != 0 {
		return ErrBadChecksumOffsets
	}
	binary.BigEndian.PutUint16(fieldSeg[fieldOff:], ^sum)
	// UDP transmits an all-zero checksum as all ones (RFC 768).
	if fieldSeg[fieldOff] == 0 && fieldSeg[fieldOff+1] == 0 && h.CsumOffset == 6 {
		fieldSeg[fieldOff], fieldSeg[fieldOff+1] = 0xff, 0xff
	}
	ClearVnetHdr(f.Hdr)
	return nil
}

// checksumCombine adds b to a running one's complement sum; odd tracks
// whether the bytes so far had odd length, so pieces of any length chain.
func checksumCombine(sum uint16, b []byte, odd *bool) uint16 {
	if len(b) == 0 {
		return sum
	}
	if *odd {
		// The first byte of b is the low byte of a 16-bit word.
		sum = checksum.Combine(sum, uint16(b[0]))
		b = b[1:]
		*odd = false
		if len(b) == 0 {
			return sum
		}
	}
	sum = checksum.Checksum(b, sum)
	*odd = len(b)%2 == 1
	return sum
}
