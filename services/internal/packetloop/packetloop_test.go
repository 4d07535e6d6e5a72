package packetloop

import (
	"context"
	"net"
	"testing"
	"time"
)

func listen(t *testing.T) net.PacketConn {
	t.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// wait expects Run to return nil; the timeout only guards against a hang.
func wait(t *testing.T, done <-chan error) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run returned %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return")
	}
}

func TestRunDeliversAndStopsOnCancel(t *testing.T) {
	server, client := listen(t), listen(t)
	got := make(chan string, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, server, make([]byte, 100), func(pkt []byte, from net.Addr) {
			if from.String() == client.LocalAddr().String() {
				got <- string(pkt)
			}
		})
	}()
	if _, err := client.WriteTo([]byte("hello"), server.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	if s := <-got; s != "hello" {
		t.Fatalf("got %q", s)
	}
	cancel()
	wait(t, done)
}

func TestRunStopsOnClose(t *testing.T) {
	server := listen(t)
	done := make(chan error, 1)
	go func() { done <- Run(context.Background(), server, make([]byte, 100), func([]byte, net.Addr) {}) }()
	server.Close()
	wait(t, done)
}

func TestRunSurvivesForeignDeadline(t *testing.T) {
	server, client := listen(t), listen(t)
	got := make(chan struct{}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// A deadline set by someone else expires while ctx is live; Run must
	// keep reading.
	server.SetReadDeadline(time.Now().Add(-time.Second))
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
	case <-time.After(20 * time.Second):
		t.Fatal("datagram not delivered")
	}
	cancel()
	wait(t, done)
}
