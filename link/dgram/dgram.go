// Package dgram carries Ethernet frames over sockets that keep message
// boundaries, one bare frame per message with no length and no header:
// SOCK_DGRAM (QEMU -netdev dgram, -netdev socket with a datagram fd,
// vfkit and krunkit unixgram) and SOCK_SEQPACKET (User Mode Linux bess,
// FreeBSD bhyve's slirp helper).
//
// Conn is a link over one connected socket. Mux serves any number of peers
// on one unconnected datagram socket, each sender address its own link. On
// Linux both move frames in batches with recvmmsg and sendmmsg; elsewhere
// (macOS, the BSDs) with one recvmsg or sendmsg a frame. Neither allocates
// per frame.
package dgram

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/slipway-net/slipway/link"
)

// DefaultBatch is how many frames one Read or receive call moves at most.
const DefaultBatch = 32

// rxMsg describes one received message.
type rxMsg struct {
	size  int
	trunc bool // larger than the buffer; the rest was discarded
	from  addr
}

// addr is a sender's socket address as the kernel reports it: the bytes
// of sun_path (an abstract Linux name starts with a NUL). It is
// comparable, so it keys the peer table without allocating. n == 0 means
// the sender's socket has no name, so nothing can be sent back to it.
type addr struct {
	n    uint8
	path [108]byte
}

func (a addr) String() string {
	if a.n > 0 && a.path[0] == 0 {
		return "@" + string(a.path[1:a.n])
	}
	return string(a.path[:a.n])
}

// Options describe a link's peer.
type Options struct {
	// Name describes the link in logs and the control API.
	Name string
	// TrustChecksums marks every received frame DATA_VALID, so the stack
	// does not check its TCP/UDP checksum. Offloading peers (krunkit
	// offloading=on) hand over frames whose checksum is only partial and
	// have no header to say so.
	TrustChecksums bool
	// MaxFrame is the largest frame sent to the peer; larger ones are
	// dropped and counted (default link.MaxFrameLen). bhyve, for one,
	// takes at most 2048 bytes a message.
	MaxFrame int
	// MaxRxFrame, if set, is the largest frame taken from the peer;
	// longer ones are dropped and counted as rx_oversized, as those too
	// large for a buffer are.
	MaxRxFrame int
	// Batch is how many frames a Read returns at most (DefaultBatch if 0).
	Batch int
	// ProbeIdle applies to connected datagram sockets, which never learn
	// that their peer closed until they send to it: after this long
	// without a frame from the peer, the link sends it a probe frame no
	// receiver accepts, and ends if the peer is gone
	// (DefaultProbeIdle if 0; negative never probes).
	ProbeIdle time.Duration
	// StallTimeout is how long a peer that stopped reading (a paused VM)
	// keeps the frames queued for it before they are dropped and counted
	// as tx_stalled (DefaultStallTimeout if 0).
	StallTimeout time.Duration
}

// DefaultProbeIdle is how long a connected datagram peer may be silent
// before the link checks that it still exists.
const DefaultProbeIdle = 10 * time.Second

// probeFrame is what a liveness probe sends: an Ethernet frame from and
// to the all-zero address, which no NIC accepts, of the IEEE local
// experimental EtherType 0x88b5, padded to the minimum frame size.
var probeFrame = func() []byte {
	b := make([]byte, link.VnetHdrLen+60)
	b[link.VnetHdrLen+12], b[link.VnetHdrLen+13] = 0x88, 0xb5
	copy(b[link.VnetHdrLen+14:], "slipway: is the VM still there?")
	return b
}()

func (o *Options) complete() {
	if o.MaxFrame <= 0 || o.MaxFrame > link.MaxFrameLen {
		o.MaxFrame = link.MaxFrameLen
	}
	if o.StallTimeout <= 0 {
		o.StallTimeout = DefaultStallTimeout
	}
	if o.Batch <= 0 {
		o.Batch = DefaultBatch
	}
}

