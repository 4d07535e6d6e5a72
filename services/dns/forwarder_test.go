package dns

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/slipway-net/slipway/services/internal/servicetest"
)

var testAddr = netip.MustParseAddr("192.0.2.55")

func TestNewRejectsBadConfig(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
		want string
	}{
		{"zero upstream", Config{Upstreams: []netip.AddrPort{{}}}, "upstream"},
		{"port 0", Config{Upstreams: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}}, "upstream 127.0.0.1:0"},
		{"unspecified", Config{Upstreams: []netip.AddrPort{netip.MustParseAddrPort("0.0.0.0:53")}}, "upstream 0.0.0.0:53"},
		{"negative timeout", Config{Timeout: -time.Second}, "Timeout -1s"},
		{"negative in flight", Config{MaxInFlight: -1}, "MaxInFlight -1"},
		{"bad local name", Config{Local: map[string][]netip.Addr{"a..b": nil}}, `"a..b"`},
		{"long label", Config{Local: map[string][]netip.Addr{strings.Repeat("x", 64) + ".internal": nil}}, "63"},
		{"duplicate name", Config{Local: map[string][]netip.Addr{"Host.internal": nil, "host.internal.": nil}}, "twice"},
		{"bad local address", Config{Local: map[string][]netip.Addr{"host.internal": {{}}}}, "invalid address"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New error %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

// recordingDial dials real host sockets and notes the networks used.
type recordingDial struct {
	mu       sync.Mutex
	networks []string
}

func (r *recordingDial) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	r.mu.Lock()
	r.networks = append(r.networks, network)
	r.mu.Unlock()
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

func (r *recordingDial) used() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.networks)
}

func TestForwardUDPToDnsmasq(t *testing.T) {
	up := startDnsmasq(t, "127.0.0.1")
	rec := &recordingDial{}
	f := newForwarder(t, Config{Upstreams: []netip.AddrPort{up}, Dial: rec.dial})

	q := makeQuery(t, 0xbeef, "test.example.", dnsmessage.TypeA, true)
	a := expectRcode(t, f.Exchange(context.Background(), q), 0xbeef, "test.example.", dnsmessage.RCodeSuccess)
	if !slices.Equal(a.addrs, []netip.Addr{testAddr}) {
		t.Fatalf("answers %v, want %v", a.addrs, testAddr)
	}

	// The same through ServeUDP on a real socket.
	server := serveUDP(t, f)
	q = makeQuery(t, 0x1111, "www.test.example.", dnsmessage.TypeA, false)
	a = expectRcode(t, udpAsk(t, server, q), 0x1111, "www.test.example.", dnsmessage.RCodeSuccess)
	if !slices.Equal(a.addrs, []netip.Addr{testAddr}) {
		t.Fatalf("answers %v, want %v", a.addrs, testAddr)
	}
	// A name dnsmasq does not serve: its answer (REFUSED, as it has no
	// upstream) is passed on as is, not replaced.
	q = makeQuery(t, 0x2222, "elsewhere.example.", dnsmessage.TypeA, false)
	expectRcode(t, udpAsk(t, server, q), 0x2222, "elsewhere.example.", dnsmessage.RCodeRefused)

	if got := rec.used(); !slices.Equal(got, []string{"udp", "udp", "udp"}) {
		t.Fatalf("upstream networks %v, want udp only", got)
	}
	// ServeUDP releases a query's slot just after writing its reply.
	servicetest.WaitFor(t, "no query in flight", func() bool { return f.Stats().InFlight == 0 })
	if st := f.Stats(); st.Queries != 3 || st.Forwarded != 3 {
		t.Fatalf("stats %+v", st)
	}
}

func TestLoopbackUpstream127053(t *testing.T) {
	// systemd-resolved's stub address: a loopback upstream on the host.
	up := startDnsmasq(t, "127.0.0.53")
	f := newForwarder(t, Config{Upstreams: []netip.AddrPort{up}})
	q := makeQuery(t, 7, "test.example.", dnsmessage.TypeA, false)
	a := expectRcode(t, f.Exchange(context.Background(), q), 7, "test.example.", dnsmessage.RCodeSuccess)
	if !slices.Equal(a.addrs, []netip.Addr{testAddr}) {
		t.Fatalf("answers %v", a.addrs)
	}
}

