package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/slipway-net/slipway/test/testenv"
	"github.com/slipway-net/slipway/test/vmtest"
)

// stuckListener returns a loopback port whose accept queue is full, so
// further connects to it hang: a destination that never answers.
func stuckListener(t *testing.T) int {
	t.Helper()
	l, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	port := l.Addr().(*net.TCPAddr).Port
	// Never accepted: these fill the kernel's accept queue (backlog
	// somaxconn), after which new SYNs are dropped.
	var held []net.Conn
	t.Cleanup(func() {
		for _, c := range held {
			c.Close()
		}
	})
	for i := 0; i < 5000; i++ {
		c, err := net.DialTimeout("tcp4", l.Addr().String(), 200*time.Millisecond)
		if err != nil {
			return port
		}
		held = append(held, c)
	}
	t.Fatal("could not fill the accept queue")
	return 0
}

// waitFlows defines the shell function waitflows N [PROTO] for a namespace
// script: it waits (30 s at most, then fails) until slipway's flow table
// holds N outbound flows of PROTO (tcp unless given), asking the metrics
// of slipway's API socket api (a file, so within reach of the namespace).
func waitFlows(api string) string {
	return fmt.Sprintf(`waitflows() { i=0; until curl -s --unix-socket %s http://slipway/metrics | grep -qxF "slipway_flows{key=\"\",name=\"${2:-tcp}\"} $1"; do i=$((i+1)); [ $i -lt 600 ] || return 1; sleep 0.05; done; }`, api)
}

// TestSlowDestinationsDoNotStallConnects opens many connects to a
// destination that never answers; a connect to a working server must still
// succeed at once (gvproxy stalls after 10 pending connects).
func TestSlowDestinationsDoNotStallConnects(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "curl")
	stuck := stuckListener(t)
	web, _ := testenv.HTTPFile(t, 1024)
	api := filepath.Join(t.TempDir(), "api.sock")
	res := runNS(t, []string{"--api-socket", api}, script(
		waitFlows(api),
		fmt.Sprintf(`for i in $(seq 1 40); do curl -s -m 20 -o /dev/null http://10.0.2.2:%d/ >/dev/null 2>&1 & pids="${pids:-} $!"; done`, stuck),
		`waitflows 40 || echo "@pending=never"`,
		fmt.Sprintf(`echo "@ok=$(curl -s -m 5 http://10.0.2.2:%d/)"`, web.Port()),
		`kill $pids 2>/dev/null; exit 0`,
	))
	m := testenv.Markers(res.Output)
	if m["pending"] != "" {
		t.Fatalf("slipway never held the 40 pending connects:\n%s", res.Output)
	}
	if m["ok"] != "hello from the host" {
		t.Fatalf("a connect waited behind 40 pending ones: %q\n%s", m["ok"], res.Output)
	}
}

// TestMaxFlows: past --max-flows new connections are refused, and slots
// come back when flows end.
func TestMaxFlows(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "curl", "socat")
	port := testenv.TCPServer(t, func(c net.Conn) { io.Copy(io.Discard, c); c.Close() }).Port()
	web, _ := testenv.HTTPFile(t, 1024)
	api := filepath.Join(t.TempDir(), "api.sock")
	res := runNS(t, []string{"--max-flows", "3", "--api-socket", api}, script(
		waitFlows(api),
		fmt.Sprintf(`for i in 1 2 3; do sleep 30 2>/dev/null | socat - TCP:10.0.2.2:%d >/dev/null 2>&1 & pids="${pids:-} $!"; done`, port),
		`waitflows 3 || echo "@up=never"`,
		fmt.Sprintf(`curl -s -m 5 -o /dev/null http://10.0.2.2:%d/; echo "@over=$?"`, web.Port()),
		`kill $pids`,
		`waitflows 0 || echo "@down=never"`,
		fmt.Sprintf(`echo "@after=$(curl -s -m 5 http://10.0.2.2:%d/)"`, web.Port()),
	))
	m := testenv.Markers(res.Output)
	if m["up"] != "" || m["down"] != "" {
		t.Errorf("slipway's flow table never held 3 flows (%q) or never came back to 0 (%q)", m["up"], m["down"])
	}
	if m["over"] != "7" {
		t.Errorf("connection past --max-flows: curl exit %q, want 7 (refused)", m["over"])
	}
	if m["after"] != "hello from the host" {
		t.Errorf("after flows closed: %q, want the page", m["after"])
	}
	if t.Failed() {
		t.Logf("output:\n%s", res.Output)
	}
}

