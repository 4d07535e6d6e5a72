package dns

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/slipway-net/slipway/services/internal/servicetest"
)

// makeQuery builds a recursive query the way a stub resolver does, with an
// EDNS(0) OPT record when edns is set.
func makeQuery(t testing.TB, id uint16, name string, typ dnsmessage.Type, edns bool) []byte {
	t.Helper()
	q, err := buildQuery(id, name, typ, edns)
	must(t, err)
	return q
}

func buildQuery(id uint16, name string, typ dnsmessage.Type, edns bool) ([]byte, error) {
	n, err := dnsmessage.NewName(name)
	if err != nil {
		return nil, err
	}
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: id, RecursionDesired: true})
	b.EnableCompression()
	if err := b.StartQuestions(); err != nil {
		return nil, err
	}
	if err := b.Question(dnsmessage.Question{Name: n, Type: typ, Class: dnsmessage.ClassINET}); err != nil {
		return nil, err
	}
	if edns {
		if err := b.StartAdditionals(); err != nil {
			return nil, err
		}
		var rh dnsmessage.ResourceHeader
		if err := rh.SetEDNS0(1232, dnsmessage.RCodeSuccess, false); err != nil {
			return nil, err
		}
		if err := b.OPTResource(rh, dnsmessage.OPTResource{}); err != nil {
			return nil, err
		}
	}
	return b.Finish()
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// answer is a parsed reply.
type answer struct {
	h         dnsmessage.Header
	questions []dnsmessage.Question
	addrs     []netip.Addr
	opt       bool // an OPT record among the additional records
}

func parseReply(t testing.TB, b []byte) answer {
	t.Helper()
	if b == nil {
		t.Fatal("no reply")
	}
	var p dnsmessage.Parser
	h, err := p.Start(b)
	must(t, err)
	qs, err := p.AllQuestions()
	must(t, err)
	rrs, err := p.AllAnswers()
	must(t, err)
	a := answer{h: h, questions: qs}
	must(t, p.SkipAllAuthorities())
	extra, err := p.AllAdditionals()
	must(t, err)
	for _, rr := range extra {
		a.opt = a.opt || rr.Header.Type == dnsmessage.TypeOPT
	}
	for _, rr := range rrs {
		switch r := rr.Body.(type) {
		case *dnsmessage.AResource:
			a.addrs = append(a.addrs, netip.AddrFrom4(r.A))
		case *dnsmessage.AAAAResource:
			a.addrs = append(a.addrs, netip.AddrFrom16(r.AAAA))
		}
	}
	if !h.Response {
		t.Fatalf("reply without QR: %+v", h)
	}
	return a
}

// expectRcode checks id, rcode and the echoed question.
func expectRcode(t testing.TB, reply []byte, id uint16, name string, rcode dnsmessage.RCode) answer {
	t.Helper()
	a := parseReply(t, reply)
	if a.h.ID != id || a.h.RCode != rcode {
		t.Fatalf("reply id %d rcode %v, want id %d rcode %v", a.h.ID, a.h.RCode, id, rcode)
	}
	if len(a.questions) != 1 || a.questions[0].Name.String() != name {
		t.Fatalf("reply questions %v, want %s", a.questions, name)
	}
	return a
}

