package vhostuser

import (
	"encoding/binary"
	"errors"

	"github.com/slipway-net/slipway/link"
)

// Frames the guest sees are at least this long (passt pads the same; some
// guest drivers drop runts).
const minGuestFrame = 60

var (
	errNoHeader      = errors.New("chain shorter than the virtio-net header")
	errHeaderOffload = errors.New("header asks for an offload not negotiated")
	errHeaderCsum    = errors.New("checksum offsets outside the frame")
	errBufferSmall   = errors.New("receive buffer cannot hold the virtio-net header")
)

// takeFrame copies the transmit chain c into buf as header+frame and
// returns the frame's length. The guest's header is checked and
// rewritten: only offloads the guest negotiated pass, and what is left is
// what the frame carries.
func (l *Link) takeFrame(c *chain, buf []byte) (int, bool) {
	hl := l.hdrLen
	if c.size < hl {
		l.counters.RxBadHeader.Add(1)
		l.log.Debug("transmit frame dropped", "link", l.name, "err", errNoHeader)
		return 0, false
	}
	var gh [link.VnetHdrLen]byte
	frame := buf[link.VnetHdrLen:]
	hn, fn := 0, 0
	// The header and the frame may be split anywhere across the chain's
	// buffers (virtio 1.x: no layout is implied).
	for _, b := range c.bufs {
		if hn < hl {
			k := copy(gh[hn:hl], b)
			hn += k
			b = b[k:]
		}
		fn += copy(frame[fn:], b)
	}
	h, err := l.checkTxHeader(gh, fn)
	if err != nil {
		l.counters.RxBadHeader.Add(1)
		l.log.Debug("transmit frame dropped", "link", l.name, "err", err)
		return 0, false
	}
	h.Encode(buf)
	return fn, true
}

// checkTxHeader validates a transmitted frame's header: a partial
// checksum needs CSUM and offsets within the frame, a TCP super-frame
// HOST_TSO4/6 of its family, a partial checksum and a segment size.
// DATA_VALID means nothing from a driver and is dropped.
func (l *Link) checkTxHeader(gh [link.VnetHdrLen]byte, size int) (link.VnetHdr, error) {
	in := link.DecodeVnetHdr(gh[:])
	var out link.VnetHdr
	if in.Flags&link.FlagNeedsCsum != 0 {
		if l.features&fCsum == 0 {
			return out, errHeaderOffload
		}
		if int(in.CsumStart)+int(in.CsumOffset)+2 > size {
			return out, errHeaderCsum
		}
		out.Flags, out.CsumStart, out.CsumOffset = link.FlagNeedsCsum, in.CsumStart, in.CsumOffset
	}
	switch in.GSOType {
	case link.GSONone:
		return out, nil
	case link.GSOTCPv4:
		if l.features&fHostTSO4 == 0 {
			return out, errHeaderOffload
		}
	case link.GSOTCPv6:
		if l.features&fHostTSO6 == 0 {
			return out, errHeaderOffload
		}
	default: // UDP, ECN: not offered
		return out, errHeaderOffload
	}
	if out.Flags&link.FlagNeedsCsum == 0 || in.GSOSize == 0 {
		return out, errHeaderOffload
	}
	out.GSOType, out.GSOSize, out.HdrLen = in.GSOType, in.GSOSize, in.HdrLen
	return out, nil
}

// Outcomes of putFrame.
type putResult int

const (
	putDone    putResult = iota
	putDropped           // the frame cannot go to this guest; counted
	putNoRoom            // not enough receive buffers now
	putBroken            // the ring broke
)

