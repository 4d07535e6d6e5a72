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
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

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
	// ends holds, for the batch being sent, the byte offset at which each
	// frame (prefix included) ends.
	ends []int
	// congested is set while the peer is not reading (a drain goroutine
	// runs); pending is the unsent end of a frame it stopped reading in
	// the middle of.
	congested bool
	pending   []byte
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
				return 0, fmt.Errorf("stream: peer closed mid-frame: %w", io.ErrUnexpectedEOF)
			}
			return 0, err
		}
		size := int(binary.BigEndian.Uint32(hdr))
		if size < link.MinFrameLen || size > MaxFrame {
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
	l.ends = l.ends[:0]
	sent, off := 0, 0
	for i, f := range frames {
		frame := f[link.VnetHdrLen:]
		if len(frame) > MaxFrame {
			continue
		}
		binary.BigEndian.PutUint32(l.prefixes[i][:], uint32(len(frame)))
		iov = append(iov, l.prefixes[i][:], frame)
		off += 4 + len(frame)
		l.ends = append(l.ends, off)
		sent++
	}
	l.iov = iov[:0]
	if k, err := l.send(iov); err != nil {
		return k, err
	}
	return sent, nil
}

// backpressure is how long a write waits for a peer whose socket is full
// before dropping: long enough to ride out a busy guest, short enough that
// a paused VM never holds the stack up for long.
const backpressure = 50 * time.Millisecond

// send writes a batch without blocking for long on a peer that is not
// reading (a paused VM). It waits up to backpressure for the socket to take
// anything; if it takes nothing, the batch is dropped as a full NIC ring
// drops (link.ErrQueueFull) and the link counts as congested: later writes
// drop at once until the peer reads again. If the socket takes part of a
// frame, the rest must follow or the stream loses its framing: it is kept
// and written by the drain goroutine once the socket is writable. l.wmu is
// held. It returns how many frames went (or will go) out whole.
func (l *Link) send(iov net.Buffers) (int, error) {
	if l.congested {
		return 0, link.ErrQueueFull
	}
	rc, err := l.rawConn()
	if err != nil {
		return 0, l.blockingSend(iov)
	}
	var n int
	var werr error
	l.conn.SetWriteDeadline(time.Now().Add(backpressure))
	err = rc.Write(func(fd uintptr) bool {
		n, werr = writev(int(fd), iov)
		return !(werr == unix.EAGAIN && n <= 0) // nothing taken: wait
	})
	l.conn.SetWriteDeadline(time.Time{})
	if errors.Is(err, os.ErrDeadlineExceeded) {
		l.congested = true
		go l.drain(rc)
		return 0, link.ErrQueueFull
	}
	if err != nil {
		return 0, fmt.Errorf("stream: write: %w", err)
	}
	if werr != nil && werr != unix.EAGAIN {
		return 0, fmt.Errorf("stream: write: %w", werr)
	}
	n = max(n, 0)
	// Find the frame the write stopped in. At a frame boundary nothing
	// needs finishing: the remaining frames are just dropped.
	end, whole := 0, 0
	for _, e := range l.ends {
		if e > n {
			end = e
			break
		}
		whole++
	}
	if end == 0 {
		return whole, nil
	}
	start := 0
	if whole > 0 {
		start = l.ends[whole-1]
	}
	if n == start {
		return whole, link.ErrQueueFull
	}
	// Keep what is left of that frame; the frames after it are dropped.
	tail := make([]byte, 0, end-n)
	for _, b := range consume(iov, n) {
		if len(tail)+len(b) >= end-n {
			tail = append(tail, b[:end-n-len(tail)]...)
			break
		}
		tail = append(tail, b...)
	}
	l.pending = tail
	l.congested = true
	go l.drain(rc)
	if whole+1 < len(l.ends) {
		return whole + 1, link.ErrQueueFull
	}
	return whole + 1, nil
}

// drain waits until the peer reads again, writes the kept end of a frame
// if there is one, and ends the congestion. It ends early when the
// connection closes.
func (l *Link) drain(rc syscall.RawConn) {
	rc.Write(func(fd uintptr) bool {
		l.wmu.Lock()
		defer l.wmu.Unlock()
		for len(l.pending) > 0 {
			n, err := unix.Write(int(fd), l.pending)
			switch {
			case err == unix.EINTR:
				continue
			case err == unix.EAGAIN:
				return false // wait until writable
			case err != nil:
				l.pending = nil
				return true
			}
			l.pending = l.pending[n:]
		}
		l.pending = nil
		if !writable(int(fd)) {
			return false
		}
		l.congested = false
		return true
	})
}

// writable polls the socket for room without waiting.
func writable(fd int) bool {
	p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
	n, err := unix.Poll(p, 0)
	return err == nil && n == 1 && p[0].Revents&unix.POLLOUT != 0
}

func (l *Link) blockingSend(iov net.Buffers) error {
	if _, err := iov.WriteTo(l.conn); err != nil {
		return fmt.Errorf("stream: write: %w", err)
	}
	return nil
}

// rawConn returns the connection's descriptor access, if it has one (a
// net.Pipe in tests has none).
func (l *Link) rawConn() (syscall.RawConn, error) {
	sc, ok := l.conn.(syscall.Conn)
	if !ok {
		return nil, errors.New("no descriptor")
	}
	return sc.SyscallConn()
}

// consume drops the first n bytes of iov.
func consume(iov net.Buffers, n int) net.Buffers {
	for len(iov) > 0 && n >= len(iov[0]) {
		n -= len(iov[0])
		iov = iov[1:]
	}
	if len(iov) > 0 {
		iov[0] = iov[0][n:]
	}
	return iov
}

// writev writes iov once, non-blocking; at most 1024 pieces (IOV_MAX).
func writev(fd int, iov net.Buffers) (int, error) {
	if len(iov) > 1024 {
		iov = iov[:1024]
	}
	for {
		n, err := writevOnce(fd, iov)
		if err != unix.EINTR {
			return n, err
		}
	}
}

// WriteVec sends frames from their pieces with one writev.
func (l *Link) WriteVec(frames []link.VecFrame) (int, error) {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if cap(l.prefixes) < len(frames) {
		l.prefixes = make([][4]byte, len(frames))
	}
	iov := l.iov[:0]
	l.ends = l.ends[:0]
	sent, off := 0, 0
	for i := range frames {
		f := &frames[i]
		size := f.Len()
		if size > MaxFrame {
			continue
		}
		binary.BigEndian.PutUint32(l.prefixes[i][:], uint32(size))
		iov = append(iov, l.prefixes[i][:])
		iov = append(iov, f.Segs...)
		off += 4 + size
		l.ends = append(l.ends, off)
		sent++
	}
	l.iov = iov[:0]
	if k, err := l.send(iov); err != nil {
		return k, err
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

var (
	_ link.Link      = (*Link)(nil)
	_ link.VecWriter = (*Link)(nil)
)
