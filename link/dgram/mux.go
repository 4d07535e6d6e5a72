package dgram

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/slipway-net/slipway/link"
)

// Mux defaults.
const (
	// DefaultMaxPeers bounds the peers one socket serves: each may hold
	// up to peerQueue full-size buffers.
	DefaultMaxPeers = 64
	// DefaultIdleTimeout forgets a peer that has sent nothing this long.
	DefaultIdleTimeout = 5 * time.Minute
	// peerQueue is how many frames wait for a peer's reader (the switch)
	// before more are dropped and counted.
	peerQueue = 32
	// acceptQueue is how many new peers wait for Accept.
	acceptQueue = 16
	// peerBatch is how many frames a peer's Read returns at most.
	peerBatch = 16
)

// vfkitMagic is the datagram vfkit (and krunkit with vfkitMagic=on) sends
// first to announce itself. It is not a frame.
const vfkitMagic = "VFKT"

// MuxOptions configure a Mux.
type MuxOptions struct {
	Options
	// MaxPeers bounds concurrent peers (DefaultMaxPeers if 0); datagrams
	// from further senders are dropped and counted.
	MaxPeers int
	// IdleTimeout forgets peers silent this long (DefaultIdleTimeout if 0).
	IdleTimeout time.Duration
	Logger      *slog.Logger
}

// MuxStats count datagrams no peer could take.
type MuxStats struct {
	// Unaddressable: from an unnamed socket, which cannot be answered.
	Unaddressable atomic.Uint64 `counter:"unaddressable"`
	// TooManyPeers: from a new sender while MaxPeers were served.
	TooManyPeers atomic.Uint64 `counter:"too_many_peers"`
}

// Mux serves many peers on one unconnected unix datagram socket, the way
// QEMU's -netdev dgram and vfkit/krunkit's unixgram expect: each sender
// address is one VM, answered at that address. One reader goroutine
// receives in batches and hands each datagram to its sender's queue by
// swapping buffers (no copy, no allocation); each peer is a link.Link
// whose Read drains that queue, so a slow VM delays only itself.
type Mux struct {
	conn *net.UnixConn
	rc   syscall.RawConn
	opts MuxOptions
	log  *slog.Logger

	peers  atomic.Pointer[map[addr]*Peer] // replaced whole on change
	mu     sync.Mutex                     // serialises changes to peers
	accept chan *Peer
	done   chan struct{}
	wg     sync.WaitGroup
	closed atomic.Bool
	err    error // why the reader stopped; set before accept is closed

	stats MuxStats
}

// NewMux serves peers on conn, a bound unix datagram socket.
func NewMux(conn *net.UnixConn, o MuxOptions) (*Mux, error) {
	o.complete()
	if o.MaxPeers <= 0 {
		o.MaxPeers = DefaultMaxPeers
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	rc, err := conn.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("dgram: %w", err)
	}
	setBuffers(rc)
	m := &Mux{conn: conn, rc: rc, opts: o, log: o.Logger,
		accept: make(chan *Peer, acceptQueue), done: make(chan struct{})}
	empty := map[addr]*Peer{}
	m.peers.Store(&empty)
	m.wg.Add(2)
	go m.readLoop()
	go m.expireLoop()
	return m, nil
}

// Accept returns the next new peer. It fails once the Mux is closed or
// its socket failed.
func (m *Mux) Accept() (*Peer, error) {
	p, ok := <-m.accept
	if !ok {
		if m.err != nil {
			return nil, m.err
		}
		return nil, net.ErrClosed
	}
	return p, nil
}

// Peers returns the peers served now.
func (m *Mux) Peers() []*Peer {
	var out []*Peer
	for _, p := range *m.peers.Load() {
		out = append(out, p)
	}
	return out
}

// Stats are the Mux's own drop counters.
func (m *Mux) Stats() *MuxStats { return &m.stats }

// Close stops the reader, closes the socket and every peer.
func (m *Mux) Close() error {
	if m.closed.Swap(true) {
		return nil
	}
	close(m.done)
	err := m.conn.Close()
	m.wg.Wait()
	for _, p := range m.Peers() {
		p.closeWith(net.ErrClosed)
	}
	return err
}

