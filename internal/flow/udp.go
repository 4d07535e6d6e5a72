package flow

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/waiter"
)

// A UDP flow has, like a TCP one (see tcp.go), two directions that each
// run a drain goroutine only while there is something to move, and none
// while the flow is idle: the guest's datagrams are sent to the host when
// the stack's waiter kicks (GuestSender), the host's reach the guest when
// the table's poller kicks. The flow closes after an idle timeout with no
// datagram either way (shorter while the host never answered), when the
// host refuses the datagrams (ICMP port unreachable: ECONNREFUSED), or when
// a socket fails.

// UDPReceiveBuffer is what one UDP flow may hold of the guest's datagrams
// that are not sent to the host yet: room for a burst while the previous
// run is being sent.
const UDPReceiveBuffer = 1 << 20

// MaxDatagram is the largest UDP payload carried.
const MaxDatagram = 65535

// UDPOptions are the timeouts and hooks of a guest's UDP flow.
type UDPOptions struct {
	// Idle closes the flow after this long without a datagram either
	// way; Unreplied instead while the host has sent nothing back yet.
	Idle, Unreplied time.Duration
	// Refused, if set, is called once when the host answered with ICMP
	// port unreachable (the flow then closes): the guest should hear of
	// it the same way.
	Refused func()
}

// PumpUDP carries a guest's UDP flow between a stack endpoint and a
// connected host socket until it is closed (see UDPOptions). It takes
// ownership of ep and host: they are released when the flow closes, also
// if it was closed already.
func PumpUDP(flow *Flow, ep tcpip.Endpoint, wq *waiter.Queue, host *net.UDPConn, o UDPOptions) {
	rc, err := host.SyscallConn()
	poll, perr := flow.table.poller()
	if err != nil || perr != nil {
		flow.Start(func() {
			ep.Close()
			host.Close()
		})
		flow.Close()
		return
	}
	fd := -1
	rc.Control(func(f uintptr) { fd = int(f) })
	p := &udpPump{flow: flow, ep: ep, host: host, rc: rc, fd: fd, poll: poll, refused: o.Refused}
	p.reader.init(rc, false)
	p.toGuest.init(p.drainHost, p.hostPending)
	p.guest = newGuestSender(flow, ep, wq, func(b []byte) error {
		_, err := host.Write(b)
		return err
	}, p.runSender())
	timer := flow.closeWhenIdleFor(func() time.Duration {
		if p.replied.Load() {
			return o.Idle
		}
		return min(o.Unreplied, o.Idle)
	})
	release := func() {
		timer.Stop()
		p.guest.Stop()
		poll.forget(fd) // before the descriptor can be reused
		ep.Close()
		host.Close()
	}
	// Registered before Start, so that release finds it all to undo.
	werr := poll.watch(rc, fd, p.toGuest.kick)
	if !flow.Start(release) {
		return
	}
	if werr != nil {
		flow.Close()
		return
	}
	flow.SetState("active")
	// The datagram that opened the flow waits in ep already.
	p.guest.dir.kick()
}

// udpPump is one guest UDP flow with a connected host socket of its own.
type udpPump struct {
	flow    *Flow
	ep      tcpip.Endpoint
	host    *net.UDPConn
	rc      syscall.RawConn
	fd      int
	poll    *poller
	guest   *GuestSender
	toGuest direction
	reader  DatagramReader
	replied atomic.Bool // the host has sent something back
	refused func()

	// One run send's argument and result, and the function making it,
	// bound once (a closure per call would allocate per run).
	run    []byte
	oob    [64]byte
	runOOB []byte
	runErr error
	runFn  func(fd uintptr) bool
}

// runSender returns sendRun, or nil where runs cannot be sent.
func (p *udpPump) runSender() func([]byte, int) error {
	if !udpGSO {
		return nil
	}
	p.runFn = func(fd uintptr) bool {
		_, p.runErr = sendmsgN(int(fd), p.run, p.runOOB)
		return p.runErr != unix.EAGAIN
	}
	return p.sendRun
}

