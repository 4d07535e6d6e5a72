package slirpabi

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/slipway-net/slipway/config"
	"github.com/slipway-net/slipway/link"
	"github.com/slipway-net/slipway/network"
)

func newInstance(t *testing.T) (*Instance, chan struct{}) {
	t.Helper()
	ready := make(chan struct{}, 1)
	base := config.Config{DNSUpstreams: []config.DNSServer{{AddrPort: netip.MustParseAddrPort("127.0.0.1:1")}}}
	i, err := New(qemuDefaults(), base, func() {
		select {
		case ready <- struct{}{}:
		default:
		}
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(i.Close)
	return i, ready
}

func arpRequest(mac [6]byte) []byte {
	f := make([]byte, 42)
	copy(f, bytes.Repeat([]byte{0xff}, 6))
	copy(f[6:], mac[:])
	copy(f[12:], []byte{0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1})
	copy(f[22:], mac[:])
	copy(f[28:], []byte{10, 0, 2, 15})
	copy(f[38:], []byte{10, 0, 2, 2})
	return f
}

// TestInputAndTake: a frame from the host reaches the network, and its
// answer waits for Take, announced through notify.
func TestInputAndTake(t *testing.T) {
	i, ready := newInstance(t)
	i.Input(arpRequest([6]byte{0x52, 0x54, 0, 0x12, 0x34, 0x56}))
	bufs, sizes := link.NewBuffers(4)
	deadline := time.After(10 * time.Second) // a bound on a hang, not a timing check
	for {
		select {
		case <-ready:
		case <-deadline:
			t.Fatal("no frame for the host")
		}
		// Router advertisements come too: look for the ARP reply, and
		// drain everything before waiting for the next edge.
		for n := i.Take(bufs, sizes); n > 0; n = i.Take(bufs, sizes) {
			for k := range n {
				f := bufs[k][link.VnetHdrLen : link.VnetHdrLen+sizes[k]]
				if f[12] == 0x08 && f[13] == 0x06 && f[21] == 2 && bytes.Equal(f[22:28], network.GatewayMAC(netip.MustParseAddr("10.0.2.2"))) {
					return
				}
			}
		}
	}
}

func TestBadInputIsCounted(t *testing.T) {
	i, _ := newInstance(t)
	i.Input(make([]byte, 13))
	i.Input(make([]byte, link.EthHdrLen+DefaultMTU+1))
	i.Input(make([]byte, 70000))
	if r, l := i.Stats().InRunt.Load(), i.Stats().InTooLarge.Load(); r != 1 || l != 2 {
		t.Errorf("runts %d, too large %d", r, l)
	}
	i.Close()
	i.Input(arpRequest([6]byte{2}))
	if c := i.Stats().InClosed.Load(); c != 1 {
		t.Errorf("input after close: %d counted", c)
	}
}

func TestForwardsAndConnectionInfo(t *testing.T) {
	i, _ := newInstance(t)
	port := freePort(t)
	host, guest := sockaddr4("127.0.0.1", port), sockaddr4("0.0.0.0", 22)
	if err := i.AddForward(0, host, guest); err != nil {
		t.Fatal(err)
	}
	if err := i.AddForward(0, host, guest); Errno(err).Error() != "address already in use" {
		t.Errorf("second add: %v", err)
	}
	info := i.ConnectionInfo()
	if !strings.HasPrefix(info, connHeader) {
		t.Errorf("no header:\n%s", info)
	}
	m := regexp.MustCompile(`TCP.HOST_FORWARD.*127\.0\.0\.1\s+(\d+)\s+10\.`).FindStringSubmatch(info)
	if m == nil || m[1] != fmt.Sprint(port) {
		t.Errorf("QEMU's pattern does not find the forward:\n%s", info)
	}
	if err := i.RemoveForward(0, host); err != nil {
		t.Fatal(err)
	}
	if err := i.RemoveForward(0, host); Errno(err).Error() != "no such file or directory" {
		t.Errorf("second remove: %v", err)
	}

	// Host port 0 is a port the kernel picks, which the table shows and
	// which is bound.
	if err := i.AddForward(0, sockaddr4("127.0.0.1", 0), guest); err != nil {
		t.Fatalf("host port 0: %v", err)
	}
	m = regexp.MustCompile(`TCP.HOST_FORWARD.*127\.0\.0\.1\s+(\d+)\s+10\.`).FindStringSubmatch(i.ConnectionInfo())
	if m == nil || m[1] == "0" {
		t.Fatalf("no ephemeral forward in:\n%s", i.ConnectionInfo())
	}
	if l, err := net.Listen("tcp4", "127.0.0.1:"+m[1]); err == nil {
		l.Close()
		t.Errorf("the ephemeral port %s is not bound", m[1])
	}

	// An IPv6 host address (slirp_add_hostxfwd, V6ONLY) binds on it.
	p6 := freePort(t)
	if err := i.AddForward(FwdV6Only, sockaddr6("::1", p6), guest); err != nil {
		t.Fatalf("IPv6 host forward: %v", err)
	}
	if l, err := net.Listen("tcp6", fmt.Sprintf("[::1]:%d", p6)); err == nil {
		l.Close()
		t.Errorf("[::1]:%d is not bound by the IPv6 forward", p6)
	}
	if err := i.RemoveForward(FwdV6Only, sockaddr6("::1", p6)); err != nil {
		t.Errorf("remove the IPv6 forward: %v", err)
	}
}

func TestConnectionTableRows(t *testing.T) {
	flows := []network.FlowInfo{
		{Proto: config.TCP, State: "established", Guest: netip.MustParseAddrPort("10.0.2.15:40000"), Remote: netip.MustParseAddrPort("10.0.2.2:80")},
		{Proto: config.UDP, State: "active", Guest: netip.MustParseAddrPort("10.0.2.15:5353"), Remote: netip.MustParseAddrPort("192.0.2.1:53")},
		{Proto: config.ICMP, Guest: netip.MustParseAddrPort("10.0.2.15:7"), Remote: netip.MustParseAddrPort("192.0.2.1:0")},
	}
	got := connectionTable(nil, flows, time.Minute)
	want := connHeader +
		"  TCP[ESTABLISHED]   -1       10.0.2.15 40000        10.0.2.2    80     0     0\n" +
		"  UDP[60 sec]        -1       10.0.2.15  5353       192.0.2.1    53     0     0\n" +
		"  ICMP[60 sec]       -1       10.0.2.15  -          192.0.2.1  -        0     0\n"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestStateSaveLoadKeepsLeases(t *testing.T) {
	i, _ := newInstance(t)
	var st State
	st.Clients[1] = BootpClient{Allocated: true, MAC: [6]byte{0x52, 0x54, 0, 1, 2, 3}}
	var b bytes.Buffer
	WriteState(&b, st)
	if err := i.LoadState(4, &b); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := i.SaveState(&out); err != nil {
		t.Fatal(err)
	}
	got, err := ReadState(&out, 4)
	if err != nil || got.Clients != st.Clients {
		t.Errorf("saved %+v, %v; want the loaded table", got, err)
	}
	if !strings.Contains(i.NeighborInfo(), "52:54:00:01:02:03  10.0.2.16") {
		t.Errorf("neighbor info:\n%s", i.NeighborInfo())
	}
}

func freePort(t *testing.T) uint16 {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return uint16(l.Addr().(*net.TCPAddr).Port)
}
