package e2e

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/slipway-net/slipway/test/testenv"
)

// nsSession is a `slipway run` whose script stops at named steps until
// the test lets it go on, so the test can break the host side in between.
// A script line `step NAME` prints the marker @at_NAME and waits.
type nsSession struct {
	t   *testing.T
	p   *testenv.Process
	dir string
}

func startNS(t *testing.T, args []string, lines ...string) *nsSession {
	t.Helper()
	return startNSIn(t, "", args, lines...)
}

// startNSIn is startNS with slipway run started in the network namespace
// netns ("" for the test's own).
func startNSIn(t *testing.T, netns string, args []string, lines ...string) *nsSession {
	t.Helper()
	dir := t.TempDir()
	step := fmt.Sprintf(`step() { echo "@at_$1=1"; i=0; until [ -e %s/go_$1 ]; do i=$((i+1)); [ $i -lt 1200 ] || exit 9; sleep 0.05; done; }`, dir)
	sh := script(append([]string{step}, lines...)...)
	argv := append(append([]string{testenv.Slipway(t), "run"}, args...), "--", "sh", "-c", sh)
	if netns != "" {
		argv = append([]string{"ip", "netns", "exec", netns}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return &nsSession{t: t, p: testenv.StartProcess(t, "slipway run", cmd), dir: dir}
}

// at waits until the script reached step name.
func (s *nsSession) at(name string) {
	s.t.Helper()
	if s.p.WaitOutput("@at_"+name+"=1", 90*time.Second) {
		return
	}
	select {
	case <-s.p.Done():
		s.t.Fatalf("slipway run ended before step %s:\n%s", name, s.p.Output())
	default:
		s.t.Fatalf("the script did not reach step %s:\n%s", name, s.p.Output())
	}
}

// proceed lets the script go on past step name.
func (s *nsSession) proceed(name string) {
	s.t.Helper()
	if err := os.WriteFile(filepath.Join(s.dir, "go_"+name), nil, 0o644); err != nil {
		s.t.Fatal(err)
	}
}

// wait waits for slipway run to end and returns the script's markers.
func (s *nsSession) wait() map[string]string {
	s.t.Helper()
	select {
	case <-s.p.Done():
	case <-time.After(3 * time.Minute):
		s.t.Fatalf("slipway run still running:\n%s", s.p.Output())
	}
	if err := s.p.Err(); err != nil {
		s.t.Errorf("slipway run: %v", err)
	}
	return testenv.Markers(s.p.Output())
}

// TestFaultUpstreamDNSGoneAndBack: the upstream DNS server stops (its port
// refuses) and, later, hangs (it is stopped with SIGSTOP): each time the
// guest gets SERVFAIL within its resolver's timeout instead of silence, and
// once the server is back the guest's queries are answered again, with
// slipway holding no more descriptors than before.
func TestFaultUpstreamDNSGoneAndBack(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "dig")
	dns := testenv.StartDnsmasq(t)
	api := filepath.Join(t.TempDir(), "api.sock")
	status := func(name, q string) string {
		// +time=8: longer than slipway's own budget for a query (4 s).
		return fmt.Sprintf(`echo "@%s=$(dig +time=8 +tries=1 %s 2>&1 | sed -n 's/.*status: \([A-Z]*\).*/\1/p;s/.*timed out.*/TIMEOUT/p' | head -1)"`, name, q)
	}
	s := startNS(t, []string{"--api-socket", api, "--dns-upstream", dns.Addr.String()},
		waitFlows(api),
		usage(api, "before"),
		`echo "@up=$(dig +short +time=3 +tries=1 a.`+testenv.TestDomain+`)"`,
		`step gone`,
		status("gone", "b."+testenv.TestDomain),
		`step hung`,
		status("hung", "c."+testenv.TestDomain),
		`step back`,
		`echo "@back=$(dig +short +time=3 +tries=1 d.`+testenv.TestDomain+`)"`,
		usage(api, "after"),
	)
	s.at("gone")
	dns.Stop()
	s.proceed("gone")
	s.at("hung")
	dns.Start()
	dns.Signal(syscall.SIGSTOP)
	s.proceed("hung")
	s.at("back")
	dns.Signal(syscall.SIGCONT)
	s.proceed("back")
	m := s.wait()
	checkMarkers(t, m, map[string]string{
		"up": testenv.TestDomainAddr, "gone": "SERVFAIL", "hung": "SERVFAIL", "back": testenv.TestDomainAddr,
	}, "")
	baseline(t, m, s.p.Output())
}

// TestFaultServerRestartedMidTransfer: the host's server dies in the
// middle of a stream to the guest (its sockets reset). The guest's
// connection must end at once with an error, not hang; no flow stays
// behind; and a server started again on the same port serves the guest.
func TestFaultServerRestartedMidTransfer(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "socat", "curl", "sha256sum")
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	var (
		mu    sync.Mutex
		conns []*net.TCPConn
		sent  = make(chan struct{})
		once  sync.Once
	)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			tc := c.(*net.TCPConn)
			mu.Lock()
			conns = append(conns, tc)
			mu.Unlock()
			go func() {
				buf := make([]byte, 64<<10)
				total := 0
				for {
					n, err := tc.Write(buf)
					if err != nil {
						return
					}
					if total += n; total >= 2<<20 {
						once.Do(func() { close(sent) })
					}
				}
			}()
		}
	}()
	api := filepath.Join(t.TempDir(), "api.sock")
	s := startNS(t, []string{"--api-socket", api},
		waitFlows(api),
		usage(api, "before"),
		fmt.Sprintf(`(timeout 60 socat -u TCP:10.0.2.2:%d - | wc -c > /tmp/got; echo "@socat_rc=$?") &`, port),
		`step kill`,
		`wait`,
		`waitflows 0 tcp || echo "@tcp_left=yes"`,
		`step restart`,
		fmt.Sprintf(`echo "@sha=$(curl -sf -m 20 http://10.0.2.2:%d/blob | sha256sum | cut -d' ' -f1)"`, port),
		usage(api, "after"),
	)
	s.at("kill")
	select {
	case <-sent:
	case <-time.After(60 * time.Second):
		t.Fatalf("the guest received too little:\n%s", s.p.Output())
	}
	// The server dies: its listener closes, its connections reset.
	l.Close()
	mu.Lock()
	for _, c := range conns {
		c.SetLinger(0)
		c.Close()
	}
	mu.Unlock()
	killed := time.Now()
	s.proceed("kill")
	s.at("restart")
	if d := time.Since(killed); d > 30*time.Second {
		t.Errorf("the guest's connection took %v to end after the server died", d)
	}
	_, sum := testenv.HTTPFileOn(t, "127.0.0.1:"+strconv.Itoa(port), 1<<20)
	s.proceed("restart")
	m := s.wait()
	// socat's status is wc's (the pipe's last command): what matters is
	// that the marker came before the timeout killed socat.
	if _, ok := m["socat_rc"]; !ok {
		t.Errorf("the guest's stream did not end")
	}
	checkMarkers(t, m, map[string]string{"tcp_left": "", "sha": sum}, "")
	baseline(t, m, s.p.Output())
}

