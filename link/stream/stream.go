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
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/slipway-net/slipway/internal/sysio"
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
	// queue holds copies of frames (prefix included) the socket did not
	// take yet, queued bytes in total, in order; draining is set while a
	// drain goroutine writes them.
	queue    []*[]byte
	queued   int
	draining bool
	// rc is the connection's descriptor access (nil for a connection
	// without one, a net.Pipe in tests), and writeFn the write it makes,
	// bound once with its argument and results so a write allocates
	// nothing.
	rc      syscall.RawConn
	writeFn func(fd uintptr) bool
	wIov    net.Buffers
	wN      int
	wErr    error

	counters link.Counters
}

// New wraps a connected stream socket. desc names it in logs.
func New(conn net.Conn, desc string) *Link {
	l := &Link{conn: conn, desc: desc, r: bufio.NewReaderSize(conn, readBufSize)}
	l.rc, _ = l.rawConn()
	l.writeFn = func(fd uintptr) bool {
		l.wN, l.wErr = writev(int(fd), l.wIov)
		return true
	}
	l.growSendBuffer()
	return l
}

// sendBuffer is the socket send buffer asked for: room for dozens of 64 KiB
// frames, so a guest that reads in bursts (a TCG guest does) does not
// overflow it; the kernel caps it at net.core.wmem_max.
const sendBuffer = 4 << 20

func (l *Link) growSendBuffer() {
	if l.rc == nil {
		return
	}
	l.rc.Control(func(fd uintptr) {
		unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF, sendBuffer)
	})
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

// queueLimit bounds the bytes waiting in a link's transmit queue. When the
// peer's socket is full (a busy TCG guest reads in bursts; stock Linux
// gives a unix socket ~208 KiB, three large frames), frames wait here
// instead of being dropped: drops would turn a guest's burstiness into TCP
// loss. Past the limit (a paused VM) frames are dropped, as a full NIC
// queue drops them, and the stack's goroutines are never held up.
const queueLimit = 4 << 20

var frameCopies = sync.Pool{New: func() any { b := make([]byte, 0, 4+MaxFrame); return &b }}

// send writes a batch (frames laid out as prefix+pieces, ending at l.ends)
// without ever blocking. While nothing is queued it writes directly from
// the caller's slices, no copy; whatever the socket does not take (the rest
// of a frame it took in part, and the frames after it) is copied into the
// queue for the drain goroutine. l.wmu is held. It returns how many frames
// went out or were queued.
func (l *Link) send(iov net.Buffers) (int, error) {
	n := 0
	// While the drain goroutine runs, everything goes through the queue,
	// or frames would overtake (or interleave with) queued ones.
	if !l.draining {
		if l.rc == nil {
			return 0, l.blockingSend(iov)
		}
		l.wIov = iov
		err := l.rc.Write(l.writeFn)
		werr := l.wErr
		n = l.wN
		l.wIov, l.wErr = nil, nil
		if err != nil {
			return 0, fmt.Errorf("stream: write: %w", err)
		}
		if werr != nil && werr != unix.EAGAIN {
			return 0, fmt.Errorf("stream: write: %w", werr)
		}
		n = max(n, 0)
	}
	// Queue what is left, frame by frame, from byte n on.
	rest := consume(iov, n)
	whole, start := 0, 0
	for _, end := range l.ends {
		if end <= n {
			whole++
			start = end
			continue
		}
		from := max(start, n) // a frame the socket took in part resumes mid-frame
		size := end - from
		if l.queued+size > queueLimit && from == start {
			break // no room; a started frame must be finished, though
		}
		bp := frameCopies.Get().(*[]byte)
		buf := (*bp)[:0]
		for len(buf) < size {
			take := min(len(rest[0]), size-len(buf))
			buf = append(buf, rest[0][:take]...)
			rest = consume(rest, take)
		}
		*bp = buf
		l.queue = append(l.queue, bp)
		l.queued += size
		whole++
		start = end
	}
	if len(l.queue) > 0 && !l.draining {
		l.draining = true
		go l.drain()
	}
	if whole < len(l.ends) {
		return whole, link.ErrQueueFull
	}
	return whole, nil
}

// drain writes the queued frames, blocking on the socket as long as the
// peer needs, until the queue is empty or the connection fails.
func (l *Link) drain() {
	for {
		l.wmu.Lock()
		batch := l.queue
		l.queue = nil
		if len(batch) == 0 {
			l.draining = false
			l.wmu.Unlock()
			return
		}
		l.wmu.Unlock()
		iov := make(net.Buffers, len(batch))
		for i, bp := range batch {
			iov[i] = *bp
		}
		_, err := iov.WriteTo(l.conn)
		l.wmu.Lock()
		for _, bp := range batch {
			l.queued -= len(*bp)
			frameCopies.Put(bp)
		}
		if err != nil {
			for _, bp := range l.queue {
				frameCopies.Put(bp)
			}
			l.queue, l.queued, l.draining = nil, 0, false
			l.wmu.Unlock()
			return
		}
		l.wmu.Unlock()
	}
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
		n, err := sysio.Writev(fd, iov)
		if err != unix.EINTR {
			return n, err
		}
	}
}

// Write sends frames, each from its pieces, with one writev. Frames
// larger than MaxFrame are dropped: QEMU would otherwise close the
// connection.
func (l *Link) Write(frames []link.Frame) (int, error) {
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
			l.counters.TxTooLarge.Add(1)
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

// Counters are the link's own drop counters.
func (l *Link) Counters() *link.Counters { return &l.counters }

var _ link.Link = (*Link)(nil)
