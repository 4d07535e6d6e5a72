package forwarder

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

	"github.com/slipway-net/slipway/policy"
)

// Keepalive on the guest side notices a guest that vanished with flows open.
const (
	keepaliveIdle     = 60 * time.Second
	keepaliveInterval = 10 * time.Second
	keepaliveCount    = 6
)

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
	return f.decide(policy.TCP, dst).Allowed()
}

// handleTCP connects to the host first and completes the guest's handshake
// only when that succeeds, so a refused or unreachable destination shows up
// in the guest as a RST, the way a real connect fails.
func (f *Forwarder) handleTCP(r *tcp.ForwarderRequest) {
	guest, dst := idEnds(r.ID())
	v := f.o.Policy.Outbound(policy.TCP, dst)
	if !v.Allowed() {
		r.Complete(true)
		return
	}
	flow := f.flows.open(policy.TCP, guest, dst, v.Target)
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
type tcpPump struct {
	flow *Flow
	ep   tcpip.Endpoint
	wq   *waiter.Queue
	host *net.TCPConn
	rc   syscall.RawConn
	done chan struct{}
	left atomic.Int32 // directions still running
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
	rc, err := host.SyscallConn()
	if err != nil {
		ep.Abort()
		host.Close()
		flow.Close()
		return
	}
	p := &tcpPump{flow: flow, ep: ep, wq: wq, host: host, rc: rc, done: make(chan struct{})}
	var once sync.Once
	flow.closeFn = func() {
		once.Do(func() {
			close(p.done)
			p.ep.Close()
			p.host.Close()
		})
	}
	flow.setState("established")
	p.left.Store(2)
	go p.guestToHost()
	go p.hostToGuest()
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

// guestToHost reads what the guest sent straight out of the stack's buffers
// into the host socket.
func (p *tcpPump) guestToHost() {
	defer p.finish()
	entry, ready := waiter.NewChannelEntry(waiter.ReadableEvents | waiter.EventHUp | waiter.EventErr)
	p.wq.EventRegister(&entry)
	defer p.wq.EventUnregister(&entry)
	w := hostWriter{rc: p.rc, host: p.host}
	for {
		lw := tcpip.LimitedWriter{W: &w, N: pendBufSize}
		res, terr := p.ep.Read(&lw, tcpip.ReadOptions{})
		if err := w.flush(); err != nil {
			p.abort(false)
			return
		}
		switch terr.(type) {
		case nil:
			p.flow.ToHost.Add(uint64(res.Count))
			continue
		case *tcpip.ErrWouldBlock:
			select {
			case <-ready:
				continue
			case <-p.done:
				return
			}
		case *tcpip.ErrClosedForReceive:
			// The guest sent FIN: pass the half-close on.
			p.flow.setState("guest closed")
			p.host.CloseWrite()
			return
		default:
			// Reset or timed out (keepalive): the guest is gone.
			p.abort(true)
			return
		}
	}
}

// hostToGuest lets the stack read the host socket directly into its own
// send buffer, sized by how much the socket holds (FIONREAD), so there is
// no intermediate copy and no buffer held while the flow is idle.
func (p *tcpPump) hostToGuest() {
	defer p.finish()
	entry, writable := waiter.NewChannelEntry(waiter.WritableEvents | waiter.EventHUp | waiter.EventErr)
	p.wq.EventRegister(&entry)
	defer p.wq.EventUnregister(&entry)
	src := sockPayload{rc: p.rc}
	for {
		avail, eof, err := waitReadable(p.rc)
		if err != nil {
			p.abort(false)
			return
		}
		if eof {
			p.flow.setState("host closed")
			p.ep.Shutdown(tcpip.ShutdownWrite)
			return
		}
		src.avail = avail
		for src.avail > 0 {
			n, terr := p.ep.Write(&src, tcpip.WriteOptions{})
			if src.err != nil {
				p.abort(false)
				return
			}
			switch terr.(type) {
			case nil:
				src.avail -= int(n)
				p.flow.ToGuest.Add(uint64(n))
			case *tcpip.ErrWouldBlock:
				select {
				case <-writable:
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

// waitReadable blocks until the socket has data or end-of-file. It holds no
// buffer while it waits.
func waitReadable(rc syscall.RawConn) (avail int, eof bool, err error) {
	rerr := rc.Read(func(fd uintptr) bool {
		n, e := unix.IoctlGetInt(int(fd), fionread)
		if e != nil {
			err = e
			return true
		}
		if n > 0 {
			avail = n
			return true
		}
		// Nothing queued: either nothing yet, or the peer closed.
		var b [1]byte
		m, _, e := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		switch {
		case e == unix.EAGAIN || e == unix.EINTR:
			return false
		case e != nil:
			err = e
		case m == 0:
			eof = true
		default:
			avail = 1
		}
		return true
	})
	if err == nil && rerr != nil {
		err = rerr
	}
	return avail, eof, err
}

// sockPayload is a tcpip.Payloader reading from a host socket.
type sockPayload struct {
	rc    syscall.RawConn
	avail int
	err   error
}

func (s *sockPayload) Len() int { return s.avail }

func (s *sockPayload) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	var n int
	var e error
	if err := s.rc.Read(func(fd uintptr) bool {
		for {
			n, e = unix.Read(int(fd), b)
			if e != unix.EINTR {
				return true
			}
		}
	}); err != nil {
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
type hostWriter struct {
	rc   syscall.RawConn
	host *net.TCPConn
	pend *[]byte
}

func (w *hostWriter) Write(b []byte) (int, error) {
	total := len(b)
	if w.pend == nil && len(b) >= directWriteMin {
		var n int
		var e error
		if err := w.rc.Write(func(fd uintptr) bool {
			n, e = unix.Write(int(fd), b)
			return true
		}); err != nil {
			return 0, err
		}
		if e != nil && e != unix.EAGAIN {
			return 0, e
		}
		if n > 0 {
			b = b[n:]
		}
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
	_, err := w.host.Write(*w.pend)
	*w.pend = (*w.pend)[:0]
	pendPool.Put(w.pend)
	w.pend = nil
	return err
}