// slipwayPIDs lists root and its descendants that run the slipway binary
// (whatever split into processes slipway makes, each gets the limit).
func slipwayPIDs(t *testing.T, root int) []int {
	t.Helper()
	bin, err := filepath.EvalSymlinks(testenv.Slipway(t))
	if err != nil {
		t.Fatal(err)
	}
	parent := map[int]int{}
	for _, pid := range testenv.PIDs() {
		if _, ppid, ok := testenv.ProcStat(pid); ok {
			parent[pid] = ppid
		}
	}
	under := func(pid int) bool {
		for p := pid; p > 1; p = parent[p] {
			if p == root {
				return true
			}
		}
		return false
	}
	var out []int
	for pid := range parent {
		if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); exe == bin && under(pid) {
			out = append(out, pid)
		}
	}
	return out
}

// TestFaultEMFILE: slipway's descriptor limit is lowered while it runs
// (prlimit), so host sockets cannot be opened: the guest's new connections
// are refused and counted, slipway keeps running, and once the limit is
// back every connection works again.
func TestFaultEMFILE(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "prlimit", "python3", "curl", "sha256sum")
	echo := testenv.TCPServer(t, func(c net.Conn) { io.Copy(c, c); c.Close() })
	web, sum := testenv.HTTPFile(t, 1<<20)
	api := filepath.Join(t.TempDir(), "api.sock")
	connect := func(name string) string {
		return fmt.Sprintf(`python3 -c '
import socket
ok = 0
socks = []
for i in range(40):
    s = socket.socket()
    s.settimeout(10)
    try:
        s.connect(("10.0.2.2", %d))
        s.send(b"x")
        if s.recv(1) == b"x":
            ok += 1
    except OSError:
        pass
    socks.append(s)
print("@%s=%%d" %% ok)
'`, echo.Port(), name)
	}
	s := startNS(t, []string{"--api-socket", api},
		waitFlows(api),
		`step low`,
		connect("low_ok"),
		`echo "@failed=`+metric(api, `slipway_forwarder_total{key="",name="connect_failed"}`)+`"`,
		`step restored`,
		connect("restored_ok"),
		fmt.Sprintf(`echo "@sha=$(curl -sf -m 20 http://10.0.2.2:%d/blob | sha256sum | cut -d' ' -f1)"`, web.Port()),
	)
	s.at("low")
	pids := slipwayPIDs(t, s.p.Cmd.Process.Pid)
	if len(pids) == 0 {
		t.Fatal("no slipway process found")
	}
	for _, pid := range pids {
		fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		if err != nil {
			t.Fatal(err)
		}
		// Room for the API's connections and a few flows, not for 40.
		// Only the soft limit: raising a hard limit again needs
		// CAP_SYS_RESOURCE, which this machine's root lacks.
		lim := strconv.Itoa(len(fds) + 8)
		if out, err := exec.Command("prlimit", "--pid", strconv.Itoa(pid), "--nofile="+lim+":").CombinedOutput(); err != nil {
			t.Fatalf("prlimit: %v: %s", err, out)
		}
	}
	s.proceed("low")
	s.at("restored")
	for _, pid := range pids {
		if out, err := exec.Command("prlimit", "--pid", strconv.Itoa(pid), "--nofile=4096:").CombinedOutput(); err != nil {
			t.Fatalf("prlimit: %v: %s", err, out)
		}
	}
	s.proceed("restored")
	m := s.wait()
	if n := markerNumber(t, m, "low_ok", s.p.Output()); n >= 40 {
		t.Errorf("all 40 connections worked with the descriptor limit lowered: the test did not bite")
	}
	if n := markerNumber(t, m, "failed", s.p.Output()); n < 1 {
		t.Errorf("connect_failed counted %v, want the connections refused for want of descriptors", n)
	}
	if n := markerNumber(t, m, "restored_ok", s.p.Output()); n != 40 {
		t.Errorf("%v of 40 connections worked once the limit was back", n)
	}
	checkMarkers(t, m, map[string]string{"sha": sum}, "")
	if t.Failed() {
		t.Logf("output:\n%s", s.p.Output())
	}
}