// TestUDPIdleTimeout: a UDP flow idle past --udp-idle-timeout is closed;
// the next datagram opens a new host socket (a new source port).
func TestUDPIdleTimeout(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "socat")
	// Reply with the source port slipway's host socket used.
	port := testenv.UDPServer(t, "127.0.0.1:0", func(_ []byte, from net.Addr) []byte {
		return []byte(fmt.Sprint(from.(*net.UDPAddr).Port))
	}).Port()
	api := filepath.Join(t.TempDir(), "api.sock")
	res := runNS(t, []string{"--udp-idle-timeout", "1s", "--api-socket", api}, script(
		waitFlows(api),
		// One guest socket (fixed source port 4444) sends three times.
		fmt.Sprintf(`ask() { echo x | socat -T2 - UDP:10.0.2.2:%d,sourceport=4444,reuseaddr; echo; }`, port),
		`echo "@a=$(ask)"`,
		`echo "@b=$(ask)"`,
		// Until slipway has closed the idle flow.
		`waitflows 0 udp || echo "@closed=never"`,
		`echo "@c=$(ask)"`,
	))
	m := testenv.Markers(res.Output)
	if m["closed"] != "" {
		t.Fatalf("slipway never closed the idle UDP flow:\n%s", res.Output)
	}
	if m["a"] == "" || m["a"] != m["b"] || m["c"] == "" || m["c"] == m["a"] {
		t.Fatalf("host ports a=%q b=%q c=%q: want a==b (one flow) and c!=a (closed after idling):\n%s", m["a"], m["b"], m["c"], res.Output)
	}
}

