// Package dns is slipway's DNS forwarder: the guest's resolver. It answers
// a few local names itself and passes every other query, byte for byte,
// to the host's resolvers, one short-lived host socket per query. It
// serves on any net.PacketConn and net.Listener, so the netstack's gateway
// sockets and host loopback sockets in tests are served the same way.
package dns

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// Stats counts what the forwarder did.
type Stats struct {
	Queries   uint64 `counter:"queries"`   // guest messages received (UDP, TCP and Exchange)
	Local     uint64 `counter:"local"`     // answered from Config.Local
	Forwarded uint64 `counter:"forwarded"` // answered with an upstream's reply
	ServFail  uint64 `counter:"servfail"`  // SERVFAIL because no upstream answered (or there is none)
	Overload  uint64 `counter:"overload"`  // SERVFAIL at once because MaxInFlight queries were pending
	FormErr   uint64 `counter:"formerr"`   // FORMERR for queries that could not be parsed
	NotImp    uint64 `counter:"notimp"`    // NOTIMP for opcodes other than QUERY
	// Dropped counts messages not answered at all, by reason: "short" (no
	// header to reply to), "response" (a reply sent to the server), or
	// "tcp-framing" (a zero-length TCP message).
	Dropped map[string]uint64 `counter:"dropped"`
	// UpstreamFailures counts failed attempts at one upstream: dial
	// errors, refusals, timeouts, and TCP answers that did not match.
	UpstreamFailures uint64 `counter:"upstream_failures"`
	// Mismatched counts upstream UDP datagrams ignored because their ID or
	// question did not match the query.
	Mismatched uint64 `counter:"mismatched"`
	InFlight   int64  `counter:"in_flight,gauge"` // queries waiting on an upstream now
	// TCPConns is the number of guest TCP connections open now;
	// TCPRejected counts those closed at once because of the limit.
	TCPConns    int64  `counter:"tcp_conns,gauge"`
	TCPRejected uint64 `counter:"tcp_rejected"`
}

type counters struct {
	queries, local, forwarded, servFail, overload atomic.Uint64
	formErr, notImp, upstreamFailures, mismatched atomic.Uint64
	tcpRejected                                   atomic.Uint64
	inFlight, tcpConns                            atomic.Int64

	mu      sync.Mutex
	dropped map[string]uint64
}

// Forwarder is a DNS forwarder. It is safe for concurrent use.
type Forwarder struct {
	cfg Config
	log *slog.Logger
	// names is what the forwarder answers itself, replaced whole under
	// namesMu on a change; upstreams likewise (SetUpstreams).
	names     atomic.Pointer[names]
	namesMu   sync.Mutex
	upstreams atomic.Pointer[[]netip.AddrPort]
	// slots holds one token per query allowed to wait on an upstream.
	slots chan struct{}
	stats counters
	// bufs recycles 64 KiB buffers for upstream UDP answers.
	bufs sync.Pool

	// TCP limits, fields so tests can lower them.
	maxTCPConns int64
	tcpIdle     time.Duration
}

// New validates cfg and returns a forwarder for it. A nil log discards.
func New(cfg Config, log *slog.Logger) (*Forwarder, error) {
	local, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	f := &Forwarder{
		cfg:         cfg,
		log:         log,
		slots:       make(chan struct{}, cfg.MaxInFlight),
		maxTCPConns: defaultMaxTCPConns,
		tcpIdle:     defaultTCPIdle,
	}
	f.names.Store(&names{local: local})
	ups := slices.Clone(cfg.Upstreams)
	f.upstreams.Store(&ups)
	f.stats.dropped = make(map[string]uint64)
	f.bufs.New = func() any { b := make([]byte, 65535); return &b }
	return f, nil
}

// Stats returns a snapshot of the counters.
func (f *Forwarder) Stats() Stats {
	c := &f.stats
	st := Stats{
		Queries:          c.queries.Load(),
		Local:            c.local.Load(),
		Forwarded:        c.forwarded.Load(),
		ServFail:         c.servFail.Load(),
		Overload:         c.overload.Load(),
		FormErr:          c.formErr.Load(),
		NotImp:           c.notImp.Load(),
		UpstreamFailures: c.upstreamFailures.Load(),
		Mismatched:       c.mismatched.Load(),
		InFlight:         c.inFlight.Load(),
		TCPConns:         c.tcpConns.Load(),
		TCPRejected:      c.tcpRejected.Load(),
		Dropped:          make(map[string]uint64),
	}
	c.mu.Lock()
	for k, v := range c.dropped {
		st.Dropped[k] = v
	}
	c.mu.Unlock()
	return st
}

func (f *Forwarder) drop(why string) {
	f.stats.mu.Lock()
	f.stats.dropped[why]++
	f.stats.mu.Unlock()
	f.log.Debug("dns: dropped guest message", "reason", why)
}

// Exchange answers one query as if it came over UDP: the reply is the
// upstream's (passed on even when truncated, so the guest retries over
// TCP), a local answer, or a SERVFAIL, FORMERR or NOTIMP built from the
// query. It returns nil only for messages that must not be answered: too
// short to have a DNS header, or themselves responses.
func (f *Forwarder) Exchange(ctx context.Context, query []byte) []byte {
	return f.answer(ctx, query, "udp")
}

// answer runs one query to completion on the calling goroutine.
func (f *Forwarder) answer(ctx context.Context, raw []byte, network string) []byte {
	q, reply := f.accept(raw)
	if q == nil {
		return reply
	}
	if !f.acquire() {
		return f.overloaded(q)
	}
	defer f.release()
	return f.forward(ctx, q, network)
}

