package outbound

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/slipway-net/slipway/config"
	"github.com/slipway-net/slipway/internal/sysio"
)

// Keepalive on the guest side notices a guest that vanished with flows open.
const (
	keepaliveIdle     = 60 * time.Second
	keepaliveInterval = 10 * time.Second
	keepaliveCount    = 6
)

// guestReceiveBuffer is each flow's receive buffer limit in the stack.
// The window scale was fixed at the handshake from the stack's default
// buffer (1 MiB: scale 5, so at most 2 MiB can be advertised), and the
// stack offers half its free space; a limit of 16 MiB therefore keeps the
// advertised window pinned at that 2 MiB maximum, however much of it is
// queued. A constant window lets the guest's TCP take its fast path for
// every ACK (a window that moves with each ACK sends them all down the
// slow path: 18% of namespace→host throughput here). The limit is not
// memory held: the guest cannot send beyond the window, so a stalled flow
// holds at most the 2 MiB it allowed.
const guestReceiveBuffer = 16 << 20

// pendBufSize bounds what one guest-to-host pass copies aside when the host
// socket cannot take it at once.
const pendBufSize = 256 << 10

// directWriteMin is the size from which a chunk is written to the host
// socket straight from the stack's buffer instead of being coalesced.
const directWriteMin = 16 << 10

var pendPool = sync.Pool{New: func() any { b := make([]byte, 0, pendBufSize); return &b }}

// acceptTCP runs for every SYN with no listener, before a handshake
// slot is used: refused flows get a RST at once.
func (f *Forwarder) acceptTCP(id stack.TransportEndpointID) bool {
	_, dst := idEnds(id)
	return f.decide(config.TCP, dst).Allowed()
}

// handleTCP connects to the host first and completes the guest's handshake
// only when that succeeds, so a refused or unreachable destination shows up
// in the guest as a RST, the way a real connect fails.
func (f *Forwarder) handleTCP(r *tcp.ForwarderRequest) {
	guest, dst := idEnds(r.ID())
	v := f.o.Policy.Outbound(config.TCP, dst)
	if !v.Allowed() {
		r.Complete(true)
		return
	}
	flow := f.flows.open(config.TCP, guest, dst, v.Target)
	if flow == nil {
		f.log.Warn("flow limit reached, refusing TCP connection", "guest", guest, "dst", dst, "max-flows", f.o.MaxFlows)
		r.Complete(true)
		return
	}
	d := net.Dialer{Timeout: f.o.ConnectTimeout}
	if la := f.localAddr(v.Target.Addr()); la.IsValid() {
		d.LocalAddr = tcpAddr(netip.AddrPortFrom(la, 0))
	}
	c, err := d.DialContext(f.ctx, "tcp", v.Target.String())
	if err != nil {
		f.ConnectFailed.Add(1)
		f.log.Debug("host connect failed", "guest", guest, "dst", dst, "target", v.Target, "err", err)
		r.Complete(true)
		flow.Close()
		return
	}
	host := c.(*net.TCPConn)
	var wq waiter.Queue
	ep, terr := r.CreateEndpoint(&wq)
	if terr != nil {
		// The guest gave up (or the handshake failed) while we dialled.
		r.Complete(true)
		host.Close()
		flow.Close()
		return
	}
	r.Complete(false)
	StartTCPPump(flow, ep, &wq, host)
}

// tcpPump moves bytes both ways between a stack endpoint and a host socket.
// An idle flow has no goroutine: the stack's waiter queue calls kickGuest
// when the guest sent something, the flow table's poller calls kickHost when
// the host did, and each starts a drain goroutine for its direction that
// runs only until there is nothing left to move.
type tcpPump struct {
	flow *Flow
	ep   tcpip.Endpoint
	wq   *waiter.Queue
	host *net.TCPConn
	rc   syscall.RawConn
	fd   int
	poll *poller
	done chan struct{}

	guestEntry    waiter.Entry  // readable: kicks the guest-to-host drain
	guestWake     chan struct{} // wakes a lingering guest-to-host drain
	writableEntry waiter.Entry  // writable: wakes a host-to-guest drain waiting for room
	writable      chan struct{}
	hostWake      chan struct{} // wakes a lingering host-to-guest drain

	// guestBusy and hostBusy are set while a drain goroutine runs for
	// that direction, and stay set once the direction is finished.
	guestBusy, hostBusy atomic.Bool
	left                atomic.Int32        // directions still running
	w                   *hostWriter         // the guest-to-host drain's
	lw                  tcpip.LimitedWriter // caps one read of the guest-to-host drain
	src                 *sockPayload        // the host-to-guest drain's
	// The poll function of readableNow, bound once, and its results.
	probeFn func(fd uintptr) bool
	probe   probeResult
	// hostHasData's function, bound once, and its result.
	queuedFn func(fd uintptr)
	queued   bool
}