// TestFlowsReleasedWhenGuestGoesAway: a VM with an open TCP connection to
// the host powers off; slipway closes the host side once the VM has not come
// back within the reconnect grace period.
func TestFlowsReleasedWhenGuestGoesAway(t *testing.T) {
	testenv.RequireTools(t, "qemu-system-x86_64")
	guest := vmtest.Build(t)
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		if c, err := l.Accept(); err == nil {
			accepted <- c
		}
	}()
	sock := filepath.Join(t.TempDir(), "vm.sock")
	testenv.Serve(t, "--listen", "stream:unix:"+sock)
	port := l.Addr().(*net.TCPAddr).Port
	vm := vmtest.Start(t, guest, vmtest.Options{
		Netdev: streamNIC(sock, "52:54:00:12:34:57"),
		Script: strings.Join([]string{
			fmt.Sprintf(`(sleep 600 | nc 10.0.2.2 %d) &`, port),
			// Power off only once the connection is established
			// (state 01 towards the port in /proc/net/tcp).
			fmt.Sprintf(`for i in $(seq 1 600); do grep -q ':%04X 01 ' /proc/net/tcp && break; sleep 0.1; done`, port),
			`echo "@connected"`,
		}, "\n"),
	})
	var c net.Conn
	select {
	case c = <-accepted:
	case <-time.After(2 * time.Minute):
		t.Fatalf("the guest never connected:\n%s", vm.Console())
	}
	defer c.Close()
	if _, err := vm.Wait(); err != nil {
		t.Fatalf("guest: %v\n%s", err, vm.Console())
	}
	// The VM is gone (it powered off). Within the grace period plus
	// margin, the host side must see the connection end.
	c.SetReadDeadline(time.Now().Add(60 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("host connection still open a minute after the guest went away: %v", err)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// TestReconnectFromSamePort: after the host's server closed a connection
// first (the stack then holds TIME-WAIT), the guest connecting again from
// the same port must get through; guests reuse ports within seconds under
// load, and a long TIME-WAIT stalled their connects until it ended.
func TestReconnectFromSamePort(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "socat")
	port := testenv.TCPServer(t, func(c net.Conn) {
		c.Write([]byte("hello\n"))
		c.Close() // the server closes first
	}).Port()
	res := runNS(t, nil, script(
		// -u: socat only reads the connection, so the guest never closes
		// first (with stdin at EOF it could send its FIN before the
		// server's arrived, and then hold TIME-WAIT itself: its own
		// kernel refuses the next connect from the port, EADDRNOTAVAIL).
		fmt.Sprintf(`for i in 1 2 3 4 5; do echo "@try$i=$(timeout 4 socat -u -T 5 TCP4:10.0.2.2:%d,sourceport=40123,reuseaddr -)"; done`, port),
	))
	m := testenv.Markers(res.Output)
	for i := 1; i <= 5; i++ {
		if k := fmt.Sprintf("try%d", i); m[k] != "hello" {
			t.Fatalf("%s = %q, want hello (a connect from a reused port stalled)\n%s", k, m[k], res.Output)
		}
	}
}

// TestIdleFlowsHoldNoGoroutines: idle TCP flows must not each park
// goroutines (they did, two per flow: at 10,000 flows that was most of
// slipway's memory). 200 idle connections, then slipway's own goroutine
// count from its metrics.
func TestIdleFlowsHoldNoGoroutines(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "socat")
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// The accept loop owns the connections it holds until the listener
	// closes; then it hands them over to be closed.
	accepted := make(chan struct{}, 1000)
	handOver := make(chan []net.Conn, 1)
	go func() {
		var held []net.Conn
		for {
			c, err := l.Accept()
			if err != nil {
				handOver <- held
				return
			}
			held = append(held, c) // idle: never written, never closed
			accepted <- struct{}{}
		}
	}()
	defer func() {
		l.Close()
		for _, c := range <-handOver {
			c.Close()
		}
	}()
	port := l.Addr().(*net.TCPAddr).Port
	api := filepath.Join(t.TempDir(), "api.sock")
	cmd := exec.Command(testenv.Slipway(t), "run", "--api-socket", api, "--", "sh", "-c",
		fmt.Sprintf(`for i in $(seq 1 200); do sleep 120 | socat - TCP4:10.0.2.2:%d >/dev/null 2>&1 & done; sleep 120`, port))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	for i := 0; i < 200; i++ {
		select {
		case <-accepted:
		case <-time.After(60 * time.Second):
			t.Fatalf("only %d of 200 connections arrived", i)
		}
	}
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return net.Dial("unix", api)
	}}}
	// The handshakes' goroutines and each new flow's first drain end
	// shortly after the connections arrived; wait for the count to come
	// down to a fixed set (services, API, poller, runtime), which idle
	// flows parking goroutines of their own never let it do.
	const limit = 100
	var goroutines float64
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		goroutines = goroutineCount(t, c)
		if goroutines <= limit {
			return
		}
		if time.Now().After(deadline) {
			break
		}
	}
	t.Fatalf("%v goroutines with 200 idle flows: idle flows park goroutines", goroutines)
}

// goroutineCount is go_goroutines from slipway's metrics.
func goroutineCount(t *testing.T, c *http.Client) float64 {
	t.Helper()
	resp, err := c.Get("http://slipway/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "go_goroutines "); ok {
			var n float64
			if _, err := fmt.Sscanf(v, "%g", &n); err == nil {
				return n
			}
		}
	}
	t.Fatalf("no go_goroutines in the metrics:\n%s", b)
	return 0
}