// putFrame writes f into the receive ring's next buffers: one chain, or
// with MRG_RXBUF as many as the frame needs (num_buffers). Nothing is
// taken unless the whole frame fits. Chains that break the rules are
// given back empty, never in the middle of a frame's buffers.
func (l *Link) putFrame(q *queue, r *ring, f *link.Frame) putResult {
	gsoType := f.Hdr[1]
	if gsoType != link.GSONone {
		var need uint64 = fGuestCsum
		switch gsoType {
		case link.GSOTCPv4:
			need |= fGuestTSO4
		case link.GSOTCPv6:
			need |= fGuestTSO6
		default:
			need = 1 << 63 // never offered
		}
		if l.features&need != need {
			l.counters.TxUnsupported.Add(1)
			return putDropped
		}
	}
	if f.Hdr[0]&link.FlagNeedsCsum != 0 && l.features&fGuestCsum == 0 {
		// The switch finishes checksums for links without offloads;
		// this one renegotiated since it looked.
		if err := f.FinishChecksum(); err != nil {
			l.counters.TxUnsupported.Add(1)
			return putDropped
		}
	}
	flen := f.Len()
	if flen > link.MaxFrameLen {
		l.counters.TxTooLarge.Add(1)
		return putDropped
	}
	hl := l.hdrLen
	total := hl + max(flen, minGuestFrame)
	mrg := l.features&fMrgRxbuf != 0

	pending, err := r.pending()
	if err != nil {
		q.breakRing(err)
		l.counters.TxBadRing.Add(1)
		l.log.Warn("guest broke its receive ring; ring stopped", "link", l.name, "err", err)
		return putBroken
	}
	q.window = q.window[:0]
	good, capacity := 0, 0
	var k uint16 // entries of the window
	for capacity < total {
		if k == pending {
			return putNoRoom
		}
		if len(q.window) == cap(q.window) {
			q.window = append(q.window, chain{})
		} else {
			q.window = q.window[:len(q.window)+1]
		}
		c := &q.window[len(q.window)-1]
		r.walk(r.headAt(k), c, true, 0)
		if c.err == nil && good == 0 && c.size < hl {
			c.err = errBufferSmall
		}
		if c.err != nil {
			l.log.Debug("receive chain refused", "link", l.name, "head", c.head, "err", c.err)
			if good == 0 {
				// Nothing of this frame before it: give it back now.
				q.window = q.window[:len(q.window)-1]
				r.take(1)
				r.putUsed(c.head, 0)
				l.counters.TxBadRing.Add(1)
				pending--
				continue
			}
			k++
			continue
		}
		if !mrg && c.size < total {
			// One chain per frame, and this frame is larger than the
			// guest's buffers: it cannot be delivered at all. The
			// buffer stays for the next frame.
			l.counters.TxTooLarge.Add(1)
			return putDropped
		}
		k++
		good++
		capacity += c.size
	}
	for i := range q.window {
		if c := &q.window[i]; c.err != nil {
			r.putUsed(c.head, 0)
			l.counters.TxBadRing.Add(1)
		}
	}
	var gh [link.VnetHdrLen]byte
	copy(gh[:], f.Hdr)
	if l.features&fGuestCsum == 0 {
		gh[0] = 0
	}
	binary.LittleEndian.PutUint16(gh[10:], uint16(good))
	s := scatter{window: q.window}
	s.write(gh[:hl])
	for _, seg := range f.Segs {
		s.write(seg)
	}
	for pad := total - hl - flen; pad > 0; {
		n := min(pad, len(zeros))
		s.write(zeros[:n])
		pad -= n
	}
	for i := range q.window {
		if c := &q.window[i]; c.err == nil {
			r.markWritten(c)
			r.putUsed(c.head, uint32(c.written))
		}
	}
	r.take(k)
	return putDone
}

var zeros [minGuestFrame]byte

// scatter writes a frame across the good chains of a window in order,
// filling each before the next, and counts what each chain got.
type scatter struct {
	window []chain
	ci, bi int // the chain and its buffer being written
	off    int
}

func (s *scatter) write(b []byte) {
	for len(b) > 0 && s.ci < len(s.window) {
		c := &s.window[s.ci]
		if c.err != nil || s.bi == len(c.bufs) {
			s.ci, s.bi, s.off = s.ci+1, 0, 0
			continue
		}
		n := copy(c.bufs[s.bi][s.off:], b)
		b = b[n:]
		c.written += n
		s.off += n
		if s.off == len(c.bufs[s.bi]) {
			s.bi, s.off = s.bi+1, 0
		}
	}
}
