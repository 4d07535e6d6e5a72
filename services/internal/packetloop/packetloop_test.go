package packetloop

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/slipway-net/slipway/services/internal/servicetest"
)

func TestRunDeliversAndStopsOnCancel(t *testing.T) {
	server, client := servicetest.ListenUDP(t, "udp4"), servicetest.ListenUDP(t, "udp4")
	got := make(chan string, 1)
	stop := servicetest.Start(t, func(ctx context.Context) error {
		return Run(ctx, server, make([]byte, 100), func(pkt []byte, from net.Addr) {
			if from.String() == client.LocalAddr().String() {
				got <- string(pkt)
			}
		})
	})
	if _, err := client.WriteTo([]byte("hello"), server.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	if s := <-got; s != "hello" {
		t.Fatalf("got %q", s)
	}
	stop()
}

func TestRunStopsOnClose(t *testing.T) {
	servicetest.ReturnsWhenClosed(t, "udp4", func(ctx context.Context, conn net.PacketConn) error {
		return Run(ctx, conn, make([]byte, 100), func([]byte, net.Addr) {})
	})
}

func TestRunSurvivesForeignDeadline(t *testing.T) {
	server, client := servicetest.ListenUDP(t, "udp4"), servicetest.ListenUDP(t, "udp4")
	got := make(chan struct{}, 1)
	// A deadline set by someone else expires while ctx is live; Run must
	// keep reading.
	server.SetReadDeadline(time.Now().Add(-time.Second))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, server, make([]byte, 100), func([]byte, net.Addr) { got <- struct{}{} })
	}()
	if _, err := client.WriteTo([]byte("x"), server.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-got:
	case err := <-done:
		t.Fatalf("Run returned %v on a foreign deadline", err)
	case <-time.After(servicetest.HangGuard):
		t.Fatal("datagram not delivered")
	}
	cancel()
	servicetest.WaitReturn(t, done, "cancel")
}

func TestServeRepliesWhereHandleSays(t *testing.T) {
	server, client, other := servicetest.ListenUDP(t, "udp4"), servicetest.ListenUDP(t, "udp4"), servicetest.ListenUDP(t, "udp4")
	servicetest.Start(t, func(ctx context.Context) error {
		return Serve(ctx, server, "test", slog.New(slog.DiscardHandler), func(pkt []byte, from net.Addr) ([]byte, net.Addr, bool) {
			switch string(pkt) {
			case "drop":
				return nil, nil, false
			case "elsewhere":
				return []byte("for other"), other.LocalAddr(), true
			}
			return append([]byte("re: "), pkt...), from, true
		})
	})
	if _, err := client.WriteTo([]byte("drop"), server.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	if _, err := client.WriteTo([]byte("elsewhere"), server.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	// Datagrams on loopback keep their order: had "drop" been answered,
	// its reply would come first.
	if got := servicetest.RoundTrip(t, client, server.LocalAddr(), []byte("hi")); string(got) != "re: hi" {
		t.Fatalf("reply %q, want %q", got, "re: hi")
	}
	other.SetReadDeadline(time.Now().Add(servicetest.HangGuard))
	buf := make([]byte, 100)
	if n, _, err := other.ReadFrom(buf); err != nil || string(buf[:n]) != "for other" {
		t.Fatalf("other got %q, %v", buf[:n], err)
	}
}

func TestServeWrapsReadErrors(t *testing.T) {
	err := Serve(context.Background(), failingReadConn{servicetest.ListenUDP(t, "udp4")}, "svc", slog.New(slog.DiscardHandler),
		func([]byte, net.Addr) ([]byte, net.Addr, bool) { return nil, nil, false })
	if !errors.Is(err, errBroken) || !strings.HasPrefix(err.Error(), "svc: read: ") {
		t.Fatalf("Serve returned %v", err)
	}
}

var errBroken = errors.New("broken socket")

// failingReadConn is a socket whose reads fail for good.
type failingReadConn struct{ net.PacketConn }

func (failingReadConn) ReadFrom([]byte) (int, net.Addr, error) { return 0, nil, errBroken }
