package outbound

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/slipway-net/slipway/config"
	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// udpReceiveBuffer is what one UDP flow may hold of the guest's datagrams
// that are not sent to the host yet.
const udpReceiveBuffer = 1 << 20

// maxDatagram is the largest UDP payload carried.
const maxDatagram = 65535

var datagramPool = sync.Pool{New: func() any { b := make([]byte, maxDatagram); return &b }}

// handleUDP opens a flow for the first datagram of a new 4-tuple: a
// connected host socket to the policy's target, idle-timed. Returning false
// makes the stack answer with ICMP port unreachable.
func (f *Forwarder) handleUDP(r *udp.ForwarderRequest) bool {
	guest, dst := idEnds(r.ID())
	v := f.decide(config.UDP, dst)
	if !v.Allowed() {
		return false
	}
	flow := f.flows.open(config.UDP, guest, dst, v.Target)
	if flow == nil {
		f.log.Warn("flow limit reached, dropping UDP flow", "guest", guest, "dst", dst, "max-flows", f.o.MaxFlows)
		return true // dropped, as a full NAT table would
	}
	var laddr *net.UDPAddr
	if la := f.localAddr(v.Target.Addr()); la.IsValid() {
		laddr = net.UDPAddrFromAddrPort(netip.AddrPortFrom(la, 0))
	}
	host, err := net.DialUDP("udp", laddr, net.UDPAddrFromAddrPort(v.Target))
	if err != nil {
		f.ConnectFailed.Add(1)
		f.log.Debug("host UDP socket failed", "guest", guest, "target", v.Target, "err", err)
		flow.Close()
		return false
	}
	var wq waiter.Queue
	ep, terr := r.CreateEndpoint(&wq)
	if terr != nil {
		host.Close()
		flow.Close()
		return true
	}
	// Room for a burst: the guest's datagrams wait here while the pump
	// sends the previous run to the host.
	ep.SocketOptions().SetReceiveBufferSize(udpReceiveBuffer, true)
	startUDPPump(flow, ep, &wq, host, f.o.UDPIdleTimeout)
	return true
}

type udpPump struct {
	flow *Flow
	ep   tcpip.Endpoint
	wq   *waiter.Queue
	host *net.UDPConn
	rc   syscall.RawConn
	done chan struct{}
	act  Activity

	// One run send's argument and result, and the function making it,
	// bound once (a closure per call would allocate per run).
	run    []byte
	oob    [64]byte
	runOOB []byte
	runErr error
	runFn  func(fd uintptr) bool
}

func startUDPPump(flow *Flow, ep tcpip.Endpoint, wq *waiter.Queue, host *net.UDPConn, idle time.Duration) {
	rc, err := host.SyscallConn()
	if err != nil {
		ep.Close()
		host.Close()
		flow.Close()
		return
	}
	p := &udpPump{flow: flow, ep: ep, wq: wq, host: host, rc: rc, done: make(chan struct{})}
	p.act.Touch()
	var timer *time.Timer
	var once sync.Once
	flow.closeFn = func() {
		once.Do(func() {
			close(p.done)
			timer.Stop()
			p.ep.Close()
			p.host.Close()
		})
	}
	timer = IdleTimer(flow, &p.act, idle)
	flow.setState("active")
	go guestDatagrams(flow, ep, wq, p.done, &p.act, func(b []byte) error {
		_, err := p.host.Write(b)
		return err
	}, p.runSender())
	go p.hostToGuest()
}

// Activity records when a UDP flow last carried a datagram either way.
type Activity struct{ last atomic.Int64 }

// Touch records a datagram now.
func (a *Activity) Touch() { a.last.Store(time.Now().UnixNano()) }

