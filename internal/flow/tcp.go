package flow

import (
	"io"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/waiter"
)

// The TCP pump moves a connection's bytes between a stack endpoint (the
// guest's end) and a host socket, each way on its own (see direction):
//
//	guest → host: the stack's waiter queue kicks it when the guest sent
//	              something; it reads the endpoint straight into the host
//	              socket (hostWriter).
//	host → guest: the table's poller kicks it when the host socket has
//	              data; the stack reads the socket straight into its send
//	              buffer (sockPayload).
//
// An idle flow has no goroutine. A half-close is passed on (the guest's FIN
// becomes shutdown(SHUT_WR) on the host socket, the host's EOF a FIN to the
// guest); a reset on either side resets the other. The flow closes once
// both directions have ended, or at once on a reset.

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
// slow path). The limit is not memory held: the guest cannot send beyond
// the window, so a stalled flow holds at most the 2 MiB it allowed.
const guestReceiveBuffer = 16 << 20

// HostConn is the host side of a TCP flow: a connected stream socket whose
// descriptor the poller can watch (*net.TCPConn; a *net.UnixConn in tests).
type HostConn interface {
	syscall.Conn
	io.Writer
	CloseWrite() error
	Close() error
}

// tcpPump is one TCP flow's pump. Its two directions share nothing but the
// flow: each has its own drain, buffers and wake-ups.
type tcpPump struct {
	flow *Flow
	ep   tcpip.Endpoint
	wq   *waiter.Queue
	host HostConn
	rc   syscall.RawConn
	fd   int
	poll *poller

	toHost, toGuest direction
	left            atomic.Int32 // directions still running

	guestEntry    waiter.Entry  // readable: kicks the guest-to-host drain
	writableEntry waiter.Entry  // writable: wakes a host-to-guest drain waiting for room
	writable      chan struct{} // of writableEntry

	w   *hostWriter         // the guest-to-host drain's
	lw  tcpip.LimitedWriter // caps one read of the guest-to-host drain
	src *sockPayload        // the host-to-guest drain's
	// The poll function of readableNow, bound once, and its results
	// (the host-to-guest drain's).
	probeFn func(fd uintptr) bool
	probe   probeResult
	// hostHasData's function, bound once, and its result (the
	// guest-to-host drain's).
	queuedFn func(fd uintptr)
	queued   bool
}

// PumpTCP carries a connected stack endpoint and a host socket both ways
// until both directions end, then closes the flow. Guests' flows and
// connections to published ports share it. It takes ownership of ep and
// host: they are released when the flow closes, also if it was closed
// already (then nothing is carried).
func PumpTCP(flow *Flow, ep tcpip.Endpoint, wq *waiter.Queue, host HostConn) {
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
		flow.Start(func() {
			ep.Abort()
			host.Close()
		})
		flow.Close()
		return
	}
	fd := -1
	rc.Control(func(f uintptr) { fd = int(f) })
	p := &tcpPump{flow: flow, ep: ep, wq: wq, host: host, rc: rc, fd: fd, poll: poll}
	p.toHost.init(p.drainGuest, p.guestPending)
	p.toGuest.init(p.drainHost, p.hostPending)
	p.w = newHostWriter(rc, host)
	p.lw.W = p.w
	p.src = newSockPayload(rc)
	p.probeFn = p.probe.poll
	p.queuedFn = func(fd uintptr) {
		n, err := unix.IoctlGetInt(int(fd), fionread)
		p.queued = err == nil && n > 0
	}
	p.guestEntry = waiter.NewFunctionEntry(waiter.ReadableEvents|waiter.EventHUp|waiter.EventErr, func(waiter.EventMask) { p.toHost.kick() })
	p.writableEntry, p.writable = waiter.NewChannelEntry(waiter.WritableEvents | waiter.EventHUp | waiter.EventErr)
	p.left.Store(2)
	flow.SetState("established")
	// Everything is registered before Start, so release (which may run
	// inside Start, if the flow closed meanwhile) finds it all to undo;
	// a drain kicked this early only finds a closed flow.
	p.wq.EventRegister(&p.writableEntry)
	p.wq.EventRegister(&p.guestEntry)
	werr := poll.watch(rc, fd, p.toGuest.kick)
	if !flow.Start(p.release) {
		return
	}
	if werr != nil {
		p.abort(false)
		return
	}
	// Data may have arrived before the entries were registered.
	p.toHost.kick()
}