// freePort finds a loopback port free for both UDP and TCP, as dnsmasq
// needs both.
func freePort(t *testing.T, ip string) int {
	t.Helper()
	for range 50 {
		u, err := net.ListenPacket("udp4", ip+":0")
		must(t, err)
		port := u.LocalAddr().(*net.UDPAddr).Port
		l, err := net.Listen("tcp4", fmt.Sprintf("%s:%d", ip, port))
		u.Close()
		if err == nil {
			l.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

// startDnsmasq runs a real dnsmasq on ip that serves test.example (and
// names below it) as 192.0.2.55 and refuses everything else. Not in
// -short mode, where unit tests start no real programs (fakeUpstream
// stands in for a server there).
// bigTXT is a dnsmasq record whose answer (about 2 KB) is truncated over
// UDP without EDNS, so a client must ask again over TCP.
var bigTXT = "--txt-record=big.test.example" + strings.Repeat(","+strings.Repeat("x", 250), 8)

func startDnsmasq(t *testing.T, ip string) netip.AddrPort {
	t.Helper()
	if testing.Short() {
		t.Skip("runs a real dnsmasq; skipped in -short mode")
	}
	bin, err := exec.LookPath("dnsmasq")
	if err != nil {
		t.Skip("dnsmasq is not installed (Debian package dnsmasq-base)")
	}
	for range 5 {
		port := freePort(t, ip)
		var out bytes.Buffer
		cmd := exec.Command(bin, "--no-daemon", "--no-resolv", "--no-hosts", "--pid-file=",
			"--listen-address="+ip, fmt.Sprintf("--port=%d", port), "--bind-interfaces",
			"--address=/test.example/192.0.2.55", bigTXT)
		cmd.Stdout, cmd.Stderr = &out, &out
		must(t, cmd.Start())
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		stop := func() {
			cmd.Process.Kill()
			<-exited
		}
		addr := netip.AddrPortFrom(netip.MustParseAddr(ip), uint16(port))
		if waitReady(addr, exited) {
			t.Cleanup(stop)
			return addr
		}
		stop()
		t.Logf("dnsmasq on port %d did not come up, retrying: %s", port, out.String())
	}
	t.Fatal("could not start dnsmasq")
	return netip.AddrPort{}
}

// waitReady polls dnsmasq with a real query until it answers.
func waitReady(addr netip.AddrPort, exited <-chan struct{}) bool {
	q, err := buildQuery(1, "test.example.", dnsmessage.TypeA, false)
	if err != nil {
		return false
	}
	deadline := time.Now().Add(servicetest.HangGuard)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return false
		default:
		}
		c, err := net.Dial("udp", addr.String())
		if err != nil {
			return false
		}
		c.SetDeadline(time.Now().Add(200 * time.Millisecond))
		c.Write(q)
		buf := make([]byte, 512)
		n, err := c.Read(buf)
		c.Close()
		if err == nil && n > 0 {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// silentUDP is an upstream that receives queries and never answers, like
// a resolver behind a black hole.
func silentUDP(t *testing.T) netip.AddrPort {
	t.Helper()
	c := servicetest.ListenUDP(t, "udp4")
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}

// closedPort returns a loopback port nothing listens on (UDP and TCP).
func closedPort(t *testing.T) netip.AddrPort {
	t.Helper()
	return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(freePort(t, "127.0.0.1")))
}

// fakeUpstream is a UDP upstream on a real socket whose replies the test
// writes, for misbehaviour dnsmasq cannot be made to show.
func fakeUpstream(t *testing.T, respond func(q []byte) [][]byte) netip.AddrPort {
	t.Helper()
	c := servicetest.ListenUDP(t, "udp4")
	go func() {
		buf := make([]byte, 65535)
		for {
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			for _, r := range respond(bytes.Clone(buf[:n])) {
				c.WriteTo(r, from)
			}
		}
	}()
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}

func newForwarder(t *testing.T, cfg Config) *Forwarder {
	t.Helper()
	// The forwarder's debug log goes to the test's output, shown when it
	// fails: why an upstream attempt failed is there.
	f, err := New(cfg, slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})))
	must(t, err)
	return f
}

// openFDs counts this process's open file descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count descriptors: %v", err)
	}
	return len(ents)
}

// serveUDP runs ServeUDP on a loopback socket for the test's duration and
// returns its address.
func serveUDP(t *testing.T, f *Forwarder) net.Addr {
	t.Helper()
	conn := servicetest.ListenUDP(t, "udp4")
	servicetest.Start(t, func(ctx context.Context) error { return f.ServeUDP(ctx, conn) })
	return conn.LocalAddr()
}

// serveTCP runs ServeTCP on a loopback listener for the test's duration.
func serveTCP(t *testing.T, f *Forwarder) net.Addr {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	must(t, err)
	servicetest.Start(t, func(ctx context.Context) error { return f.ServeTCP(ctx, l) })
	return l.Addr()
}

// udpAsk sends one query from a fresh client socket and reads the reply.
func udpAsk(t *testing.T, server net.Addr, q []byte) []byte {
	t.Helper()
	c, err := net.Dial("udp", server.String())
	must(t, err)
	defer c.Close()
	c.SetDeadline(time.Now().Add(servicetest.HangGuard))
	_, err = c.Write(q)
	must(t, err)
	buf := make([]byte, 65535)
	n, err := c.Read(buf)
	must(t, err)
	return buf[:n]
}