// IdleTimer closes flow once a has recorded nothing for idle. The timer
// re-arms itself for the time left since the last datagram, so traffic
// costs an atomic store, not a timer reset.
func IdleTimer(flow *Flow, a *Activity, idle time.Duration) *time.Timer {
	var timer *time.Timer
	check := func() {
		since := time.Since(time.Unix(0, a.last.Load()))
		if since >= idle {
			flow.Close()
			return
		}
		timer.Reset(idle - since)
	}
	timer = time.AfterFunc(idle, check)
	return timer
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

// GuestDatagrams hands every datagram the guest sends on ep to send,
// counting it on flow, until done is closed or ep fails; a send error other
// than a transient one (an ICMP error for an earlier datagram) closes the
// flow. Guests' flows and published ports share it.
func GuestDatagrams(flow *Flow, ep tcpip.Endpoint, wq *waiter.Queue, done <-chan struct{}, a *Activity, send func([]byte) error) {
	guestDatagrams(flow, ep, wq, done, a, send, nil)
}

// Limits of one run of datagrams sent in one call: the kernel takes at
// most 64 KiB of payload and a bounded number of segments.
const (
	runMaxBytes = 65000
	runMaxCount = 64
)

var runPool = sync.Pool{New: func() any { b := make([]byte, runMaxBytes+maxDatagram); return &b }}

// guestDatagrams is GuestDatagrams that, when sendRun is not nil, sends
// what the guest queued in runs of equal-sized datagrams, one call each:
// a bulk sender's datagrams then cross the host's stack once per run, not
// once each (UDP GSO). The receiver still gets them one by one. Without
// sendRun every datagram is sent on its own.
func guestDatagrams(flow *Flow, ep tcpip.Endpoint, wq *waiter.Queue, done <-chan struct{}, a *Activity, send func([]byte) error, sendRun func([]byte, int) error) {
	entry, ready := waiter.NewChannelEntry(waiter.ReadableEvents | waiter.EventHUp | waiter.EventErr)
	wq.EventRegister(&entry)
	defer wq.EventUnregister(&entry)
	runs := &datagramRuns{flow: flow, send: send, sendRun: sendRun, noRuns: sendRun == nil}
	for {
		terr := runs.drain(ep, a)
		if runs.failed {
			flow.Close()
			return
		}
		if _, ok := terr.(*tcpip.ErrWouldBlock); !ok {
			flow.Close()
			return
		}
		select {
		case <-ready:
		case <-done:
			return
		}
	}
}

// datagramRuns gathers the guest's datagrams into runs for one send each.
type datagramRuns struct {
	flow    *Flow
	send    func([]byte) error
	sendRun func([]byte, int) error
	noRuns  bool // no runs here (or the socket refused one): one send per datagram
	failed  bool // a send failed for good: the flow is over
}

// drain reads everything ep holds and sends it, and returns the error that
// ended the reading (ErrWouldBlock when ep is empty).
func (r *datagramRuns) drain(ep tcpip.Endpoint, a *Activity) tcpip.Error {
	bp := runPool.Get().(*[]byte)
	defer runPool.Put(bp)
	b := *bp
	off, size, count := 0, 0, 0
	for !r.failed {
		w := tcpip.SliceWriter(b[off : off+maxDatagram])
		res, terr := ep.Read(&w, tcpip.ReadOptions{})
		if terr != nil {
			if count > 0 {
				r.flush(b[:off], size, count)
			}
			return terr
		}
		n := res.Count
		a.Touch()
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
			if !isTransient(err) {
				r.failed = true
			}
			return
		}
	}
	for {
		d := b[:min(size, len(b))]
		b = b[len(d):]
		if err := r.send(d); err != nil && !isTransient(err) {
			r.failed = true
		}
		if len(b) == 0 || r.failed {
			return
		}
	}
}

func (p *udpPump) hostToGuest() {
	var rd bytes.Reader
	for {
		var bp *[]byte
		var n int
		var rerr error
		err := p.rc.Read(func(fd uintptr) bool {
			bp = datagramPool.Get().(*[]byte)
			var e error
			n, e = unix.Read(int(fd), *bp)
			if e == unix.EAGAIN || e == unix.EINTR {
				datagramPool.Put(bp)
				bp = nil
				return false
			}
			rerr = e
			return true
		})
		if err != nil {
			if bp != nil {
				datagramPool.Put(bp)
			}
			p.flow.Close()
			return
		}
		if rerr != nil {
			datagramPool.Put(bp)
			if isTransient(rerr) {
				continue // e.g. ICMP port unreachable from a previous send
			}
			p.flow.Close()
			return
		}
		rd.Reset((*bp)[:n])
		_, terr := p.ep.Write(&rd, tcpip.WriteOptions{})
		datagramPool.Put(bp)
		if terr != nil {
			if _, ok := terr.(*tcpip.ErrWouldBlock); !ok {
				p.flow.Close()
				return
			}
			continue // the stack's send buffer is full: drop, as UDP may
		}
		p.act.Touch()
		p.flow.ToGuest.Add(uint64(n))
	}
}

// isTransient reports errors a connected UDP socket returns for an earlier
// datagram (an ICMP error from the network) that do not end the flow.
func isTransient(err error) bool {
	for _, e := range []error{unix.ECONNREFUSED, unix.EHOSTUNREACH, unix.ENETUNREACH, unix.EMSGSIZE, unix.ENOBUFS} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
