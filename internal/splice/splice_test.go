package splice

import (
	"context"
	"io"
	"net"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// tcpPair is both ends of one loopback TCP connection.
func tcpPair(t *testing.T) (*net.TCPConn, *net.TCPConn) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

// A client's half-close reaches the server, which can still answer; once
// both directions end, Conns returns.
func TestConnsPassesHalfClose(t *testing.T) {
	client, a := tcpPair(t)
	b, server := tcpPair(t)
	done := make(chan struct{})
	go func() { Conns(context.Background(), a, b); close(done) }()
	client.Write([]byte("ping"))
	client.CloseWrite()
	got, err := io.ReadAll(server)
	if err != nil || string(got) != "ping" {
		t.Fatalf("server read %q, %v; want ping, then the half-close", got, err)
	}
	server.Write([]byte("pong"))
	server.Close()
	got, err = io.ReadAll(client)
	if err != nil || string(got) != "pong" {
		t.Fatalf("client read %q, %v; want pong after its half-close", got, err)
	}
	<-done
}

// Ending ctx closes both connections.
func TestConnsEndsWithContext(t *testing.T) {
	client, a := tcpPair(t)
	b, server := tcpPair(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { Conns(ctx, a, b); close(done) }()
	cancel()
	<-done
	for name, c := range map[string]net.Conn{"client": client, "server": server} {
		if n, err := c.Read(make([]byte, 1)); err == nil {
			t.Errorf("%s read %d bytes after ctx ended, want EOF", name, n)
		}
	}
}

// Counted reports every byte each way, as it goes: the first bytes are
// counted while the connection is still open.
func TestCountedReportsBytes(t *testing.T) {
	client, a := tcpPair(t)
	b, server := tcpPair(t)
	var up, down atomic.Int64
	done := make(chan struct{})
	go func() {
		Counted(context.Background(), a, b, func(n int64) { up.Add(n) }, func(n int64) { down.Add(n) })
		close(done)
	}()
	const size = 3<<20 + 12345
	client.Write([]byte("first"))
	if _, err := io.ReadFull(server, make([]byte, 5)); err != nil {
		t.Fatal(err)
	}
	// The count follows the write that delivered the bytes.
	for deadline := time.Now().Add(10 * time.Second); up.Load() != 5; runtime.Gosched() {
		if time.Now().After(deadline) {
			t.Fatalf("counted %d bytes of the 5 delivered", up.Load())
		}
	}
	go func() {
		client.Write(make([]byte, size-5))
		client.CloseWrite()
	}()
	got, err := io.Copy(io.Discard, server)
	got += 5
	if err != nil || got != size {
		t.Fatalf("server read %d bytes, %v; want %d", got, err, size)
	}
	server.Write([]byte("answer"))
	server.Close()
	if back, _ := io.ReadAll(client); string(back) != "answer" {
		t.Fatalf("client read %q", back)
	}
	<-done
	if up.Load() != size || down.Load() != int64(len("answer")) {
		t.Errorf("counted %d up and %d down, want %d and %d", up.Load(), down.Load(), size, len("answer"))
	}
}