// metric is a shell expression for the value of one of slipway's metrics
// (the whole sample name, labels included), read from its API socket api.
func metric(api, name string) string {
	return fmt.Sprintf(`$(curl -s --unix-socket %s http://slipway/metrics | awk '$1 == "%s" {print $2}')`, api, strings.ReplaceAll(name, `"`, `\"`))
}

// usage prints markers @fds_TAG and @goroutines_TAG: what slipway holds
// now, for baseline to compare.
func usage(api, tag string) string {
	return fmt.Sprintf(`echo "@fds_%s=%s"; echo "@goroutines_%s=%s"`, tag, metric(api, "process_open_fds"), tag, metric(api, "go_goroutines"))
}

// markerNumber is the number a script printed as marker k.
func markerNumber(t *testing.T, m map[string]string, k, output string) float64 {
	t.Helper()
	v, err := strconv.ParseFloat(m[k], 64)
	if err != nil {
		t.Fatalf("%s = %q: %v\n%s", k, m[k], err, output)
	}
	return v
}

// baseline fails the test unless slipway's descriptors and goroutines
// (usage "after") are back near where they were (usage "before"): room
// for the API's own connection and the timers of a moment.
func baseline(t *testing.T, m map[string]string, output string) {
	t.Helper()
	if before, after := markerNumber(t, m, "fds_before", output), markerNumber(t, m, "fds_after", output); after > before+8 {
		t.Errorf("slipway holds %v descriptors afterwards, %v before", after, before)
	}
	if before, after := markerNumber(t, m, "goroutines_before", output), markerNumber(t, m, "goroutines_after", output); after > before+20 {
		t.Errorf("slipway has %v goroutines afterwards, %v before", after, before)
	}
}

// TestUDPPortChurnLeavesNoState: a guest spraying datagrams from 2,000
// source ports at a host port where nothing listens must not pin 2,000
// host sockets and their goroutines for the idle timeout (before, 4,096
// goroutines and 2,051 descriptors stayed for a minute): the host's ICMP
// port unreachable closes a flow at once, and the guest hears the refusal
// as from a real host; the flows whose refusal the host's ICMP rate limit
// swallowed close after the (here shortened) unreplied timeout, long
// before the idle one.
func TestUDPPortChurnLeavesNoState(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "python3", "curl")
	closed := testenv.FreePort(t, "udp")
	api := filepath.Join(t.TempDir(), "api.sock")
	res := runNS(t, []string{"--api-socket", api, "--udp-idle-timeout", "5m", "--udp-unreplied-timeout", "3s"}, script(
		waitFlows(api),
		usage(api, "before"),
		fmt.Sprintf(`python3 -c '
import socket
for i in range(2000):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.sendto(b"x", ("10.0.2.2", %d))
    s.close()
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect(("10.0.2.2", %d))
s.send(b"y")
s.settimeout(10)
try:
    s.recv(16)
    print("@refused=no")
except ConnectionRefusedError:
    print("@refused=yes")
except socket.timeout:
    print("@refused=timeout")
'`, closed, closed),
		`waitflows 0 udp || echo "@closed=never"`,
		usage(api, "after"),
	))
	m := testenv.Markers(res.Output)
	if m["closed"] != "" {
		t.Fatalf("the refused UDP flows stayed open:\n%s", res.Output)
	}
	if m["refused"] != "yes" {
		t.Errorf("the guest's socket saw %q, want the refusal (ICMP port unreachable)", m["refused"])
	}
	baseline(t, m, res.Output)
}