// StartTCPPump carries a connected stack endpoint and a host socket both
// ways until both directions end, then closes the flow. Guests' flows and
// connections to published ports share it. It takes ownership of ep and
// host.
func StartTCPPump(flow *Flow, ep tcpip.Endpoint, wq *waiter.Queue, host *net.TCPConn) {
	// Keepalive notices a guest that vanished; no Nagle delay, since the
	// host side already decided how to batch its writes.
	ep.SocketOptions().SetKeepAlive(true)
	idle, intvl := tcpip.KeepaliveIdleOption(keepaliveIdle), tcpip.KeepaliveIntervalOption(keepaliveInterval)
	ep.SetSockOpt(&idle)
	ep.SetSockOpt(&intvl)
	ep.SetSockOptInt(tcpip.KeepaliveCountOption, keepaliveCount)
	ep.SocketOptions().SetDelayOption(false)
	ep.SocketOptions().SetReceiveBufferSize(guestReceiveBuffer, true)
	rc, err := host.SyscallConn()
	poll, perr := flow.table.poller()
	if err != nil || perr != nil {
		ep.Abort()
		host.Close()
		flow.Close()
		return
	}
	fd := -1
	rc.Control(func(f uintptr) { fd = int(f) })
	p := &tcpPump{flow: flow, ep: ep, wq: wq, host: host, rc: rc, fd: fd, poll: poll, done: make(chan struct{})}
	p.w = newHostWriter(rc, host)
	p.lw.W = p.w
	p.guestWake = make(chan struct{}, 1)
	p.hostWake = make(chan struct{}, 1)
	p.src = newSockPayload(rc)
	p.probeFn = p.probe.poll
	p.queuedFn = func(fd uintptr) {
		n, err := unix.IoctlGetInt(int(fd), fionread)
		p.queued = err == nil && n > 0
	}
	p.guestEntry = waiter.NewFunctionEntry(waiter.ReadableEvents|waiter.EventHUp|waiter.EventErr, func(waiter.EventMask) { p.kickGuest() })
	p.writableEntry, p.writable = waiter.NewChannelEntry(waiter.WritableEvents | waiter.EventHUp | waiter.EventErr)
	var once sync.Once
	flow.closeFn = func() {
		once.Do(func() {
			close(p.done)
			p.wq.EventUnregister(&p.guestEntry)
			p.wq.EventUnregister(&p.writableEntry)
			p.poll.forget(p.fd) // before the descriptor can be reused
			p.ep.Close()
			p.host.Close()
		})
	}
	flow.setState("established")
	p.left.Store(2)
	p.wq.EventRegister(&p.writableEntry)
	p.wq.EventRegister(&p.guestEntry)
	if err := poll.watch(rc, fd, p.kickHost); err != nil {
		p.abort(false)
		return
	}
	// Data may have arrived before the entries were registered.
	p.kickGuest()
}

func (p *tcpPump) finish() {
	if p.left.Add(-1) == 0 {
		p.flow.Close()
	}
}

// abort ends both directions at once: a reset on one side becomes a reset
// on the other.
func (p *tcpPump) abort(resetHost bool) {
	if resetHost {
		p.host.SetLinger(0)
	}
	p.ep.Abort()
	p.flow.Close()
}

// linger is how long a drain goroutine waits for more data before it
// hands its flow back to the idle machinery: a flow in active use (request
// and response) keeps a goroutine woken directly by Go's poller or the
// stack, and only a flow idle this long costs none.
const linger = 50 * time.Millisecond

// kickGuest starts the guest-to-host drain unless it runs already (and
// wakes it if it lingers). It is called by the stack's notifier and must
// not block.
func (p *tcpPump) kickGuest() {
	if p.guestBusy.CompareAndSwap(false, true) {
		go p.drainGuest()
		return
	}
	select {
	case p.guestWake <- struct{}{}:
	default:
	}
}

// kickHost starts the host-to-guest drain unless it runs already (and
// wakes it if it lingers). It is called by the poller and by the
// guest-to-host drain, and must not block.
func (p *tcpPump) kickHost() {
	if p.hostBusy.CompareAndSwap(false, true) {
		go p.drainHost()
		return
	}
	select {
	case p.hostWake <- struct{}{}:
	default:
	}
}

// hostHasData says whether the host socket holds bytes to read now. It is
// the guest-to-host drain's: hostPending's probe belongs to the other
// drain, which may be running at the same time.
func (p *tcpPump) hostHasData() bool {
	p.queued = false
	p.rc.Control(p.queuedFn)
	return p.queued
}

