package dhcp4

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"testing"

	"github.com/slipway-net/slipway/services/internal/servicetest"
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

func TestServeOverLoopbackUDP(t *testing.T) {
	s, _ := newTestServer(t, nil)
	serverSock := servicetest.ListenUDP(t, "udp4")
	client := servicetest.ListenUDP(t, "udp4")
	conn := &portMapConn{PacketConn: serverSock, client: client.LocalAddr()}
	stop := servicetest.Start(t, func(ctx context.Context) error { return s.Serve(ctx, conn) })
	roundTrip := func(b []byte) parsed { return decode(t, servicetest.RoundTrip(t, client, serverSock.LocalAddr(), b)) }

	m := mac(1)
	offer := roundTrip(req{mtype: msgDiscover, mac: m, xid: 7}.build())
	if offer.mtype != msgOffer || offer.yiaddr != first || conn.lastDst() != "255.255.255.255:68" {
		t.Fatalf("offer %d of %v to %s", offer.mtype, offer.yiaddr, conn.lastDst())
	}

	// Garbage in between is dropped without stopping the loop.
	if _, err := client.WriteTo([]byte("not dhcp"), serverSock.LocalAddr()); err != nil {
		t.Fatal(err)
	}

	ack := roundTrip(req{mtype: msgRequest, mac: m, xid: 8,
		opts: []opt{withServerID(gw), withRequested(offer.yiaddr)}}.build())
	if ack.mtype != msgAck || ack.yiaddr != first {
		t.Fatalf("ack %d of %v", ack.mtype, ack.yiaddr)
	}
	renew := roundTrip(req{mtype: msgRequest, mac: m, xid: 9, ciaddr: first}.build())
	if renew.mtype != msgAck || conn.lastDst() != netip.AddrPortFrom(first, 68).String() {
		t.Fatalf("renew %d sent to %s", renew.mtype, conn.lastDst())
	}

	stop()
	st := s.Stats()
	if st.Received != 4 || st.Replied != 3 || st.Dropped[dropShort] != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestServeLoop(t *testing.T) {
	s, _ := newTestServer(t, nil)
	servicetest.CheckServeLoop(t, "udp4", s.Serve, func(i int) []byte { return req{mtype: msgDiscover, mac: mac(1), xid: uint32(i)}.build() },
		func() uint64 { return s.Stats().Replied })
}