// readLoop receives datagrams and queues each for its sender.
func (m *Mux) readLoop() {
	defer m.wg.Done()
	defer close(m.accept)
	n := m.opts.Batch
	bufs, _ := link.NewBuffers(n)
	msgs := make([]rxMsg, n)
	rx := newRxBatch(n, true)
	var got int
	var rerr error
	recv := func(fd uintptr) bool {
		got, rerr = rx.recv(int(fd), bufs, msgs)
		return !errors.Is(rerr, unix.EAGAIN)
	}
	for {
		err := m.rc.Read(recv)
		if err == nil && rerr != nil && !errors.Is(rerr, unix.EINTR) {
			err = rerr
		}
		if err != nil {
			if !m.closed.Load() {
				m.err = fmt.Errorf("dgram: %s: receive: %w", m.opts.Name, err)
				m.log.Error("datagram socket failed", "socket", m.opts.Name, "err", err)
			}
			return
		}
		now := time.Now().UnixNano()
		for i := 0; i < got; i++ {
			m.dispatch(&bufs[i], msgs[i], now)
		}
	}
}

// dispatch hands one datagram to its sender's peer, creating the peer on
// its first datagram. buf is swapped with an empty buffer of the peer's.
func (m *Mux) dispatch(buf *[]byte, msg rxMsg, now int64) {
	if msg.from.n == 0 {
		if m.stats.Unaddressable.Add(1) == 1 {
			m.log.Warn("dropping datagrams from an unnamed socket: bind the sending socket to a path so replies can reach it", "socket", m.opts.Name)
		}
		return
	}
	p := (*m.peers.Load())[msg.from]
	isNew := p == nil
	if isNew {
		if p = m.addPeer(msg.from, now); p == nil {
			return
		}
	} else {
		p.last.Store(now)
	}
	// vfkit announces itself with "VFKT" before the first frame: consume
	// exactly that and only as a peer's first datagram.
	if isNew && !msg.trunc && msg.size == len(vfkitMagic) &&
		string((*buf)[link.VnetHdrLen:link.VnetHdrLen+len(vfkitMagic)]) == vfkitMagic {
		return
	}
	if msg.trunc {
		p.counters.RxOversized.Add(1)
		return
	}
	p.push(buf, msg.size)
}

// addPeer registers a new sender and offers it to Accept; nil if the
// limit is reached or nobody is accepting.
func (m *Mux) addPeer(a addr, now int64) *Peer {
	m.mu.Lock()
	defer m.mu.Unlock()
	old := *m.peers.Load()
	if len(old) >= m.opts.MaxPeers {
		if m.stats.TooManyPeers.Add(1) == 1 {
			m.log.Warn("too many datagram peers, dropping datagrams from new ones", "socket", m.opts.Name, "max", m.opts.MaxPeers)
		}
		return nil
	}
	p := newPeer(m, a)
	p.last.Store(now)
	select {
	case m.accept <- p:
	default:
		m.stats.TooManyPeers.Add(1)
		return nil
	}
	peers := make(map[addr]*Peer, len(old)+1)
	for k, v := range old {
		peers[k] = v
	}
	peers[a] = p
	m.peers.Store(&peers)
	m.log.Debug("new datagram peer", "socket", m.opts.Name, "peer", a.String())
	return p
}

// removePeer forgets p; its next datagram makes a new peer.
func (m *Mux) removePeer(p *Peer) {
	m.mu.Lock()
	defer m.mu.Unlock()
	old := *m.peers.Load()
	if old[p.addr] != p {
		return
	}
	peers := make(map[addr]*Peer, len(old))
	for k, v := range old {
		if v != p {
			peers[k] = v
		}
	}
	m.peers.Store(&peers)
}

// expireLoop forgets peers that fell silent: a VM that went away without
// a word (QEMU killed) leaves its address behind.
func (m *Mux) expireLoop() {
	defer m.wg.Done()
	every := max(m.opts.IdleTimeout/4, 10*time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-m.done:
			return
		case now := <-t.C:
			for _, p := range *m.peers.Load() {
				idle := now.Sub(time.Unix(0, p.last.Load()))
				if idle >= m.opts.IdleTimeout {
					m.log.Info("forgetting idle datagram peer", "socket", m.opts.Name, "peer", p.addr.String(), "idle", idle.Round(time.Second))
					p.closeWith(fmt.Errorf("%w: peer idle for %v", net.ErrClosed, m.opts.IdleTimeout))
				}
			}
		}
	}
}

// Peer is one sender on a Mux's socket, and the link to it.
type Peer struct {
	mux  *Mux
	addr addr
	to   *sockname
	name string

	// The queue from the reader (producer) to Read (consumer): slots
	// [head, tail) hold frames. Every slot owns a buffer; the producer
	// swaps its full buffer for the slot's empty one.
	ring []slot
	head atomic.Uint64
	tail atomic.Uint64
	wake chan struct{}
	last atomic.Int64 // unix nanoseconds of the last datagram

	closeOnce sync.Mutex
	closed    chan struct{}
	closeErr  error

	wmu sync.Mutex
	tx  sender

	counters link.Counters
}