func TestForwardTCPToDnsmasq(t *testing.T) {
	up := startDnsmasq(t, "127.0.0.1")
	rec := &recordingDial{}
	f := newForwarder(t, Config{Upstreams: []netip.AddrPort{up}, Dial: rec.dial})
	server := serveTCP(t, f)

	c, err := net.Dial("tcp", server.String())
	must(t, err)
	defer c.Close()
	c.SetDeadline(time.Now().Add(servicetest.HangGuard))

	// Three queries on one connection, sent before reading any answer.
	ids := []uint16{100, 101, 102}
	for _, id := range ids {
		must(t, writeFramed(c, makeQuery(t, id, "test.example.", dnsmessage.TypeA, false)))
	}
	var got []uint16
	for range ids {
		raw, err := readFramed(c)
		must(t, err)
		a := expectRcode(t, raw, parseReply(t, raw).h.ID, "test.example.", dnsmessage.RCodeSuccess)
		if !slices.Equal(a.addrs, []netip.Addr{testAddr}) {
			t.Fatalf("answers %v", a.addrs)
		}
		got = append(got, a.h.ID)
	}
	slices.Sort(got)
	if !slices.Equal(got, ids) {
		t.Fatalf("answered ids %v, want %v", got, ids)
	}
	// Small answers came over UDP: no TCP connection upstream per query.
	if used := rec.used(); !slices.Equal(used, []string{"udp", "udp", "udp"}) {
		t.Fatalf("upstream networks %v, want udp first for queries that came over tcp", used)
	}
	// An answer too big for UDP comes truncated; the forwarder asks again
	// over TCP and the guest gets it whole.
	must(t, writeFramed(c, makeQuery(t, 103, "big.test.example.", dnsmessage.TypeTXT, false)))
	raw, err := readFramed(c)
	must(t, err)
	if r := parseReply(t, raw); r.h.ID != 103 || r.h.Truncated || r.h.RCode != dnsmessage.RCodeSuccess || len(raw) < 2000 {
		t.Fatalf("big answer: id %d truncated %v rcode %v, %d bytes", r.h.ID, r.h.Truncated, r.h.RCode, len(raw))
	}
	if used := rec.used(); !slices.Equal(used, []string{"udp", "udp", "udp", "udp", "tcp"}) {
		t.Fatalf("upstream networks %v, want udp then tcp for the truncated answer", used)
	}
}