// Conn is a link over one connected datagram or seqpacket socket.
type Conn struct {
	conn      syscallCloser
	rc        syscall.RawConn
	opts      Options
	seqpacket bool

	// Read is called by one goroutine at a time (the switch port).
	rx     *rxBatch
	rxMsg  []rxMsg
	hup    bool                  // the peer hung up; reported once queued frames are out
	heard  atomic.Bool           // a frame arrived since the last probe check
	gone   atomic.Pointer[error] // why a send found the peer gone
	done   chan struct{}
	once   sync.Once
	rxBufs [][]byte
	rxGot  int
	rxErr  error
	recvFn func(fd uintptr) bool // l.recvOnce, bound once: no allocation per Read

	wmu sync.Mutex
	tx  sender

	counters link.Counters
}

// syscallCloser is what Conn needs of a socket: *net.UnixConn has it.
type syscallCloser interface {
	syscall.Conn
	io.Closer
}

// NewConn wraps a connected SOCK_DGRAM or SOCK_SEQPACKET unix socket.
func NewConn(c syscallCloser, o Options) (*Conn, error) {
	o.complete()
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("dgram: %w", err)
	}
	var typ int
	var serr error
	if err := rc.Control(func(fd uintptr) {
		typ, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TYPE)
	}); err != nil {
		return nil, fmt.Errorf("dgram: %w", err)
	}
	if serr != nil {
		return nil, fmt.Errorf("dgram: socket type: %w", serr)
	}
	if typ != unix.SOCK_DGRAM && typ != unix.SOCK_SEQPACKET {
		return nil, fmt.Errorf("dgram: %s: socket type %d is neither SOCK_DGRAM nor SOCK_SEQPACKET", o.Name, typ)
	}
	l := &Conn{conn: c, rc: rc, opts: o, seqpacket: typ == unix.SOCK_SEQPACKET}
	l.rx = newRxBatch(o.Batch, false)
	l.recvFn = l.recvOnce
	l.rxMsg = make([]rxMsg, o.Batch)
	l.tx = sender{maxFrame: o.MaxFrame, counters: &l.counters, stallTimeout: o.StallTimeout}
	if l.seqpacket {
		// One frame, one record, as bhyve and UML send them.
		l.tx.flags = unix.MSG_EOR
	}
	setBuffers(rc)
	l.done = make(chan struct{})
	if typ == unix.SOCK_DGRAM && o.ProbeIdle >= 0 {
		if o.ProbeIdle == 0 {
			o.ProbeIdle = DefaultProbeIdle
		}
		go l.probe(o.ProbeIdle)
	}
	return l, nil
}

// setBuffers asks for 4 MiB socket buffers each way; the kernel caps them
// at its limits (net.core.wmem_max, rmem_max). The send buffer is shared
// by every peer of a listening socket, and what a peer has not read yet
// stays charged to it (up to net.unix.max_dgram_qlen datagrams a peer):
// the larger it is, the more paused VMs it takes before the others' frames
// find no room.
func setBuffers(rc syscall.RawConn) {
	rc.Control(func(fd uintptr) {
		unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF, 4<<20)
		unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
	})
}

// ErrPeerClosed reports that a seqpacket peer hung up.
var ErrPeerClosed = errors.New("peer closed the connection")

// Read blocks until frames arrive and returns them. Messages that do not
// hold a frame are handled here: too large ones are dropped and counted,
// short and empty ones are passed on with their size for the switch to
// count as runts. A seqpacket peer's hang-up ends the link.
func (l *Conn) Read(bufs [][]byte, sizes []int) (int, error) {
	for {
		if l.hup {
			return 0, ErrPeerClosed
		}
		l.rxBufs = bufs
		err := l.rc.Read(l.recvFn)
		l.rxBufs = nil
		if err != nil {
			if gone := l.gone.Load(); gone != nil {
				return 0, *gone
			}
			return 0, err
		}
		if l.rxErr != nil && !errors.Is(l.rxErr, unix.EINTR) {
			return 0, fmt.Errorf("dgram: %s: receive: %w", l.opts.Name, l.rxErr)
		}
		if l.rxGot > 0 {
			l.heard.Store(true)
		}
		n := l.collect(bufs, sizes, l.rxGot)
		if n > 0 || l.hup {
			return n, nil
		}
	}
}

