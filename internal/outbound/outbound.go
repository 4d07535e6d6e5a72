// Package outbound carries the flows a guest opens (TCP, UDP, ICMP echo)
// to real sockets of the host, after the policy has decided where each one
// goes. It is the only place slipway opens outbound host sockets.
package outbound

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/slipway-net/slipway/config"
	"github.com/slipway-net/slipway/internal/flow"
	"github.com/slipway-net/slipway/internal/frame"
	"github.com/slipway-net/slipway/internal/netstack"
	"github.com/slipway-net/slipway/internal/policy"
	"github.com/slipway-net/slipway/link"
)

// Options configures a Forwarder.
type Options struct {
	Stack  *netstack.Stack
	Policy *policy.Rules
	// Flows is the network's flow table; it bounds how many flows there
	// are (published ones included).
	Flows *flow.Table
	// MaxPendingConnects bounds TCP connects to the host in progress.
	MaxPendingConnects int
	ConnectTimeout     time.Duration
	// DialTCP, if set, opens the host socket of a TCP flow instead of a
	// dial from the outbound address: a test's way to hand flows sockets
	// it controls. It must return a socket the poller can watch.
	DialTCP func(ctx context.Context, target netip.AddrPort) (flow.HostConn, error)
	// DialUDP and PingSocket, if set, open the host sockets of UDP and
	// echo flows instead of this process (a strict sandbox's engine has
	// none to open); they bind to the outbound address themselves.
	DialUDP        func(target netip.AddrPort) (*net.UDPConn, error)
	PingSocket     func(v6 bool) (int, error)
	UDPIdleTimeout time.Duration
	// UDPUnrepliedTimeout closes sooner a UDP flow the host has not
	// answered.
	UDPUnrepliedTimeout time.Duration
	// MaxICMPFlows bounds echo flows (one ping socket each).
	MaxICMPFlows int
	// OutboundAddr4/6, if valid, are the local addresses outbound sockets
	// bind to.
	OutboundAddr4, OutboundAddr6 netip.Addr
	// Inject sends frames the forwarder builds itself (ICMP replies) to
	// the guests.
	Inject func(frames []link.Frame)
	// LocalAddrs are the stack's own addresses: echo requests to them are
	// the stack's to answer.
	LocalAddrs []netip.Addr
	// Gateway4 and Gateway6 are the sources of ICMP errors slipway sends
	// as the router.
	Gateway4, Gateway6 netip.Addr
	Logger             *slog.Logger
}

// Forwarder owns every outbound flow.
type Forwarder struct {
	o     Options
	log   *slog.Logger
	flows *flow.Table
	icmp  *icmpForwarder

	// Counters of flows refused by the policy, by reason, and of connect
	// failures.
	refusedMu     sync.Mutex
	refused       map[policy.Reason]uint64
	connectFailed atomic.Uint64
	// lastLimitWarn (unix nanoseconds) spaces the warnings of flows the
	// table refused: a flood meets a limit thousands of times a second.
	lastLimitWarn atomic.Int64
}

// limitWarnEvery is how often a refusal by a flow limit is logged at warn
// level; the rest go to debug, and the table counts every one.
const limitWarnEvery = 10 * time.Second

// reserve takes a flow slot for a flow the guest opens, logging a refusal
// by one of the table's limits.
func (f *Forwarder) reserve(e flow.Ends) (*flow.Flow, error) {
	fl, err := f.flows.Reserve(e)
	if err == nil || err == flow.ErrClosed {
		return fl, err
	}
	now := time.Now().UnixNano()
	last := f.lastLimitWarn.Load()
	if now-last >= int64(limitWarnEvery) && f.lastLimitWarn.CompareAndSwap(last, now) {
		f.log.Warn("refusing flows", "proto", e.Proto, "guest", e.Guest, "dst", e.Remote, "reason", err,
			"max-flows", f.flows.Max(), "next-warning-in", limitWarnEvery)
	} else {
		f.log.Debug("flow refused", "proto", e.Proto, "guest", e.Guest, "dst", e.Remote, "reason", err)
	}
	return nil, err
}

// New installs the forwarder's handlers in the stack.
func New(o Options) *Forwarder {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	f := &Forwarder{o: o, log: log, flows: o.Flows, refused: map[policy.Reason]uint64{}}
	o.Stack.SetTCPForwarder(o.MaxPendingConnects, f.acceptTCP, f.handleTCP)
	o.Stack.SetUDPForwarder(f.handleUDP)
	f.icmp = newICMPForwarder(f)
	return f
}

// InterceptICMP takes echo requests bound for the host's network; it is
// one of the stack's interceptors.
func (f *Forwarder) InterceptICMP(v *frame.View) bool { return f.icmp.intercept(v) }

// Stats are the forwarder's counters.
type Stats struct {
	// Refused counts flows the policy refused, by reason.
	Refused map[string]uint64 `counter:"refused"`
	// ConnectFailed counts host connects and sockets that failed.
	ConnectFailed uint64 `counter:"connect_failed"`
	// ICMPUnanswered counts echo requests answered with an ICMP error or
	// not sent at all (no ping sockets, a send that failed).
	ICMPUnanswered uint64 `counter:"icmp_unanswered"`
}

// Stats returns the forwarder's counters.
func (f *Forwarder) Stats() Stats {
	f.refusedMu.Lock()
	refused := make(map[string]uint64, len(f.refused))
	for k, v := range f.refused {
		refused[string(k)] = v
	}
	f.refusedMu.Unlock()
	return Stats{Refused: refused, ConnectFailed: f.connectFailed.Load(), ICMPUnanswered: f.icmp.Unanswered.Load()}
}

func (f *Forwarder) countRefused(r policy.Reason) {
	f.refusedMu.Lock()
	f.refused[r]++
	f.refusedMu.Unlock()
}

// decide applies the policy to a flow the guest opens, counting refusals.
func (f *Forwarder) decide(proto config.Proto, dst netip.AddrPort) policy.Verdict {
	v := f.o.Policy.Outbound(proto, dst)
	if !v.Allowed() {
		f.countRefused(v.Reason)
		f.log.Debug("flow refused", "proto", proto, "dst", dst, "reason", v.Reason)
	}
	return v
}

// localAddr is the outbound address for a socket to dst (its family's),
// invalid when none was configured.
func (f *Forwarder) localAddr(dst netip.Addr) netip.Addr {
	if dst.Is4() {
		return f.o.OutboundAddr4
	}
	return f.o.OutboundAddr6
}

// Close ends the echo sessions; the flow table (the network's) ends the
// other flows.
func (f *Forwarder) Close() {
	f.icmp.close()
}

// idEnds converts a stack endpoint ID to (guest, destination) addresses.
func idEnds(id stack.TransportEndpointID) (guest, dst netip.AddrPort) {
	return netip.AddrPortFrom(toAddr(id.RemoteAddress), id.RemotePort),
		netip.AddrPortFrom(toAddr(id.LocalAddress), id.LocalPort)
}

func toAddr(a tcpip.Address) netip.Addr {
	ip, _ := netip.AddrFromSlice(a.AsSlice())
	return ip
}
