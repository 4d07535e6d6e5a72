package dhcp4

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// portMapConn is a real loopback UDP socket that stands in for the
// netstack's gateway socket. The host cannot deliver 255.255.255.255:68 or
// port 68 of a guest address to a test, so writes are redirected to the
// test client's socket; the destination the server asked for is recorded
// for the test to check.
type portMapConn struct {
	net.PacketConn
	client net.Addr

	mu   sync.Mutex
	dsts []string
}

func (c *portMapConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	c.mu.Lock()
	c.dsts = append(c.dsts, addr.String())
	c.mu.Unlock()
	return c.PacketConn.WriteTo(b, c.client)
}

func (c *portMapConn) lastDst() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.dsts) == 0 {
		return ""
	}
	return c.dsts[len(c.dsts)-1]
}

func listenLoopback(t *testing.T) net.PacketConn {
	t.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// roundTrip sends a message from the client socket and reads the reply,
// with a deadline only to keep a broken server from hanging the test.
func roundTrip(t *testing.T, client net.PacketConn, server net.Addr, msg []byte) parsed {
	t.Helper()
	if _, err := client.WriteTo(msg, server); err != nil {
		t.Fatal(err)
	}
	client.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 2048)
	n, _, err := client.ReadFrom(buf)
	if err != nil {
		t.Fatalf("no reply: %v", err)
	}
	return decode(t, buf[:n])
}

func TestServeOverLoopbackUDP(t *testing.T) {
	s, _ := newTestServer(t, nil)
	serverSock := listenLoopback(t)
	client := listenLoopback(t)
	conn := &portMapConn{PacketConn: serverSock, client: client.LocalAddr()}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, conn) }()

	m := mac(1)
	offer := roundTrip(t, client, serverSock.LocalAddr(), req{mtype: msgDiscover, mac: m, xid: 7}.build())
	if offer.mtype != msgOffer || offer.yiaddr != first || conn.lastDst() != "255.255.255.255:68" {
		t.Fatalf("offer %d of %v to %s", offer.mtype, offer.yiaddr, conn.lastDst())
	}

	// Garbage in between is dropped without stopping the loop.
	if _, err := client.WriteTo([]byte("not dhcp"), serverSock.LocalAddr()); err != nil {
		t.Fatal(err)
	}

	ack := roundTrip(t, client, serverSock.LocalAddr(), req{mtype: msgRequest, mac: m, xid: 8,
		opts: []opt{withServerID(gw), withRequested(offer.yiaddr)}}.build())
	if ack.mtype != msgAck || ack.yiaddr != first {
		t.Fatalf("ack %d of %v", ack.mtype, ack.yiaddr)
	}
	renew := roundTrip(t, client, serverSock.LocalAddr(), req{mtype: msgRequest, mac: m, xid: 9, ciaddr: first}.build())
	if renew.mtype != msgAck || conn.lastDst() != netip.AddrPortFrom(first, 68).String() {
		t.Fatalf("renew %d sent to %s", renew.mtype, conn.lastDst())
	}

	cancel()
	waitServe(t, done, "cancel")
	st := s.Stats()
	if st.Received != 4 || st.Replied != 3 || st.Dropped[dropShort] != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestServeReturnsWhenConnClosed(t *testing.T) {
	s, _ := newTestServer(t, nil)
	conn := listenLoopback(t)
	done := make(chan error, 1)
	go func() { done <- s.Serve(context.Background(), conn) }()
	conn.Close()
	waitServe(t, done, "close")
}

// waitServe expects Serve to return nil after the given event; the timeout
// only keeps a broken Serve from hanging the test.
func waitServe(t *testing.T, done <-chan error, event string) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve returned %v after %s", err, event)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("Serve did not return after %s", event)
	}
}

// failingWriteConn is a loopback socket whose writes fail, as a broadcast
// does on a host socket without SO_BROADCAST.
type failingWriteConn struct{ net.PacketConn }

func (failingWriteConn) WriteTo([]byte, net.Addr) (int, error) {
	return 0, errors.New("write refused")
}

func TestServeSurvivesWriteErrors(t *testing.T) {
	s, _ := newTestServer(t, nil)
	serverSock := listenLoopback(t)
	client := listenLoopback(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, failingWriteConn{serverSock}) }()

	for i := range 3 {
		if _, err := client.WriteTo(req{mtype: msgDiscover, mac: mac(1), xid: uint32(i)}.build(), serverSock.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	// Wait until all three were handled, then stop.
	deadline := time.Now().Add(10 * time.Second)
	for s.Stats().Replied < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v", s.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	waitServe(t, done, "cancel")
}