// recvOnce receives a batch; false asks the poller to wait for more.
func (l *Conn) recvOnce(fd uintptr) bool {
	l.rxGot, l.rxErr = l.rx.recv(int(fd), l.rxBufs, l.rxMsg)
	return !errors.Is(l.rxErr, unix.EAGAIN)
}

// collect turns received messages into frames, compacting the batch when
// one is dropped (rare, so the copy does not matter).
func (l *Conn) collect(bufs [][]byte, sizes []int, got int) int {
	// Trailing empty seqpacket messages may be the kernel's way of
	// saying end-of-file: recvmmsg fills the batch with them.
	end := got
	if l.seqpacket {
		for end > 0 && l.rxMsg[end-1].size == 0 {
			end--
		}
		if end < got && l.peerHungUp() {
			l.hup = true
			got = end
		}
	}
	n := 0
	for i := 0; i < got; i++ {
		m := l.rxMsg[i]
		if m.trunc || l.opts.MaxRxFrame > 0 && m.size > l.opts.MaxRxFrame {
			l.counters.RxOversized.Add(1)
			continue
		}
		if n != i {
			copy(bufs[n][link.VnetHdrLen:], bufs[i][link.VnetHdrLen:link.VnetHdrLen+m.size])
		}
		setHeader(bufs[n], l.opts.TrustChecksums)
		sizes[n] = m.size
		n++
	}
	return n
}

// peerHungUp asks the kernel whether the peer closed its end: an empty
// message and end-of-file look alike to recvmmsg.
func (l *Conn) peerHungUp() bool {
	hup := false
	l.rc.Control(func(fd uintptr) {
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN | pollRDHUP}}
		if n, err := unix.Poll(pfd, 0); err == nil && n > 0 {
			hup = pfd[0].Revents&(unix.POLLHUP|pollRDHUP) != 0
		}
	})
	return hup
}

// setHeader writes the virtio-net header of a received frame: nothing to
// offload, and the checksum vouched for when the peer is trusted.
func setHeader(buf []byte, trusted bool) {
	link.ClearVnetHdr(buf)
	if trusted {
		buf[0] = link.FlagDataValid
	}
}

// Write sends frames, one message each, in as few system calls as the
// kernel allows; each message is gathered from its frame's pieces by the
// kernel, so the stack's frames are never copied together. It may be
// called concurrently.
func (l *Conn) Write(frames []link.Frame) (int, error) {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	n, err := l.tx.write(l.rc, frames, nil)
	return n, l.sendError(err)
}

// sendError passes ErrQueueFull on as it is, and closes the link on an
// error meaning its peer is gone: a datagram socketpair whose other end
// closed never reads end-of-file, this is how its end shows.
func (l *Conn) sendError(err error) error {
	if err == nil || err == link.ErrQueueFull {
		return err
	}
	wrapped := fmt.Errorf("dgram: %s: send: %w", l.opts.Name, err)
	if peerGone(err) {
		// Read then reports why the link ended, not just "closed".
		l.gone.CompareAndSwap(nil, &wrapped)
		l.conn.Close()
	}
	return wrapped
}

// BatchSize is how many frames one Read returns at most.
func (l *Conn) BatchSize() int { return l.opts.Batch }

// Offloads is false: these peers exchange bare frames.
func (l *Conn) Offloads() bool { return false }

// Close closes the socket; a blocked Read returns.
func (l *Conn) Close() error {
	l.tx.closed.Store(true)
	l.once.Do(func() { close(l.done) })
	return l.conn.Close()
}

// probe sends a probe frame whenever the peer was silent for a while; a
// send to a peer that is gone fails, which closes the link (see Write).
func (l *Conn) probe(every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-l.done:
			return
		case <-t.C:
			if !l.heard.Swap(false) {
				if _, err := l.Write([]link.Frame{link.Contiguous(probeFrame)}); err != nil && peerGone(err) {
					return
				}
			}
		}
	}
}

func (l *Conn) String() string { return l.opts.Name }

// Counters are the link's own drop counters.
func (l *Conn) Counters() *link.Counters { return &l.counters }

var _ link.Link = (*Conn)(nil)