// sendRun sends b, datagrams of size bytes back to back (the last may be
// shorter), in one call.
func (p *udpPump) sendRun(b []byte, size int) error {
	p.run, p.runOOB = b, udpSegmentOOB(p.oob[:], size)
	err := p.rc.Write(p.runFn)
	p.run = nil
	if err != nil {
		return err
	}
	return p.runErr
}

// drainHost writes what the host socket holds into the stack endpoint, a
// datagram at a time, then re-arms the poller and lingers.
func (p *udpPump) drainHost() {
	var t lingerTimer
	defer t.stop()
	// Nothing of the reader is touched once idle has handed the direction
	// back: the next drain may be running by then. It holds no buffer at
	// that point (an empty socket gave them back).
	for {
		b, ok, err := p.reader.TryRead()
		switch {
		case errors.Is(err, unix.ECONNREFUSED):
			// The host answered with ICMP port unreachable: nothing
			// listens there, and nothing will be learnt by keeping the
			// flow (and its socket) for the idle timeout.
			if p.refused != nil && !p.flow.Closed() {
				p.refused()
			}
			p.flow.Close()
			return
		case err != nil && IsTransient(err):
			continue // an ICMP error for an earlier datagram
		case err != nil:
			p.flow.Close()
			return
		case !ok:
			if p.poll.rearm(p.fd) != nil {
				p.flow.Close()
				return
			}
			if !p.toGuest.idle(&t, p.flow.Done()) {
				return
			}
			continue
		}
		n := len(b)
		p.replied.Store(true)
		if terr := p.reader.WriteTo(p.ep); terr != nil {
			if _, ok := terr.(*tcpip.ErrWouldBlock); !ok {
				p.reader.Release() // the flow ends: busy stays set
				p.flow.Close()
				return
			}
			continue // the stack's send buffer is full: drop, as UDP may
		}
		p.flow.Touch()
		p.flow.ToGuest.Add(uint64(n))
	}
}

// hostPending says whether the host socket holds a datagram or an error.
// It runs after the drain cleared busy, so it polls on its own.
func (p *udpPump) hostPending() bool {
	pending := false
	p.rc.Control(func(fd uintptr) {
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(pfd, 0)
		pending = err == nil && n > 0
	})
	return pending
}

// GuestSender hands every datagram the guest sends on an endpoint to the
// host, counting it on the flow, until the flow closes or the endpoint
// fails; a send error other than a transient one (an ICMP error for an
// earlier datagram) closes the flow. When sendRun is not nil, what the
// guest queued leaves in runs of equal-sized datagrams, one call each: a
// bulk sender's datagrams then cross the host's stack once per run, not
// once each (UDP GSO); the receiver still gets them one by one. Without
// sendRun every datagram is sent on its own. Its drain runs only while
// the guest sends (see direction). Guests' flows and published ports
// share it.
type GuestSender struct {
	flow  *Flow
	ep    tcpip.Endpoint
	wq    *waiter.Queue
	entry waiter.Entry
	dir   direction
	runs  datagramRuns
}

// SendGuestDatagrams starts a GuestSender; the flow's release must call
// its Stop. The first datagrams are sent at once.
func SendGuestDatagrams(flow *Flow, ep tcpip.Endpoint, wq *waiter.Queue, send func([]byte) error, sendRun func([]byte, int) error) *GuestSender {
	g := newGuestSender(flow, ep, wq, send, sendRun)
	g.dir.kick()
	return g
}

func newGuestSender(flow *Flow, ep tcpip.Endpoint, wq *waiter.Queue, send func([]byte) error, sendRun func([]byte, int) error) *GuestSender {
	g := &GuestSender{flow: flow, ep: ep, wq: wq}
	g.runs = datagramRuns{flow: flow, send: send, sendRun: sendRun, noRuns: sendRun == nil}
	g.dir.init(g.drain, g.pending)
	g.entry = waiter.NewFunctionEntry(waiter.ReadableEvents|waiter.EventHUp|waiter.EventErr, func(waiter.EventMask) { g.dir.kick() })
	wq.EventRegister(&g.entry)
	return g
}