// drainGuest reads what the guest sent straight out of the stack's buffers
// into the host socket, until there is no more for a while.
func (p *tcpPump) drainGuest() {
	var idle idleWait
	defer idle.stop()
	for {
		p.lw.N = pendBufSize
		res, terr := p.ep.Read(&p.lw, tcpip.ReadOptions{})
		if err := p.w.flush(); err != nil {
			p.abort(false)
			return
		}
		switch terr.(type) {
		case nil:
			p.flow.ToHost.Add(uint64(res.Count))
			// A server on this host often answers before our write
			// returns: hand its answer on from this thread now, rather
			// than wait for a poller on another CPU to be woken for it.
			if p.hostHasData() {
				p.kickHost()
			}
		case *tcpip.ErrWouldBlock:
			if !idle.wait(p.guestWake, p.done, &p.guestBusy, p.guestPending) {
				return
			}
		case *tcpip.ErrClosedForReceive:
			// The guest sent FIN: pass the half-close on. guestBusy
			// stays set: this direction is over.
			p.flow.setState("guest closed")
			p.host.CloseWrite()
			p.finish()
			return
		default:
			// Reset or timed out (keepalive): the guest is gone.
			p.abort(true)
			return
		}
	}
}

// drainHost lets the stack read the host socket directly into its own send
// buffer, sized by how much the socket holds (FIONREAD), so there is no
// intermediate copy and no buffer held while the flow is idle; then it
// re-arms the poller and ends.
func (p *tcpPump) drainHost() {
	var idle idleWait
	defer idle.stop()
	for {
		avail, eof, empty, err := p.readableNow()
		switch {
		case err != nil:
			p.abort(false)
			return
		case eof:
			// hostBusy stays set: this direction is over.
			p.flow.setState("host closed")
			p.poll.forget(p.fd)
			p.ep.Shutdown(tcpip.ShutdownWrite)
			p.finish()
			return
		case empty:
			if p.lingerHost(&idle) {
				continue
			}
			return
		}
		p.src.avail = avail
		for p.src.avail > 0 {
			n, terr := p.ep.Write(p.src, tcpip.WriteOptions{})
			if p.src.err != nil {
				p.abort(false)
				return
			}
			switch terr.(type) {
			case nil:
				p.src.avail -= int(n)
				p.flow.ToGuest.Add(uint64(n))
			case *tcpip.ErrWouldBlock:
				select {
				case <-p.writable:
				case <-p.done:
					return
				}
			default:
				p.abort(true)
				return
			}
		}
	}
}

// lingerHost arms the poller and waits for more as idleWait does; the
// host-to-guest drain is woken by the poller, or by the guest-to-host
// drain that saw an answer arrive.
func (p *tcpPump) lingerHost(idle *idleWait) bool {
	if p.poll.rearm(p.fd) != nil {
		select {
		case <-p.done: // closed meanwhile
		default:
			p.abort(false)
		}
		return false
	}
	return idle.wait(p.hostWake, p.done, &p.hostBusy, p.hostPending)
}

// guestPending says whether the guest sent something (or closed).
func (p *tcpPump) guestPending() bool {
	return p.ep.Readiness(waiter.ReadableEvents|waiter.EventHUp|waiter.EventErr) != 0
}

// hostPending says whether the host socket holds data, or closed or
// failed.
func (p *tcpPump) hostPending() bool {
	avail, eof, _, err := p.readableNow()
	return avail > 0 || eof || err != nil
}

// idleWait is a drain's wait for more work: up to linger for a wake-up,
// after which the direction goes back to the idle machinery. Its timer is
// made once per drain.
type idleWait struct{ timer *time.Timer }

// wait reports whether the drain goes on: it was woken, or, after linger,
// it finds work (pending) that a kick announced in the gap, to a drain that
// still looked busy, and no one else has taken the direction over. false:
// the flow closed, or the direction is idle now.
func (w *idleWait) wait(wake, done <-chan struct{}, busy *atomic.Bool, pending func() bool) bool {
	if w.timer == nil {
		w.timer = time.NewTimer(linger)
	} else {
		w.timer.Reset(linger)
	}
	select {
	case <-wake:
		return true
	case <-done:
		return false
	case <-w.timer.C:
	}
	busy.Store(false)
	return pending() && busy.CompareAndSwap(false, true)
}

func (w *idleWait) stop() {
	if w.timer != nil {
		w.timer.Stop()
	}
}

// probeResult is what readableNow found: how much the socket holds,
// whether the peer closed, or that it is empty.
type probeResult struct {
	avail      int
	eof, empty bool
	err        error
}

