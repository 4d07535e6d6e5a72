package packetloop

import (
	"context"
	"net"
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