// Stop unregisters the sender from the endpoint's waiter queue.
func (g *GuestSender) Stop() { g.wq.EventUnregister(&g.entry) }

func (g *GuestSender) pending() bool {
	return g.ep.Readiness(waiter.ReadableEvents|waiter.EventHUp|waiter.EventErr) != 0
}

func (g *GuestSender) drain() {
	var t lingerTimer
	defer t.stop()
	for {
		terr := g.runs.drain(g.ep)
		if g.runs.failed {
			g.flow.Close()
			return
		}
		if _, ok := terr.(*tcpip.ErrWouldBlock); !ok {
			g.flow.Close()
			return
		}
		if !g.dir.idle(&t, g.flow.Done()) {
			return
		}
	}
}

// Limits of one run of datagrams sent in one call: the kernel takes at
// most 64 KiB of payload and a bounded number of segments.
const (
	runMaxBytes = 65000
	runMaxCount = 64
)

var runPool = sync.Pool{New: func() any { b := make([]byte, runMaxBytes+MaxDatagram); return &b }}

// datagramRuns gathers the guest's datagrams into runs for one send each.
type datagramRuns struct {
	flow    *Flow
	send    func([]byte) error
	sendRun func([]byte, int) error
	noRuns  bool // no runs here (or the socket refused one): one send per datagram
	failed  bool // a send failed for good: the flow is over
	// w is where one datagram is read to: a field, so that handing it
	// to the endpoint (an interface) costs no allocation per datagram.
	w tcpip.SliceWriter
}

// drain reads everything ep holds and sends it, and returns the error that
// ended the reading (ErrWouldBlock when ep is empty).
func (r *datagramRuns) drain(ep tcpip.Endpoint) tcpip.Error {
	bp := runPool.Get().(*[]byte)
	defer runPool.Put(bp)
	b := *bp
	off, size, count := 0, 0, 0
	for !r.failed {
		r.w = tcpip.SliceWriter(b[off : off+MaxDatagram])
		res, terr := ep.Read(&r.w, tcpip.ReadOptions{})
		if terr != nil {
			if count > 0 {
				r.flush(b[:off], size, count)
			}
			return terr
		}
		n := res.Count
		r.flow.Touch()
		r.flow.ToHost.Add(uint64(n))
		if count > 0 && (n > size || n == 0) {
			// It does not continue the run: send the run, and start
			// the next one with this datagram.
			r.flush(b[:off], size, count)
			copy(b, b[off:off+n])
			off, count = 0, 0
		}
		if count == 0 {
			size = n
		}
		off += n
		count++
		// A shorter datagram can only end a run.
		if n < size || size == 0 || off+size > runMaxBytes || count == runMaxCount {
			r.flush(b[:off], size, count)
			off, count = 0, 0
		}
	}
	return nil
}

// flush sends a run of count datagrams of size bytes (the last may be
// shorter).
func (r *datagramRuns) flush(b []byte, size, count int) {
	if count > 1 && !r.noRuns {
		err := r.sendRun(b, size)
		switch {
		case err == nil:
			return
		case errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EIO) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOPROTOOPT):
			// This socket's route cannot segment (no checksum offload
			// on the way out, say): send them one by one from now on.
			r.noRuns = true
		default:
			if !IsTransient(err) {
				r.failed = true
			}
			return
		}
	}
	for {
		d := b[:min(size, len(b))]
		b = b[len(d):]
		if err := r.send(d); err != nil && !IsTransient(err) {
			r.failed = true
		}
		if len(b) == 0 || r.failed {
			return
		}
	}
}

// IsTransient reports errors a connected UDP socket returns for an earlier
// datagram (an ICMP error from the network) that do not end the flow.
func IsTransient(err error) bool {
	for _, e := range []error{unix.ECONNREFUSED, unix.EHOSTUNREACH, unix.ENETUNREACH, unix.EMSGSIZE, unix.ENOBUFS} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
