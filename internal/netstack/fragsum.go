package netstack

import (
	"encoding/binary"
	"sync"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/slipway-net/slipway/link"
)

// maxHeldDatagrams bounds the fragmented datagrams whose first fragment
// waits for its checksum at any time.
const maxHeldDatagrams = 64

// udp6Fragments completes the checksums of UDP datagrams the stack sends
// over IPv6 in fragments (larger than the MTU). The NIC claims checksum
// offload, so the stack leaves UDP checksums to the link, but it
// fragments a large datagram first, and no single fragment holds the
// bytes to sum; IPv6, unlike IPv4, does not allow a zero UDP checksum, so
// such a datagram would reach the guest only to be dropped. The stack
// writes a datagram's fragments in order, one by one: the first one (with
// the UDP header) is held back while the sum runs over the rest, and sent,
// completed, just before the last.
type udp6Fragments struct {
	mu   sync.Mutex
	held map[datagramKey]*heldDatagram
}

// datagramKey names a fragmented datagram: an ID is only unique between
// one source and destination.
type datagramKey struct {
	id       uint32
	src, dst [16]byte
}

// heldDatagram is a fragmented datagram's first fragment (header+frame,
// checksum field zero) and the sum of its fragments so far.
type heldDatagram struct {
	frame []byte
	sum   uint16
}

// fragmentInfo describes an IPv6 frame that is a fragment of a UDP
// datagram: the offset of its fragmentable part in the frame, and its
// fragment header's fields. ok is false for any other frame.
func fragmentInfo(frame []byte) (part int, key datagramKey, offset uint16, more, ok bool) {
	const fragAt = link.EthHdrLen + header.IPv6MinimumSize
	if len(frame) < fragAt+header.IPv6FragmentHeaderSize ||
		binary.BigEndian.Uint16(frame[12:]) != uint16(header.IPv6ProtocolNumber) ||
		frame[link.EthHdrLen+6] != uint8(header.IPv6FragmentHeader) ||
		frame[fragAt] != uint8(header.UDPProtocolNumber) {
		return 0, datagramKey{}, 0, false, false
	}
	f := header.IPv6Fragment(frame[fragAt:])
	ip := frame[link.EthHdrLen:]
	key = datagramKey{id: f.ID(), src: [16]byte(ip[8:24]), dst: [16]byte(ip[24:40])}
	return fragAt + header.IPv6FragmentHeaderSize, key, f.FragmentOffset(), f.More(), true
}

// take looks at one outbound frame (header+frame, a copy the caller gives
// up) and returns what to send now, in order: the frame itself, nothing
// (a first fragment, held), or a completed first fragment and the frame.
func (u *udp6Fragments) take(buf []byte) [][]byte {
	frame := buf[link.VnetHdrLen:]
	part, key, offset, more, ok := fragmentInfo(frame)
	if !ok {
		return [][]byte{buf}
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if offset == 0 {
		if !more || len(frame) < part+header.UDPMinimumSize {
			return [][]byte{buf}
		}
		if u.held == nil {
			u.held = make(map[datagramKey]*heldDatagram)
		}
		var out [][]byte
		if len(u.held) >= maxHeldDatagrams {
			// A datagram whose last fragment never came (a failed
			// write): let its first fragment go as it is.
			for k, h := range u.held {
				out = append(out, h.frame)
				delete(u.held, k)
				break
			}
		}
		header.UDP(frame[part:]).SetChecksum(0)
		u.held[key] = &heldDatagram{frame: buf, sum: checksum.Checksum(frame[part:], 0)}
		return out
	}
	h := u.held[key]
	if h == nil {
		return [][]byte{buf}
	}
	// Fragment offsets are multiples of 8 bytes, so each part's sum adds
	// to the others' whatever their order.
	h.sum = checksum.Combine(h.sum, checksum.Checksum(frame[part:], 0))
	if more {
		return [][]byte{buf}
	}
	delete(u.held, key)
	first := h.frame[link.VnetHdrLen:]
	ip := header.IPv6(first[link.EthHdrLen:])
	udp := header.UDP(first[part:])
	sum := checksum.Combine(h.sum, header.PseudoHeaderChecksum(header.UDPProtocolNumber, ip.SourceAddress(), ip.DestinationAddress(), udp.Length()))
	xsum := ^sum
	if xsum == 0 {
		xsum = 0xffff // an all-zero UDP checksum is sent as all ones
	}
	udp.SetChecksum(xsum)
	return [][]byte{h.frame, buf}
}
