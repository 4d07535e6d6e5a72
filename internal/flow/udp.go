package flow

import (
	"errors"
	"net"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/waiter"
)

// A UDP flow has two goroutines: one hands the guest's datagrams to the
// host (GuestDatagrams, woken by the stack), one the host's to the guest
// (a DatagramReader loop). The flow closes after an idle timeout with no
// datagram either way (Flow.CloseWhenIdle), or when its socket fails.

// UDPReceiveBuffer is what one UDP flow may hold of the guest's datagrams
// that are not sent to the host yet: room for a burst while the previous
// run is being sent.
const UDPReceiveBuffer = 1 << 20

// MaxDatagram is the largest UDP payload carried.
const MaxDatagram = 65535

// PumpUDP carries a guest's UDP flow between a stack endpoint and a
// connected host socket, until it was idle (no datagram either way) for
// idle or a socket failed. It takes ownership of ep and host: they are
// released when the flow closes, also if it was closed already.
func PumpUDP(flow *Flow, ep tcpip.Endpoint, wq *waiter.Queue, host *net.UDPConn, idle time.Duration) {
	rc, err := host.SyscallConn()
	if err != nil {
		flow.Start(func() {
			ep.Close()
			host.Close()
		})
		flow.Close()
		return
	}
	p := &udpPump{flow: flow, ep: ep, host: host, rc: rc}
	p.reader.init(rc, false)
	var timer *time.Timer
	release := func() {
		timer.Stop()
		ep.Close()
		host.Close()
	}
	timer = flow.CloseWhenIdle(idle)
	if !flow.Start(release) {
		return
	}
	flow.SetState("active")
	go GuestDatagrams(flow, ep, wq, func(b []byte) error {
		_, err := host.Write(b)
		return err
	}, p.runSender())
	go p.hostToGuest()
}

// udpPump is one guest UDP flow with a connected host socket of its own.
type udpPump struct {
	flow   *Flow
	ep     tcpip.Endpoint
	host   *net.UDPConn
	rc     syscall.RawConn
	reader DatagramReader

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

// hostToGuest writes every datagram the host socket receives into the
// stack endpoint, until the flow closes or the socket fails.
func (p *udpPump) hostToGuest() {
	for {
		b, _, err := p.reader.Read()
		if err != nil {
			if IsTransient(err) {
				continue // e.g. ICMP port unreachable from a previous send
			}
			p.flow.Close()
			return
		}
		n := len(b)
		terr := p.reader.WriteTo(p.ep)
		if terr != nil {
			if _, ok := terr.(*tcpip.ErrWouldBlock); !ok {
				p.flow.Close()
				return
			}
			continue // the stack's send buffer is full: drop, as UDP may
		}
		p.flow.Touch()
		p.flow.ToGuest.Add(uint64(n))
	}
}

// GuestDatagrams hands every datagram the guest sends on ep to the host,
// counting it on flow, until the flow closes or ep fails; a send error
// other than a transient one (an ICMP error for an earlier datagram) closes
// the flow. When sendRun is not nil, what the guest queued leaves in runs
// of equal-sized datagrams, one call each: a bulk sender's datagrams then
// cross the host's stack once per run, not once each (UDP GSO); the
// receiver still gets them one by one. Without sendRun every datagram is
// sent on its own. Guests' flows and published ports share it.
func GuestDatagrams(flow *Flow, ep tcpip.Endpoint, wq *waiter.Queue, send func([]byte) error, sendRun func([]byte, int) error) {
	entry, ready := waiter.NewChannelEntry(waiter.ReadableEvents | waiter.EventHUp | waiter.EventErr)
	wq.EventRegister(&entry)
	defer wq.EventUnregister(&entry)
	runs := &datagramRuns{flow: flow, send: send, sendRun: sendRun, noRuns: sendRun == nil}
	for {
		terr := runs.drain(ep)
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
		case <-flow.Done():
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
