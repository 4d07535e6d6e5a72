package gvproxy

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/slipway-net/slipway/link"
)

// minFrame is the shortest Ethernet frame a peer may announce.
const minFrame = 14

// framedLink is a VM link over a byte stream where each frame is preceded
// by its length: gvproxy's stdio and /connect (16 bits little-endian, the
// hyperkit framing without its handshake) or QEMU's (32 bits big-endian).
// Frames are few here (a pipe, an API connection), so it reads one frame
// a call and writes under a lock.
type framedLink struct {
	r      *bufio.Reader
	w      io.Writer
	c      io.Closer
	hdr    int // 2 (LE16) or 4 (BE32)
	desc   string
	wmu    sync.Mutex
	wbuf   []byte
	counts link.Counters
}

func newFramedLink(r io.Reader, w io.Writer, c io.Closer, protocol, desc string) *framedLink {
	hdr := 2
	if protocol == ProtoQemu {
		hdr = 4
	}
	return &framedLink{r: bufio.NewReaderSize(r, 128<<10), w: w, c: c, hdr: hdr, desc: desc}
}

func (l *framedLink) maxFrame() int {
	if l.hdr == 2 {
		return 0xffff
	}
	return link.MaxFrameLen
}

func (l *framedLink) Read(bufs [][]byte, sizes []int) (int, error) {
	var h [4]byte
	if _, err := io.ReadFull(l.r, h[:l.hdr]); err != nil {
		return 0, err
	}
	n := int(binary.LittleEndian.Uint16(h[:2]))
	if l.hdr == 4 {
		n = int(binary.BigEndian.Uint32(h[:4]))
	}
	buf := bufs[0]
	if n < minFrame || n > l.maxFrame() || link.VnetHdrLen+n > len(buf) {
		l.counts.RxBadFraming.Add(1)
		return 0, fmt.Errorf("%s: %w: %d", l.desc, errBadLength, n)
	}
	if _, err := io.ReadFull(l.r, buf[link.VnetHdrLen:link.VnetHdrLen+n]); err != nil {
		l.counts.RxBadFraming.Add(1)
		return 0, err
	}
	clear(buf[:link.VnetHdrLen])
	sizes[0] = n
	return 1, nil
}

func (l *framedLink) Write(frames []link.Frame) (int, error) {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	for i, f := range frames {
		n := 0
		for _, s := range f.Segs {
			n += len(s)
		}
		if n > l.maxFrame() {
			l.counts.TxTooLarge.Add(1)
			continue
		}
		b := l.wbuf[:0]
		if l.hdr == 2 {
			b = binary.LittleEndian.AppendUint16(b, uint16(n))
		} else {
			b = binary.BigEndian.AppendUint32(b, uint32(n))
		}
		for _, s := range f.Segs {
			b = append(b, s...)
		}
		l.wbuf = b
		if _, err := l.w.Write(b); err != nil {
			return i, err
		}
	}
	return len(frames), nil
}

func (l *framedLink) BatchSize() int           { return 1 }
func (l *framedLink) Offloads() bool           { return false }
func (l *framedLink) Counters() *link.Counters { return &l.counts }
func (l *framedLink) Close() error             { return l.c.Close() }
func (l *framedLink) String() string           { return l.desc }

var _ link.Link = (*framedLink)(nil)

var errBadLength = errors.New("frame length out of range")
