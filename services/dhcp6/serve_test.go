package dhcp6

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"
)

func listenLoopback6(t *testing.T) net.PacketConn {
	t.Helper()
	c, err := net.ListenPacket("udp6", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback here: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// roundTrip sends a message from the client socket and reads the reply,
// with a deadline only to keep a broken server from hanging the test.
func roundTrip(t *testing.T, client net.PacketConn, server net.Addr, b []byte) reply {
	t.Helper()
	if _, err := client.WriteTo(b, server); err != nil {
		t.Fatal(err)
	}
	client.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 2048)
	n, from, err := client.ReadFrom(buf)
	if err != nil {
		t.Fatalf("no reply: %v", err)
	}
	if from.String() != server.String() {
		t.Fatalf("reply from %v, want %v", from, server)
	}
	return decode(t, buf[:n])
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

func TestServeOverLoopbackUDP(t *testing.T) {
	s, _ := newTestServer(t, nil)
	server := listenLoopback6(t)
	client := listenLoopback6(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, server) }()

	duid := duidLL(1)
	adv := roundTrip(t, client, server.LocalAddr(), msg(msgSolicit, 1, clientIDOpt(duid), elapsedOpt(0), iaNAOpt(1, 0, 0), oroOpt(23, 24)))
	if adv.mtype != msgAdvertise {
		t.Fatalf("SOLICIT answered with type %d", adv.mtype)
	}

	// Garbage in between is dropped without stopping the loop.
	if _, err := client.WriteTo([]byte("not dhcpv6"), server.LocalAddr()); err != nil {
		t.Fatal(err)
	}

	rep := roundTrip(t, client, server.LocalAddr(), msg(msgRequest, 2, clientIDOpt(duid), serverIDOpt(serverDUID), iaNAOpt(1, 0, 0, iaAddrOpt(first, 0, 0))))
	if ia := rep.ias(t, optIANA); rep.mtype != msgReply || len(ia) != 1 || ia[0].addrs[0].addr != first {
		t.Fatalf("REQUEST reply %d %+v", rep.mtype, ia)
	}
	info := roundTrip(t, client, server.LocalAddr(), msg(msgInformationRequest, 3, oroOpt(23)))
	if len(info.opts[optDNSServers]) != 1 {
		t.Fatalf("INFORMATION-REQUEST reply options %v", info.order)
	}

	cancel()
	waitServe(t, done, "cancel")
	st := s.Stats()
	if st.Received != 4 || st.Replied != 3 || st.Dropped[dropNotClientMsg] != 1 {
		t.Fatalf("stats %+v", st)
	}
	if l := s.Leases(); len(l) != 1 || l[0].Addr != first {
		t.Fatalf("leases %+v", l)
	}
}

func TestServeReturnsWhenConnClosed(t *testing.T) {
	s, _ := newTestServer(t, nil)
	conn := listenLoopback6(t)
	done := make(chan error, 1)
	go func() { done <- s.Serve(context.Background(), conn) }()
	conn.Close()
	waitServe(t, done, "close")
}

// failingWriteConn is a loopback socket whose writes fail.
type failingWriteConn struct{ net.PacketConn }

func (failingWriteConn) WriteTo([]byte, net.Addr) (int, error) {
	return 0, errors.New("write refused")
}

func TestServeSurvivesWriteErrors(t *testing.T) {
	s, _ := newTestServer(t, nil)
	server := listenLoopback6(t)
	client := listenLoopback6(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, failingWriteConn{server}) }()
	for i := range 3 {
		if _, err := client.WriteTo(msg(msgInformationRequest, uint32(i)), server.LocalAddr()); err != nil {
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