// release is what the flow's Close undoes.
func (p *tcpPump) release() {
	p.wq.EventUnregister(&p.guestEntry)
	p.wq.EventUnregister(&p.writableEntry)
	p.poll.forget(p.fd) // before the descriptor can be reused
	p.ep.Close()
	p.host.Close()
}

// finish ends one direction; the flow closes with the second.
func (p *tcpPump) finish() {
	if p.left.Add(-1) == 0 {
		p.flow.Close()
	}
}

// abort ends both directions at once: a reset on one side becomes a reset
// on the other.
func (p *tcpPump) abort(resetHost bool) {
	if resetHost {
		resetOnClose(p.rc)
	}
	p.ep.Abort()
	p.flow.Close()
}

// resetOnClose makes the socket's close send a RST rather than a FIN
// (SO_LINGER with a zero timeout).
func resetOnClose(rc syscall.RawConn) {
	rc.Control(func(fd uintptr) {
		unix.SetsockoptLinger(int(fd), unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	})
}

// hostHasData says whether the host socket holds bytes to read now. It is
// the guest-to-host drain's: hostPending's probe belongs to the other
// drain, which may be running at the same time.
func (p *tcpPump) hostHasData() bool {
	p.queued = false
	p.rc.Control(p.queuedFn)
	return p.queued
}

// pendBufSize bounds what one guest-to-host pass copies aside when the host
// socket cannot take it at once.
const pendBufSize = 256 << 10

// drainGuest reads what the guest sent straight out of the stack's buffers
// into the host socket, until there is no more for a while.
func (p *tcpPump) drainGuest() {
	var t lingerTimer
	defer t.stop()
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
				p.toGuest.kick()
			}
		case *tcpip.ErrWouldBlock:
			if !p.toHost.idle(&t, p.flow.Done()) {
				return
			}
		case *tcpip.ErrClosedForReceive:
			// The guest sent FIN: pass the half-close on.
			p.flow.SetState("guest closed")
			// The direction is over: returning with busy set keeps it so.
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
	var t lingerTimer
	defer t.stop()
	for {
		avail, eof, empty, err := p.readableNow()
		switch {
		case err != nil:
			p.abort(false)
			return
		case eof:
			p.flow.SetState("host closed")
			p.poll.forget(p.fd)
			// The direction is over: returning with busy set keeps it so.
			p.ep.Shutdown(tcpip.ShutdownWrite)
			p.finish()
			return
		case empty:
			if p.poll.rearm(p.fd) != nil {
				if !p.flow.Closed() {
					p.abort(false)
				}
				return
			}
			if p.toGuest.idle(&t, p.flow.Done()) {
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
				case <-p.flow.Done():
					return
				}
			default:
				p.abort(true)
				return
			}
		}
	}
}

// guestPending says whether the guest sent something (or closed).
func (p *tcpPump) guestPending() bool {
	return p.ep.Readiness(waiter.ReadableEvents|waiter.EventHUp|waiter.EventErr) != 0
}

// hostPending says whether the host socket holds data, or closed or
// failed. It runs after the drain cleared busy, when the next drain may
// already be using p.probe: so it probes into a result of its own (an
// allocation once per linger, not per read).
func (p *tcpPump) hostPending() bool {
	var r probeResult
	if err := p.rc.Read(r.poll); err != nil {
		return true
	}
	return r.avail > 0 || r.eof || r.err != nil
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
