// Package servicetest is the harness the services' unit tests share: a
// settable clock, building a service from a test configuration, checking
// that bad configurations are refused, hex fixtures, and loopback sockets
// to run a Serve loop on. Only tests import it.
package servicetest

import (
	"context"
	"encoding/hex"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// HangGuard bounds every wait of this package. It only keeps a broken
// service from hanging a test; it measures nothing.
const HangGuard = 20 * time.Second

// Clock is a settable time source for expiry tests.
type Clock struct{ T time.Time }

// NewClock returns a clock at a fixed time, so expiry times in tests are
// the same on every run.
func NewClock() *Clock { return &Clock{T: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

// Now is the clock's time; pass it as a Config's Now.
func (c *Clock) Now() time.Time { return c.T }

// Advance moves the clock on by d.
func (c *Clock) Advance(d time.Duration) { c.T = c.T.Add(d) }

// Build applies mutate, if any, to cfg and returns what newFn makes of
// it, failing t if newFn refuses it.
func Build[C, S any](t testing.TB, cfg C, mutate func(*C), newFn func(C) (S, error)) S {
	t.Helper()
	if mutate != nil {
		mutate(&cfg)
	}
	s, err := newFn(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

// NoLog adapts a service's New, which takes a logger, to the harness:
// the log is discarded (New takes nil for that).
func NoLog[C, S any](newFn func(C, *slog.Logger) (S, error)) func(C) (S, error) {
	return func(cfg C) (S, error) { return newFn(cfg, nil) }
}

// ConfigRejecter returns reject, which checks in a subtest called name
// that newFn refuses good() spoilt by mutate with an error mentioning
// want, the part that says what is wrong.
func ConfigRejecter[C, S any](t *testing.T, good func() C, newFn func(C) (S, error)) (reject func(name, want string, mutate func(*C))) {
	return func(name, want string, mutate func(*C)) {
		t.Helper()
		t.Run(name, func(t *testing.T) {
			cfg := good()
			mutate(&cfg)
			if _, err := newFn(cfg); err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("New error %v, want one mentioning %q", err, want)
			}
		})
	}
}

// Unhex decodes hex written for reading: any white space is ignored, so
// fixtures can be laid out field by field.
func Unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// ListenUDP opens a UDP socket on the loopback address of network ("udp4"
// or "udp6"), closed when the test ends. Without IPv6 loopback the test is
// skipped.
func ListenUDP(t testing.TB, network string) net.PacketConn {
	t.Helper()
	addr := "127.0.0.1:0"
	if network == "udp6" {
		addr = "[::1]:0"
	}
	c, err := net.ListenPacket(network, addr)
	if err != nil {
		if network == "udp6" {
			t.Skipf("no IPv6 loopback here: %v", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// RoundTrip sends msg from client to server and returns the reply, which
// must come from server.
func RoundTrip(t testing.TB, client net.PacketConn, server net.Addr, msg []byte) []byte {
	t.Helper()
	if _, err := client.WriteTo(msg, server); err != nil {
		t.Fatal(err)
	}
	client.SetReadDeadline(time.Now().Add(HangGuard))
	buf := make([]byte, 65535)
	n, from, err := client.ReadFrom(buf)
	if err != nil {
		t.Fatalf("no reply: %v", err)
	}
	if from.String() != server.String() {
		t.Fatalf("reply from %v, want %v", from, server)
	}
	return buf[:n]
}

// Start runs serve on a goroutine of its own. The stop it returns, which
// also runs when the test ends, cancels serve's context and expects serve
// to return nil.
func Start(t testing.TB, serve func(context.Context) error) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			WaitReturn(t, done, "cancel")
		})
	}
	t.Cleanup(stop)
	return stop
}

// WaitReturn expects a Serve (or read loop) whose result arrives on done
// to return nil after event.
func WaitReturn(t testing.TB, done <-chan error, event string) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve returned %v after %s", err, event)
		}
	case <-time.After(HangGuard):
		t.Errorf("Serve did not return after %s", event)
	}
}

// WaitFor polls cond until it holds, failing the test after HangGuard.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(HangGuard)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// ServeFunc is a service's Serve method.
type ServeFunc func(context.Context, net.PacketConn) error

// ReturnsWhenClosed checks that serve returns nil once its socket is
// closed, with its context still live.
func ReturnsWhenClosed(t *testing.T, network string, serve ServeFunc) {
	conn := ListenUDP(t, network)
	done := make(chan error, 1)
	go func() { done <- serve(context.Background(), conn) }()
	conn.Close()
	WaitReturn(t, done, "close")
}

// failingWriteConn is a socket whose writes fail, as a broadcast does on a
// host socket without SO_BROADCAST.
type failingWriteConn struct{ net.PacketConn }

func (failingWriteConn) WriteTo([]byte, net.Addr) (int, error) {
	return 0, errors.New("write refused")
}

// CheckServeLoop checks what every service's Serve promises of its loop.
// A failed write (as of a broadcast on a host socket without
// SO_BROADCAST) must not stop it: on a socket whose writes all fail,
// serve must still handle a few messages made by msg(0), msg(1), ...
// (replied counts the replies it made) and stop when its context ends.
// And it must return nil once its socket is closed, context still live.
func CheckServeLoop(t *testing.T, network string, serve ServeFunc, msg func(i int) []byte, replied func() uint64) {
	t.Run("write errors", func(t *testing.T) {
		server := ListenUDP(t, network)
		client := ListenUDP(t, network)
		stop := Start(t, func(ctx context.Context) error { return serve(ctx, failingWriteConn{server}) })
		base := replied()
		const n = 3
		for i := range n {
			if _, err := client.WriteTo(msg(i), server.LocalAddr()); err != nil {
				t.Fatal(err)
			}
		}
		WaitFor(t, "every message handled", func() bool { return replied() >= base+n })
		stop()
	})
	t.Run("closed", func(t *testing.T) { ReturnsWhenClosed(t, network, serve) })
}

// counted calls handle with one message and checks that the service's
// counters, as counts reports them, moved as the services' Stats say:
// Received by one, and Replied by one exactly when handle replied. It
// returns what handle did.
func counted(t testing.TB, counts func() (received, replied uint64), handle func() (replied bool)) bool {
	t.Helper()
	rec0, rep0 := counts()
	ok := handle()
	rec1, rep1 := counts()
	if rec1 != rec0+1 {
		t.Fatalf("received went from %d to %d", rec0, rec1)
	}
	want := rep0
	if ok {
		want++
	}
	if rep1 != want {
		t.Fatalf("replied went from %d to %d (replied %v)", rep0, rep1, ok)
	}
	return ok
}

// FuzzHandle fuzzes a long-lived service, so that fuzzed input also
// exercises the state earlier inputs built up. handle passes one message
// to the service and checks the reply, if any, reporting whether there
// was one; for each input (the seeds first), the counters must move as
// counted says.
func FuzzHandle(f *testing.F, seeds [][]byte, counts func() (received, replied uint64), handle func(t *testing.T, msg []byte) (replied bool)) {
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		counted(t, counts, func() bool { return handle(t, msg) })
	})
}