// poll fills r without waiting; it is a RawConn poll function.
func (r *probeResult) poll(fd uintptr) bool {
	*r = probeResult{}
	n, e := unix.IoctlGetInt(int(fd), fionread)
	if e != nil {
		r.err = e
		return true
	}
	if n > 0 {
		r.avail = n
		return true
	}
	// Nothing queued: either nothing yet, or the peer closed.
	var b [1]byte
	for {
		m, _, e := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		switch {
		case e == unix.EINTR:
			continue
		case e == unix.EAGAIN:
			r.empty = true
		case e != nil:
			r.err = e
		case m == 0:
			r.eof = true
		default:
			r.avail = 1
		}
		return true
	}
}

// readableNow says, without waiting, how much the host socket holds,
// whether the peer closed, or that it is empty.
func (p *tcpPump) readableNow() (avail int, eof, empty bool, err error) {
	if rerr := p.rc.Read(p.probeFn); rerr != nil {
		return 0, false, false, rerr
	}
	r := p.probe
	return r.avail, r.eof, r.empty, r.err
}

// sockPayload is a tcpip.Payloader reading from a host socket.
type sockPayload struct {
	rc    syscall.RawConn
	avail int
	err   error

	// One read call's argument and results, and the function making it,
	// bound once (a closure per call would allocate per chunk).
	buf    []byte
	n      int
	e      error
	readFn func(fd uintptr) bool
}

func newSockPayload(rc syscall.RawConn) *sockPayload {
	s := &sockPayload{rc: rc}
	s.readFn = func(fd uintptr) bool {
		for {
			s.n, s.e = unix.Read(int(fd), s.buf)
			if s.e != unix.EINTR {
				return true
			}
		}
	}
	return s
}

func (s *sockPayload) Len() int { return s.avail }

func (s *sockPayload) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	s.buf = b
	err := s.rc.Read(s.readFn)
	n, e := s.n, s.e
	s.buf, s.e = nil, nil
	if err != nil {
		s.err = err
		return 0, err
	}
	switch {
	case e == unix.EAGAIN:
		return 0, errNoData
	case e != nil:
		s.err = e
		return 0, e
	case n == 0:
		return 0, errNoData
	}
	return n, nil
}

// errNoData ends one read pass early; it is not a failure of the flow.
var errNoData = errors.New("no data queued")

// hostWriter writes what the stack hands it to the host socket: large
// chunks directly if the socket takes them without blocking, the rest
// coalesced in a pooled buffer that flush writes out (blocking) after the
// stack's read returns, so the stack is never held while the host is slow.
// Small chunks coalesced before a large one go out with it in one writev:
// each segment's payload starts with the few bytes that share a view with
// its headers, and coalescing those must not drag the large rest of the
// segment through the copy too.
type hostWriter struct {
	rc   syscall.RawConn
	host *net.TCPConn
	pend *[]byte

	// One write call's argument and results, and the function making it,
	// bound once (a closure per call would allocate per chunk).
	vec     [2][]byte
	iov     [][]byte
	n       int
	e       error
	writeFn func(fd uintptr) bool
}

func newHostWriter(rc syscall.RawConn, host *net.TCPConn) *hostWriter {
	w := &hostWriter{rc: rc, host: host}
	w.writeFn = func(fd uintptr) bool {
		w.n, w.e = sysio.Writev(int(fd), w.iov)
		return true
	}
	return w
}

func (w *hostWriter) Write(b []byte) (int, error) {
	total := len(b)
	if len(b) >= directWriteMin {
		w.vec[0], w.vec[1] = nil, b
		w.iov = w.vec[1:]
		held := 0
		if w.pend != nil && len(*w.pend) > 0 {
			held = len(*w.pend)
			w.vec[0] = *w.pend
			w.iov = w.vec[:]
		}
		err := w.rc.Write(w.writeFn)
		n, e := w.n, w.e
		w.vec, w.iov, w.e = [2][]byte{}, nil, nil
		if err != nil {
			return 0, err
		}
		if e != nil && e != unix.EAGAIN {
			return 0, e
		}
		n = max(n, 0)
		if held > 0 {
			if n < held {
				// The coalesced bytes went out in part: keep the rest
				// first in line, and b after it.
				*w.pend = (*w.pend)[:copy(*w.pend, (*w.pend)[n:])]
				n = 0
			} else {
				*w.pend = (*w.pend)[:0]
				n -= held
			}
		}
		b = b[n:]
		if len(b) == 0 {
			return total, nil
		}
	}
	if w.pend == nil {
		w.pend = pendPool.Get().(*[]byte)
	}
	*w.pend = append(*w.pend, b...)
	return total, nil
}

func (w *hostWriter) flush() error {
	if w.pend == nil {
		return nil
	}
	var err error
	if len(*w.pend) > 0 {
		_, err = w.host.Write(*w.pend)
	}
	*w.pend = (*w.pend)[:0]
	pendPool.Put(w.pend)
	w.pend = nil
	return err
}