// accept counts a guest message and either answers it at once (reply) or
// returns the query to forward. Both nil means drop.
func (f *Forwarder) accept(raw []byte) (*query, []byte) {
	f.stats.queries.Add(1)
	q, reply, why := f.inspect(raw)
	if q == nil && reply == nil {
		f.drop(why)
	}
	return q, reply
}

// acquire takes an in-flight slot without waiting: when all are taken the
// guest gets SERVFAIL rather than a queue that grows without bound.
func (f *Forwarder) acquire() bool {
	select {
	case f.slots <- struct{}{}:
		f.stats.inFlight.Add(1)
		return true
	default:
		return false
	}
}

func (f *Forwarder) release() {
	f.stats.inFlight.Add(-1)
	<-f.slots
}

func (f *Forwarder) overloaded(q *query) []byte {
	f.stats.overload.Add(1)
	f.log.Debug("dns: too many queries in flight, answering SERVFAIL", "max", f.cfg.MaxInFlight)
	return errorReply(q.header, &q.q, dnsmessage.RCodeServerFailure, q.edns)
}

// forward tries the upstreams in order within the query's budget and
// returns the first matching answer, or SERVFAIL.
func (f *Forwarder) forward(ctx context.Context, q *query, network string) []byte {
	ups := *f.upstreams.Load()
	ctx, cancel := context.WithTimeout(ctx, forwardBudget(f.cfg.Timeout, len(ups)))
	defer cancel()
	for _, up := range ups {
		if ctx.Err() != nil {
			break
		}
		ans, err := f.attemptOver(ctx, up, q, network)
		if err == nil {
			f.stats.forwarded.Add(1)
			return ans
		}
		f.stats.upstreamFailures.Add(1)
		f.log.Debug("dns: upstream attempt failed", "upstream", up, "network", network, "name", q.q.Name.String(), "err", err)
	}
	f.stats.servFail.Add(1)
	return errorReply(q.header, &q.q, dnsmessage.RCodeServerFailure, q.edns)
}

// attemptOver asks one upstream. A query that came over TCP goes over UDP
// first and over TCP only when that answer is truncated: a TCP connection
// upstream per guest query exhausts the upstream's listen backlog under
// load (dnsmasq serves 20 TCP connections at a time), where UDP costs it
// nothing.
func (f *Forwarder) attemptOver(ctx context.Context, up netip.AddrPort, q *query, network string) ([]byte, error) {
	if network == "tcp" {
		if ans, err := f.attempt(ctx, up, q, "udp"); err == nil && !truncated(ans) {
			return ans, nil
		}
	}
	return f.attempt(ctx, up, q, network)
}

// truncated reports whether a DNS message has the TC bit set.
func truncated(msg []byte) bool { return len(msg) > 2 && msg[2]&0x02 != 0 }

// attempt sends q to one upstream on a fresh socket and waits at most
// Timeout for its answer. The socket is closed on return, answer or not:
// holding sockets open after the answer is how forwarders run out of them.
func (f *Forwarder) attempt(ctx context.Context, up netip.AddrPort, q *query, network string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, f.cfg.Timeout)
	defer cancel()
	conn, err := f.cfg.Dial(ctx, network, up.String())
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	if err := conn.SetDeadline(deadline); err != nil {
		return nil, fmt.Errorf("set deadline: %w", err)
	}
	// The deadline covers Timeout; this covers the caller giving up early
	// (the server shutting down).
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	if network == "tcp" {
		return f.attemptTCP(conn, q)
	}
	return f.attemptUDP(conn, q)
}

func (f *Forwarder) attemptUDP(conn net.Conn, q *query) ([]byte, error) {
	if _, err := conn.Write(q.raw); err != nil {
		return nil, fmt.Errorf("send: %w", err)
	}
	bp := f.bufs.Get().(*[]byte)
	defer f.bufs.Put(bp)
	buf := *bp
	for {
		// A connected UDP socket only receives from the upstream, and
		// reports its ICMP port unreachable as an error here, so a closed
		// port fails at once instead of after Timeout.
		n, err := conn.Read(buf)
		if err != nil {
			return nil, fmt.Errorf("receive: %w", err)
		}
		if matches(buf[:n], q) {
			return append([]byte(nil), buf[:n]...), nil
		}
		f.stats.mismatched.Add(1)
	}
}

var errMismatch = errors.New("answer does not match the query")

func (f *Forwarder) attemptTCP(conn net.Conn, q *query) ([]byte, error) {
	if err := writeFramed(conn, q.raw); err != nil {
		return nil, fmt.Errorf("send: %w", err)
	}
	ans, err := readFramed(conn)
	if err != nil {
		return nil, fmt.Errorf("receive: %w", err)
	}
	if !matches(ans, q) {
		return nil, errMismatch
	}
	return ans, nil
}

// writeFramed writes one message with its 2-byte length prefix (RFC 1035
// section 4.2.2) in a single write, so the two never travel apart.
func writeFramed(w io.Writer, msg []byte) error {
	if len(msg) > 0xffff {
		return fmt.Errorf("message of %d bytes is too long for TCP framing", len(msg))
	}
	b := make([]byte, 2+len(msg))
	binary.BigEndian.PutUint16(b, uint16(len(msg)))
	copy(b[2:], msg)
	_, err := w.Write(b)
	return err
}

// readFramed reads one length-prefixed message.
func readFramed(r io.Reader) ([]byte, error) {
	var l [2]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		return nil, err
	}
	msg := make([]byte, binary.BigEndian.Uint16(l[:]))
	if _, err := io.ReadFull(r, msg); err != nil {
		return nil, err
	}
	return msg, nil
}