// TestTCPClosedPortsLeaveNoState sends SYNs to 2,000 ports of the host
// where (almost) nothing listens: each is refused with a RST, and once
// they are, slipway holds no flow, descriptor or goroutine for them.
func TestTCPClosedPortsLeaveNoState(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "hping3", "curl")
	api := filepath.Join(t.TempDir(), "api.sock")
	res := runNS(t, []string{"--api-socket", api}, script(
		waitFlows(api),
		usage(api, "before"),
		// -p ++N: a new destination port for each SYN.
		`hping3 -q -S -c 2000 -i u300 -p ++20000 10.0.2.2 2>&1 | sed -n 's/.* \([0-9]*\) packets received.*/@answered=\1/p'`,
		`waitflows 0 tcp || echo "@closed=never"`,
		usage(api, "after"),
	))
	m := testenv.Markers(res.Output)
	if m["closed"] != "" {
		t.Fatalf("flows of the refused SYNs stayed open:\n%s", res.Output)
	}
	// A SYN a loopback listener of another test accepted is answered
	// with a SYN-ACK instead: either way, each SYN gets its answer.
	if n := markerNumber(t, m, "answered", res.Output); n < 1990 {
		t.Errorf("%v of 2000 SYNs answered, want every one (a RST for a closed port)", n)
	}
	baseline(t, m, res.Output)
}

// TestGuestFlowLimits: a guest opening more UDP flows than its limit, or
// flows faster than its rate, is refused and the refusals are counted;
// once it slows down it is served again.
func TestGuestFlowLimits(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "python3", "curl")
	echo := testenv.UDPServer(t, "127.0.0.1:0", func(pkt []byte, _ net.Addr) []byte { return pkt })
	web, _ := testenv.HTTPFile(t, 1024)
	api := filepath.Join(t.TempDir(), "api.sock")
	res := runNS(t, []string{"--api-socket", api, "--max-udp-flows-per-guest", "20", "--max-new-flows-per-second", "100"}, script(
		waitFlows(api),
		// 50 UDP flows at once (each its own source port), echoed.
		fmt.Sprintf(`python3 -c '
import socket
import select
import time
socks = []
for i in range(50):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect(("10.0.2.2", %d))
    s.send(b"x")
    socks.append(s)
answered = set()
deadline = time.time() + 3
while time.time() < deadline and len(answered) < len(socks):
    ready, _, _ = select.select([s for s in socks if s not in answered], [], [], 0.2)
    for s in ready:
        s.recv(16)
        answered.add(s)
print("@udp_answered=%%d" %% len(answered))
'`, echo.Port()),
		`echo "@refused_udp=`+metric(api, `slipway_flows_total{key="",name="refused_guest_udp"}`)+`"`,
		// 300 connects as fast as they go: beyond the burst of 100,
		// the rate refuses them (a RST: connection refused).
		fmt.Sprintf(`python3 -c '
import socket
refused = 0
for i in range(300):
    s = socket.socket()
    try:
        s.connect(("10.0.2.2", %d))
    except ConnectionRefusedError:
        refused += 1
    s.close()
print("@tcp_refused=%%d" %% refused)
'`, web.Port()),
		`echo "@refused_rate=`+metric(api, `slipway_flows_total{key="",name="refused_rate"}`)+`"`,
		`sleep 1.5`,
		fmt.Sprintf(`echo "@ok=$(curl -s -m 5 http://10.0.2.2:%d/)"`, web.Port()),
	))
	m := testenv.Markers(res.Output)
	if n := markerNumber(t, m, "udp_answered", res.Output); n != 20 {
		t.Errorf("%v of 50 UDP flows answered, want the limit of 20", n)
	}
	if n := markerNumber(t, m, "refused_udp", res.Output); n < 30 {
		t.Errorf("refused_guest_udp = %v, want the 30 flows beyond the limit", n)
	}
	if n := markerNumber(t, m, "tcp_refused", res.Output); n < 100 {
		t.Errorf("%v of 300 connects refused at 100/s, want most beyond the burst", n)
	}
	if markerNumber(t, m, "refused_rate", res.Output) < markerNumber(t, m, "tcp_refused", res.Output) {
		t.Errorf("refused_rate = %s, below the %s refused connects", m["refused_rate"], m["tcp_refused"])
	}
	if m["ok"] != "hello from the host" {
		t.Errorf("after the burst, a download got %q\n%s", m["ok"], res.Output)
	}
}
