package forwarder

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/slipway-net/slipway/policy"
)

// maxDatagram is the largest UDP payload carried.
const maxDatagram = 65535

var datagramPool = sync.Pool{New: func() any { b := make([]byte, maxDatagram); return &b }}

// handleUDP opens a flow for the first datagram of a new 4-tuple: a
// connected host socket to the policy's target, idle-timed. Returning false
// makes the stack answer with ICMP port unreachable.
func (f *Forwarder) handleUDP(r *udp.ForwarderRequest) bool {
	guest, dst := idEnds(r.ID())
	v := f.decide(policy.UDP, dst)
	if !v.Allowed() {
		return false
	}
	flow := f.flows.open(policy.UDP, guest, dst, v.Target)
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
	go GuestDatagrams(flow, ep, wq, p.done, &p.act, func(b []byte) error {
		_, err := p.host.Write(b)
		return err
	})
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

// GuestDatagrams hands every datagram the guest sends on ep to send,
// counting it on flow, until done is closed or ep fails; a send error other
// than a transient one (an ICMP error for an earlier datagram) closes the
// flow. Guests' flows and published ports share it.
func GuestDatagrams(flow *Flow, ep tcpip.Endpoint, wq *waiter.Queue, done <-chan struct{}, a *Activity, send func([]byte) error) {
	entry, ready := waiter.NewChannelEntry(waiter.ReadableEvents | waiter.EventHUp | waiter.EventErr)
	wq.EventRegister(&entry)
	defer wq.EventUnregister(&entry)
	for {
		bp := datagramPool.Get().(*[]byte)
		w := tcpip.SliceWriter(*bp)
		res, terr := ep.Read(&w, tcpip.ReadOptions{})
		if terr == nil {
			err := send((*bp)[:res.Count])
			datagramPool.Put(bp)
			if err != nil && !isTransient(err) {
				flow.Close()
				return
			}
			a.Touch()
			flow.ToHost.Add(uint64(res.Count))
			continue
		}
		datagramPool.Put(bp)
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