type slot struct {
	buf  []byte
	size int
}

func newPeer(m *Mux, a addr) *Peer {
	p := &Peer{
		mux:    m,
		addr:   a,
		to:     newSockname(a),
		name:   fmt.Sprintf("%s (peer %s)", m.opts.Name, a),
		ring:   make([]slot, peerQueue),
		wake:   make(chan struct{}, 1),
		closed: make(chan struct{}),
	}
	p.tx = sender{maxFrame: m.opts.MaxFrame, counters: &p.counters, stallTimeout: m.opts.StallTimeout}
	return p
}

// push queues a received frame (in *buf after the header room), giving
// the reader back an empty buffer in its place. A full queue drops it.
func (p *Peer) push(buf *[]byte, size int) {
	t := p.tail.Load()
	if t-p.head.Load() >= uint64(len(p.ring)) {
		p.counters.RxOverrun.Add(1)
		return
	}
	s := &p.ring[t%uint64(len(p.ring))]
	if s.buf == nil {
		// First use of this slot: at most peerQueue buffers per
		// peer, allocated as its queue first fills.
		s.buf = make([]byte, link.BufSize)
	}
	*buf, s.buf = s.buf, *buf
	s.size = size
	p.tail.Store(t + 1)
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// Read returns queued frames, waiting for the first.
func (p *Peer) Read(bufs [][]byte, sizes []int) (int, error) {
	for {
		h, t := p.head.Load(), p.tail.Load()
		if h != t {
			n := 0
			for h != t && n < len(bufs) {
				s := &p.ring[h%uint64(len(p.ring))]
				copy(bufs[n][link.VnetHdrLen:], s.buf[link.VnetHdrLen:link.VnetHdrLen+s.size])
				setHeader(bufs[n], p.mux.opts.TrustChecksums)
				sizes[n] = s.size
				n++
				h++
			}
			p.head.Store(h)
			return n, nil
		}
		select {
		case <-p.wake:
		case <-p.closed:
			if p.head.Load() == p.tail.Load() {
				return 0, p.closeErr
			}
		}
	}
}

// Write sends frames to the peer's address through the shared socket,
// without copying them together.
func (p *Peer) Write(frames []link.Frame) (int, error) {
	if err := p.checkOpen(); err != nil {
		return 0, err
	}
	p.wmu.Lock()
	n, err := p.tx.write(p.mux.rc, frames, p.to)
	p.wmu.Unlock()
	return n, p.sendError(err)
}

func (p *Peer) checkOpen() error {
	select {
	case <-p.closed:
		return p.closeErr
	default:
		return nil
	}
}

// sendError passes ErrQueueFull on as it is and forgets a peer whose
// socket is gone.
func (p *Peer) sendError(err error) error {
	if err == nil || err == link.ErrQueueFull {
		return err
	}
	if peerGone(err) {
		p.mux.log.Info("datagram peer is gone", "socket", p.mux.opts.Name, "peer", p.addr.String(), "err", err)
		p.closeWith(fmt.Errorf("dgram: %s: %w", p.name, err))
	}
	return fmt.Errorf("dgram: %s: send: %w", p.name, err)
}

// closeWith ends the peer: Read returns err once the queue is drained.
func (p *Peer) closeWith(err error) {
	p.closeOnce.Lock()
	defer p.closeOnce.Unlock()
	select {
	case <-p.closed:
		return
	default:
	}
	// Forget the address first: once Read sees the end, the peer is
	// gone from the table.
	p.mux.removePeer(p)
	p.tx.closed.Store(true) // a drain still waiting for the peer ends
	p.closeErr = err
	close(p.closed)
}

// Close forgets the peer; the socket stays open for the others. A
// datagram that arrives from its address later makes a new peer.
func (p *Peer) Close() error {
	p.closeWith(net.ErrClosed)
	return nil
}

// Addr is the peer's socket address.
func (p *Peer) Addr() string { return p.addr.String() }

// BatchSize is how many frames a Read returns at most.
func (p *Peer) BatchSize() int { return peerBatch }

// Offloads is false: datagram peers exchange bare frames.
func (p *Peer) Offloads() bool { return false }

func (p *Peer) String() string { return p.name }

// Counters are the peer's own drop counters.
func (p *Peer) Counters() *link.Counters { return &p.counters }

var _ link.Link = (*Peer)(nil)
