package publish

import (
	"bufio"
	"context"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/slipway-net/slipway/config"
	"github.com/slipway-net/slipway/internal/flow"
)

// loopbackPublisher is a publisher whose DialLoopback sends every
// connection to server (a real socket on the host's loopback, standing in
// for the guest's) and records the targets it was asked for.
type loopbackPublisher struct {
	*Publisher
	flows *flow.Table
	mu    sync.Mutex
	asked []netip.AddrPort
}

func newLoopbackPublisher(t *testing.T, server string, maxConns int) *loopbackPublisher {
	t.Helper()
	lp := &loopbackPublisher{flows: flow.NewTable(flow.Limits{Max: 16, UDPPerGuest: 16, NewPerSecond: 100})}
	lp.Publisher = New(Options{
		Flows: lp.flows, MaxPorts: 8, MaxPendingConnects: 4, ConnectTimeout: 5 * time.Second,
		UDPIdleTimeout: time.Minute, MaxLoopbackConns: maxConns,
		DialLoopback: func(ctx context.Context, network string, target netip.AddrPort) (net.Conn, error) {
			lp.mu.Lock()
			lp.asked = append(lp.asked, target)
			lp.mu.Unlock()
			var d net.Dialer
			return d.DialContext(ctx, network, server)
		},
	})
	t.Cleanup(func() { lp.Close(); lp.flows.Close() })
	return lp
}

// publish adds a rule from an ephemeral port of the host's 127.0.0.1 to
// the guest's port 8080 and returns the forward and the host port bound.
func (lp *loopbackPublisher) publish(t *testing.T, proto config.Proto) (Forward, string) {
	t.Helper()
	f, err := lp.Add(config.PublishRule{Proto: proto, HostAddr: netip.MustParseAddr("127.0.0.1"),
		GuestAddr: netip.MustParseAddr("10.0.2.15"), GuestPort: 8080})
	if err != nil {
		t.Fatal(err)
	}
	fw := lp.forwards[f.ID]
	if proto == config.UDP {
		return f, fw.udp[0].conn.LocalAddr().String()
	}
	return f, fw.tcp[0].Addr().String()
}

// waitFor polls cond, which follows a write just made, for at most 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("still not %s", what)
		}
	}
}

// A TCP client from the host's loopback goes to the guest's loopback at
// the published guest port, through DialLoopback: it is a flow of its
// forward, counted against the table with its bytes as they go; the
// client past MaxLoopbackConns is refused; removing the forward ends the
// connection and its flow.
func TestLoopbackTCP(t *testing.T) {
	srv, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	go func() {
		for {
			c, err := srv.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); bufio.NewReader(c).WriteTo(c) }() // echo
		}
	}()
	lp := newLoopbackPublisher(t, srv.Addr().String(), 1)
	f, hostPort := lp.publish(t, config.TCP)
	c, err := net.Dial("tcp", hostPort)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("hello\n"))
	if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || line != "hello\n" {
		t.Fatalf("echo: %q, %v", line, err)
	}
	lp.mu.Lock()
	asked := lp.asked
	lp.mu.Unlock()
	if want := netip.MustParseAddrPort("127.0.0.1:8080"); len(asked) != 1 || asked[0] != want {
		t.Fatalf("DialLoopback asked for %v, want [%s]", asked, want)
	}
	list := lp.flows.List()
	if len(list) != 1 {
		t.Fatalf("%d flows, want 1", len(list))
	}
	fl := list[0]
	client := c.LocalAddr().(*net.TCPAddr).AddrPort()
	if fl.Forward != f.ID || fl.Proto != config.TCP || fl.Guest != asked[0] || fl.Host != client || !fl.Remote.Addr().IsLoopback() {
		t.Errorf("flow %+v: want forward %d, guest %s, host %s, remote on the loopback", fl.Ends, f.ID, asked[0], client)
	}
	waitFor(t, "6 bytes each way", func() bool { return fl.ToGuest.Load() == 6 && fl.ToHost.Load() == 6 })

	// At the bound of one: the second client is reset (maybe before its
	// connect returns), and counted.
	if c2, err := net.Dial("tcp", hostPort); err == nil {
		defer c2.Close()
		c2.SetReadDeadline(time.Now().Add(10 * time.Second))
		if n, err := c2.Read(make([]byte, 1)); err == nil || n != 0 {
			t.Errorf("second client past MaxLoopbackConns read %d bytes, %v; want it closed", n, err)
		}
	}
	if st := lp.Stats(); st.Refused != 1 {
		t.Errorf("refused %d, want 1", st.Refused)
	}

	if _, err := lp.Remove(f.ID); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := c.Read(make([]byte, 1)); err == nil {
		t.Errorf("read %d bytes after the forward was removed, want the connection closed", n)
	}
	if n := lp.flows.Len(); n != 0 {
		t.Errorf("%d flows after the forward was removed", n)
	}
}

// A UDP client from the host's loopback: its datagrams go to the guest's
// loopback and the answers come back from the published port, as one
// flow of the forward with its bytes counted; removing the forward ends
// the flow.
func TestLoopbackUDP(t *testing.T) {
	srv, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := srv.ReadFrom(buf)
			if err != nil {
				return
			}
			srv.WriteTo(append([]byte("echo:"), buf[:n]...), from)
		}
	}()
	lp := newLoopbackPublisher(t, srv.LocalAddr().String(), 0)
	f, hostPort := lp.publish(t, config.UDP)
	c, err := net.Dial("udp", hostPort)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("ping"))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 100)
	n, err := c.Read(buf)
	if err != nil || string(buf[:n]) != "echo:ping" {
		t.Fatalf("answer %q, %v", buf[:n], err)
	}
	list := lp.flows.List()
	if len(list) != 1 {
		t.Fatalf("%d flows, want 1", len(list))
	}
	fl := list[0]
	if want := netip.MustParseAddrPort("127.0.0.1:8080"); fl.Forward != f.ID || fl.Proto != config.UDP || fl.Guest != want ||
		fl.Host != c.LocalAddr().(*net.UDPAddr).AddrPort() {
		t.Errorf("flow %+v: want forward %d to %s from %s", fl.Ends, f.ID, want, c.LocalAddr())
	}
	waitFor(t, "4 bytes in and 9 out", func() bool { return fl.ToGuest.Load() == 4 && fl.ToHost.Load() == 9 })
	if _, err := lp.Remove(f.ID); err != nil {
		t.Fatal(err)
	}
	if n := lp.flows.Len(); n != 0 {
		t.Errorf("%d flows after the forward was removed", n)
	}
}
