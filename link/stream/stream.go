// Package stream carries Ethernet frames over a byte stream the way QEMU's
// `-netdev stream` and `-netdev socket` do (also libkrun's unixstream and
// socket_vmnet): each frame is preceded by its length as a big-endian u32.
package stream

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"

	"github.com/slipway-net/slipway/link"
)

// MaxFrame is the largest frame the stream protocol carries: QEMU drops the
// connection on anything larger.
const MaxFrame = 65535

// readBufSize lets one read syscall pick up several large frames.
const readBufSize = 512 << 10

// batchSize is how many frames one Read returns at most.
const batchSize = 16

// ErrBadLength reports a length prefix outside 14..65535; the stream cannot
// be resynchronised after one, so the link ends.
var ErrBadLength = errors.New("stream: frame length out of range")

// Link is a stream-framed link over a connection.
type Link struct {
	conn net.Conn
	desc string
	r    *bufio.Reader

	wmu      sync.Mutex
	prefixes [][4]byte
	iov      net.Buffers

	counters link.Counters
}

// New wraps a connected stream socket. desc names it in logs.
func New(conn net.Conn, desc string) *Link {
	return &Link{conn: conn, desc: desc, r: bufio.NewReaderSize(conn, readBufSize)}
}

// Read returns the next frames: it blocks for the first and takes more only
// while complete ones are already buffered, so it never waits mid-batch.
func (l *Link) Read(bufs [][]byte, sizes []int) (int, error) {
	n := 0
	for n < len(bufs) {
		if n > 0 && l.r.Buffered() < 4 {
			break
		}
		hdr, err := l.r.Peek(4)
		if err != nil {
			if n > 0 {
				return n, nil // report the error on the next call
			}
			if errors.Is(err, io.EOF) && l.r.Buffered() > 0 {
				l.counters.RxBadFraming.Add(1)
				return 0, fmt.Errorf("stream: peer closed mid-frame: %w", io.ErrUnexpectedEOF)
			}
			return 0, err
		}
		size := int(binary.BigEndian.Uint32(hdr))
		if size < link.MinFrameLen || size > MaxFrame {
			l.counters.RxBadFraming.Add(1)
			return n, fmt.Errorf("%w: %d", ErrBadLength, size)
		}
		if n > 0 && l.r.Buffered() < 4+size {
			break
		}
		l.r.Discard(4)
		buf := bufs[n]
		if _, err := io.ReadFull(l.r, buf[link.VnetHdrLen:link.VnetHdrLen+size]); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			l.counters.RxBadFraming.Add(1)
			return n, fmt.Errorf("stream: peer closed mid-frame: %w", err)
		}
		link.ClearVnetHdr(buf)
		sizes[n] = size
		n++
	}
	return n, nil
}

// Write sends frames with one writev. Frames larger than MaxFrame are
// dropped: QEMU would otherwise close the connection.
func (l *Link) Write(frames [][]byte) (int, error) {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if cap(l.prefixes) < len(frames) {
		l.prefixes = make([][4]byte, len(frames))
		l.iov = make(net.Buffers, 0, 2*len(frames))
	}
	iov := l.iov[:0]
	sent := 0
	for i, f := range frames {
		frame := f[link.VnetHdrLen:]
		if len(frame) > MaxFrame {
			l.counters.TxTooLarge.Add(1)
			continue
		}
		binary.BigEndian.PutUint32(l.prefixes[i][:], uint32(len(frame)))
		iov = append(iov, l.prefixes[i][:], frame)
		sent++
	}
	l.iov = iov[:0]
	if _, err := iov.WriteTo(l.conn); err != nil {
		return 0, fmt.Errorf("stream: write: %w", err)
	}
	return sent, nil
}

// BatchSize is how many frames a Read may return.
func (l *Link) BatchSize() int { return batchSize }

// Offloads is false: stream peers take plain frames only.
func (l *Link) Offloads() bool { return false }

// Close closes the connection.
func (l *Link) Close() error { return l.conn.Close() }

func (l *Link) String() string { return l.desc }

// Counters are the link's own drop counters.
func (l *Link) Counters() *link.Counters { return &l.counters }

var (
	_ link.Link    = (*Link)(nil)
	_ link.Counted = (*Link)(nil)
)