func TestUnreachableUpstreamGivesServfail(t *testing.T) {
	cases := map[string]netip.AddrPort{
		"closed port": closedPort(t),
		"silent":      silentUDP(t),
	}
	for name, up := range cases {
		t.Run(name, func(t *testing.T) {
			f := newForwarder(t, Config{Upstreams: []netip.AddrPort{up}, Timeout: 300 * time.Millisecond})
			done := make(chan []byte, 1)
			go func() {
				done <- f.Exchange(context.Background(), makeQuery(t, 42, "test.example.", dnsmessage.TypeA, false))
			}()
			select {
			case reply := <-done:
				expectRcode(t, reply, 42, "test.example.", dnsmessage.RCodeServerFailure)
			case <-time.After(servicetest.HangGuard):
				t.Fatal("no answer")
			}
			if st := f.Stats(); st.ServFail != 1 || st.UpstreamFailures != 1 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
	t.Run("tcp silent", func(t *testing.T) {
		// A TCP upstream that accepts and never answers.
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		must(t, err)
		t.Cleanup(func() { l.Close() })
		up := l.Addr().(*net.TCPAddr).AddrPort()
		f := newForwarder(t, Config{Upstreams: []netip.AddrPort{up}, Timeout: 300 * time.Millisecond})
		reply := f.answer(context.Background(), makeQuery(t, 43, "test.example.", dnsmessage.TypeA, false), "tcp")
		expectRcode(t, reply, 43, "test.example.", dnsmessage.RCodeServerFailure)
	})
	t.Run("no upstreams", func(t *testing.T) {
		f := newForwarder(t, Config{})
		expectRcode(t, f.Exchange(context.Background(), makeQuery(t, 44, "test.example.", dnsmessage.TypeA, false)),
			44, "test.example.", dnsmessage.RCodeServerFailure)
	})
	t.Run("edns", func(t *testing.T) {
		f := newForwarder(t, Config{})
		if a := expectRcode(t, f.Exchange(context.Background(), makeQuery(t, 45, "test.example.", dnsmessage.TypeA, true)),
			45, "test.example.", dnsmessage.RCodeServerFailure); !a.opt {
			t.Errorf("no OPT record in the SERVFAIL for an EDNS query")
		}
	})
}

func TestFailoverToSecondUpstream(t *testing.T) {
	good := startDnsmasq(t, "127.0.0.1")
	for name, bad := range map[string]netip.AddrPort{"closed": closedPort(t), "silent": silentUDP(t)} {
		t.Run(name, func(t *testing.T) {
			f := newForwarder(t, Config{Upstreams: []netip.AddrPort{bad, good}, Timeout: 300 * time.Millisecond})
			a := expectRcode(t, f.Exchange(context.Background(), makeQuery(t, 5, "test.example.", dnsmessage.TypeA, false)),
				5, "test.example.", dnsmessage.RCodeSuccess)
			if !slices.Equal(a.addrs, []netip.Addr{testAddr}) {
				t.Fatalf("answers %v", a.addrs)
			}
			if st := f.Stats(); st.UpstreamFailures != 1 || st.Forwarded != 1 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

func TestMaxInFlightBound(t *testing.T) {
	f := newForwarder(t, Config{
		Upstreams:   []netip.AddrPort{silentUDP(t)},
		Timeout:     servicetest.HangGuard,
		MaxInFlight: 2,
		Local:       map[string][]netip.Addr{"host.internal": {netip.MustParseAddr("10.0.2.2")}},
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	blocked := make(chan []byte, 2)
	for i := range 2 {
		go func() { blocked <- f.Exchange(ctx, makeQuery(t, uint16(i), "test.example.", dnsmessage.TypeA, false)) }()
	}
	servicetest.WaitFor(t, "two queries in flight", func() bool { return f.Stats().InFlight == 2 })
	// The third gets SERVFAIL while the first two still wait on the
	// upstream.
	expectRcode(t, f.Exchange(ctx, makeQuery(t, 9, "test.example.", dnsmessage.TypeA, false)),
		9, "test.example.", dnsmessage.RCodeServerFailure)
	select {
	case <-blocked:
		t.Fatal("an in-flight query finished before its upstream answered")
	default:
	}
	// Local names need no slot.
	expectRcode(t, f.Exchange(ctx, makeQuery(t, 10, "host.internal.", dnsmessage.TypeA, false)),
		10, "host.internal.", dnsmessage.RCodeSuccess)

	// Giving up on the waiting queries answers them and frees the slots.
	cancel()
	for range 2 {
		if a := parseReply(t, <-blocked); a.h.RCode != dnsmessage.RCodeServerFailure {
			t.Fatalf("cancelled query got rcode %v", a.h.RCode)
		}
	}
	if st := f.Stats(); st.InFlight != 0 || st.Overload != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// noDial fails any attempt to reach an upstream, for tests where none
// should be made.
func noDial(t *testing.T) func(context.Context, string, string) (net.Conn, error) {
	return func(context.Context, string, string) (net.Conn, error) {
		t.Error("an upstream was contacted")
		return nil, errors.New("no upstream in this test")
	}
}

func TestLocalNames(t *testing.T) {
	gw4, gw6 := netip.MustParseAddr("10.0.2.2"), netip.MustParseAddr("fd00::2")
	f := newForwarder(t, Config{
		Upstreams: []netip.AddrPort{netip.MustParseAddrPort("192.0.2.1:53")},
		Dial:      noDial(t),
		Local: map[string][]netip.Addr{
			"host.slipway.internal.": {gw4, gw6},
			"v4only.internal":        {netip.MustParseAddr("::ffff:10.0.2.9")},
		},
	})
	cases := []struct {
		name string
		typ  dnsmessage.Type
		want []netip.Addr
	}{
		{"host.slipway.internal.", dnsmessage.TypeA, []netip.Addr{gw4}},
		{"HOST.Slipway.Internal.", dnsmessage.TypeAAAA, []netip.Addr{gw6}},
		{"host.slipway.internal.", dnsmessage.TypeMX, nil},
		{"host.slipway.internal.", dnsmessage.TypeALL, []netip.Addr{gw4, gw6}},
		{"v4only.internal.", dnsmessage.TypeA, []netip.Addr{netip.MustParseAddr("10.0.2.9")}},
		{"v4only.internal.", dnsmessage.TypeAAAA, nil},
	}
	for i, tc := range cases {
		id := uint16(1000 + i)
		a := expectRcode(t, f.Exchange(context.Background(), makeQuery(t, id, tc.name, tc.typ, true)), id, tc.name, dnsmessage.RCodeSuccess)
		if !slices.Equal(a.addrs, tc.want) {
			t.Errorf("%s %v: answers %v, want %v", tc.name, tc.typ, a.addrs, tc.want)
		}
		if !a.h.Authoritative || !a.h.RecursionDesired {
			t.Errorf("%s %v: header %+v", tc.name, tc.typ, a.h)
		}
		// RFC 6891: the query had an OPT record, so must the reply
		// (kdig +bufsize found it missing).
		if !a.opt {
			t.Errorf("%s %v: no OPT record in the reply to an EDNS query", tc.name, tc.typ)
		}
	}
	// And none without EDNS.
	if a := expectRcode(t, f.Exchange(context.Background(), makeQuery(t, 999, "host.slipway.internal.", dnsmessage.TypeA, false)), 999, "host.slipway.internal.", dnsmessage.RCodeSuccess); a.opt {
		t.Errorf("an OPT record in the reply to a query without one")
	}
	if st := f.Stats(); st.Local != uint64(len(cases))+1 || st.Forwarded != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestMalformedQueries(t *testing.T) {
	f := newForwarder(t, Config{Dial: noDial(t)})
	ok := makeQuery(t, 77, "test.example.", dnsmessage.TypeA, false)
	edit := func(fn func([]byte) []byte) []byte { return fn(slices.Clone(ok)) }

	for name, msg := range map[string][]byte{
		"empty":      nil,
		"short":      ok[:11],
		"a response": edit(func(b []byte) []byte { b[2] |= 0x80; return b }),
	} {
		if reply := f.Exchange(context.Background(), msg); reply != nil {
			t.Errorf("%s: got a reply % x", name, reply)
		}
	}
	for name, tc := range map[string]struct {
		msg   []byte
		rcode dnsmessage.RCode
	}{
		"no question":        {edit(func(b []byte) []byte { b[5] = 0; return b[:12] }), dnsmessage.RCodeFormatError},
		"two questions":      {edit(func(b []byte) []byte { b[5] = 2; return append(b, b[12:]...) }), dnsmessage.RCodeFormatError},
		"question truncated": {edit(func(b []byte) []byte { return b[:len(b)-3] }), dnsmessage.RCodeFormatError},
		"bad label":          {edit(func(b []byte) []byte { b[12] = 0x80; return b }), dnsmessage.RCodeFormatError},
		"opcode status":      {edit(func(b []byte) []byte { b[2] |= 2 << 3; return b }), dnsmessage.RCodeNotImplemented},
	} {
		a := parseReply(t, f.Exchange(context.Background(), tc.msg))
		if a.h.ID != 77 || a.h.RCode != tc.rcode {
			t.Errorf("%s: id %d rcode %v, want 77 %v", name, a.h.ID, a.h.RCode, tc.rcode)
		}
	}
	st := f.Stats()
	if st.Dropped[dropShort] != 2 || st.Dropped[dropResponse] != 1 || st.FormErr != 4 || st.NotImp != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestMismatchedAnswersIgnored(t *testing.T) {
	up := fakeUpstream(t, func(q []byte) [][]byte {
		var p dnsmessage.Parser
		h, _ := p.Start(q)
		question, _ := p.Question()
		reply := func(id uint16, name string) []byte {
			h := dnsmessage.Header{ID: id, Response: true, RecursionAvailable: true}
			b := dnsmessage.NewBuilder(nil, h)
			b.StartQuestions()
			b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(name), Type: question.Type, Class: question.Class})
			b.StartAnswers()
			b.AResource(dnsmessage.ResourceHeader{Name: dnsmessage.MustNewName(name), Class: dnsmessage.ClassINET, TTL: 5},
				dnsmessage.AResource{A: [4]byte{198, 51, 100, byte(id)}})
			out, _ := b.Finish()
			return out
		}
		// A wrong ID, a wrong question, junk, then the real answer (with
		// the name in another case, which still matches).
		return [][]byte{
			reply(h.ID+1, question.Name.String()),
			reply(h.ID, "other.example."),
			[]byte("junk"),
			reply(h.ID, strings.ToUpper(question.Name.String())),
		}
	})
	f := newForwarder(t, Config{Upstreams: []netip.AddrPort{up}})
	a := expectRcode(t, f.Exchange(context.Background(), makeQuery(t, 9, "test.example.", dnsmessage.TypeA, false)),
		9, "TEST.EXAMPLE.", dnsmessage.RCodeSuccess)
	if !slices.Equal(a.addrs, []netip.Addr{netip.MustParseAddr("198.51.100.9")}) {
		t.Fatalf("answers %v", a.addrs)
	}
	if st := f.Stats(); st.Mismatched != 3 {
		t.Fatalf("stats %+v", st)
	}
}

func TestTruncatedAnswerPassedOn(t *testing.T) {
	up := fakeUpstream(t, func(q []byte) [][]byte {
		r := slices.Clone(q)
		r[2] |= 0x80 | 0x02 // QR and TC
		return [][]byte{r}
	})
	f := newForwarder(t, Config{Upstreams: []netip.AddrPort{up}})
	q := makeQuery(t, 3, "big.example.", dnsmessage.TypeTXT, false)
	reply := f.Exchange(context.Background(), q)
	a := expectRcode(t, reply, 3, "big.example.", dnsmessage.RCodeSuccess)
	if !a.h.Truncated {
		t.Fatalf("TC bit lost: %+v", a.h)
	}
}

func TestNoDescriptorLeak(t *testing.T) {
	up := startDnsmasq(t, "127.0.0.1")
	silent := silentUDP(t)
	f := newForwarder(t, Config{Upstreams: []netip.AddrPort{up}})
	slow := newForwarder(t, Config{Upstreams: []netip.AddrPort{silent, closedPort(t)}, Timeout: 50 * time.Millisecond})
	udp := serveUDP(t, f)
	tcp := serveTCP(t, f)
	ctx := context.Background()

	run := func(n int) {
		for i := range n {
			q := makeQuery(t, uint16(i), "test.example.", dnsmessage.TypeA, false)
			expectRcode(t, f.Exchange(ctx, q), uint16(i), "test.example.", dnsmessage.RCodeSuccess)
			expectRcode(t, udpAsk(t, udp, q), uint16(i), "test.example.", dnsmessage.RCodeSuccess)
			if i%10 == 0 {
				expectRcode(t, slow.Exchange(ctx, q), uint16(i), "test.example.", dnsmessage.RCodeServerFailure)
				c, err := net.Dial("tcp", tcp.String())
				must(t, err)
				c.SetDeadline(time.Now().Add(servicetest.HangGuard))
				must(t, writeFramed(c, q))
				raw, err := readFramed(c)
				must(t, err)
				expectRcode(t, raw, uint16(i), "test.example.", dnsmessage.RCodeSuccess)
				c.Close()
			}
		}
	}
	// Warm up first so the runtime's own descriptors (epoll and the like)
	// exist before counting.
	run(10)
	// Guest TCP connections are closed by the server asynchronously; wait
	// for them to be gone before each count.
	settle := func() {
		servicetest.WaitFor(t, "no TCP connection open", func() bool { return f.Stats().TCPConns == 0 })
	}
	settle()
	before := openFDs(t)
	run(300)
	settle()
	after := openFDs(t)
	// One descriptor per query leaked would be hundreds; allow a couple
	// for the runtime.
	if after > before+2 {
		t.Fatalf("open descriptors went from %d to %d over 600+ queries", before, after)
	}
}

func TestTCPIdleTimeoutAndConnectionLimit(t *testing.T) {
	f := newForwarder(t, Config{Dial: noDial(t), Local: map[string][]netip.Addr{"h.internal": {netip.MustParseAddr("10.0.2.2")}}})
	f.tcpIdle = 200 * time.Millisecond
	f.maxTCPConns = 1
	server := serveTCP(t, f)

	first, err := net.Dial("tcp", server.String())
	must(t, err)
	defer first.Close()
	first.SetDeadline(time.Now().Add(servicetest.HangGuard))
	must(t, writeFramed(first, makeQuery(t, 1, "h.internal.", dnsmessage.TypeA, false)))
	raw, err := readFramed(first)
	must(t, err)
	expectRcode(t, raw, 1, "h.internal.", dnsmessage.RCodeSuccess)

	// While the first is open, a second connection is closed at once.
	second, err := net.Dial("tcp", server.String())
	must(t, err)
	defer second.Close()
	second.SetDeadline(time.Now().Add(servicetest.HangGuard))
	if _, err := readFramed(second); err == nil {
		t.Fatal("second connection was served beyond the limit")
	}
	if st := f.Stats(); st.TCPRejected != 1 {
		t.Fatalf("stats %+v", st)
	}

	// The first, left idle, is closed by the server (EOF), not by the
	// test's own deadline.
	if _, err := readFramed(first); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("idle connection not closed by the server: %v", err)
	}
}
