package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/slipway-net/slipway/internal/nvlist"
	"github.com/slipway-net/slipway/test/guestpeer"
	"github.com/slipway-net/slipway/test/testenv"
)

// The sandbox as seen from outside the running engine, the way a user
// checks it: /proc/PID of the engine process each mode starts.

const nobodyUID = 65534

// anyUser, as checkConfined's uid, accepts any uid but root's.
const anyUser = -1

// findEngine waits for a slipway-engine process that match accepts.
func findEngine(t *testing.T, what string, match func(proc string) bool) int {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		for _, pid := range testenv.PIDs() {
			proc := "/proc/" + strconv.Itoa(pid)
			cmdline, _ := os.ReadFile(proc + "/cmdline")
			if bytes.HasPrefix(cmdline, []byte("slipway-engine\x00")) && match(proc) {
				return pid
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no engine process %s", what)
	return 0
}

// enginePID is the engine the launcher started: its child.
func enginePID(t *testing.T, launcher int) int {
	t.Helper()
	return findEngine(t, "under launcher "+strconv.Itoa(launcher), func(proc string) bool {
		pid, _ := strconv.Atoi(strings.TrimPrefix(proc, "/proc/"))
		_, ppid, ok := testenv.ProcStat(pid)
		return ok && ppid == launcher
	})
}

// engineByExe is the engine whose binary is exe (or what the symlink exe
// points at), however it was started.
func engineByExe(t *testing.T, exe string) int {
	t.Helper()
	want, err := filepath.EvalSymlinks(exe)
	if err != nil {
		t.Fatal(err)
	}
	return findEngine(t, "of "+want, func(proc string) bool {
		got, _ := os.Readlink(proc + "/exe")
		return got == want
	})
}

// checkConfined fails the test unless the engine pid has every layer of
// the default sandbox that shows from outside: no capability in any set,
// no_new_privs, a seccomp filter, the host uid wanted, namespaces of its
// own (but the host's network), an empty root, no core dumps, a hard
// descriptor limit, and (run as the same uid) not dumpable.
func checkConfined(t *testing.T, pid, wantUID int, launcherRoot bool) {
	t.Helper()
	checkLayers(t, pid, wantUID, launcherRoot, false)
}

// checkLayers is checkConfined; strict: the engine has a network
// namespace of its own too.
func checkLayers(t *testing.T, pid, wantUID int, launcherRoot, strict bool) {
	t.Helper()
	st := testenv.CheckUnprivileged(t, pid, "engine")
	// anyUser: some uid but root's, all four the same.
	want := strconv.Itoa(wantUID)
	if f := strings.Fields(st["Uid"]); len(f) != 4 || f[0] != f[1] || f[0] != f[2] || f[0] != f[3] ||
		(wantUID == anyUser && f[0] == "0") || (wantUID != anyUser && f[0] != want) {
		t.Errorf("engine host uids %q, want %s", st["Uid"], want)
	}
	p := "/proc/" + strconv.Itoa(pid)
	for _, ns := range []string{"user", "mnt", "ipc", "uts", "pid", "net"} {
		theirs, err1 := os.Readlink(p + "/ns/" + ns)
		ours, err2 := os.Readlink("/proc/self/ns/" + ns)
		if err1 != nil || err2 != nil {
			t.Errorf("ns/%s: %v %v", ns, err1, err2)
			continue
		}
		// The engine opens host sockets itself: it stays in the
		// host's network namespace, unless strict.
		if same := theirs == ours; same != (ns == "net" && !strict) {
			t.Errorf("engine ns/%s %s, the test's %s", ns, theirs, ours)
		}
	}
	if entries, err := os.ReadDir(p + "/root"); err != nil || len(entries) != 0 {
		t.Errorf("engine root holds %d entries (%v), want an empty directory", len(entries), err)
	}
	if w, err := os.ReadDir(p + "/root/etc"); err == nil {
		t.Errorf("engine root has /etc (%d entries)", len(w))
	}
	limits, err := os.ReadFile(p + "/limits")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(limits), "\n") {
		f := strings.Fields(line)
		switch {
		case strings.HasPrefix(line, "Max core file size") && (len(f) < 6 || f[4] != "0" || f[5] != "0"):
			t.Errorf("engine %q, want 0 0", line)
		case strings.HasPrefix(line, "Max open files") && (len(f) < 5 || f[3] != f[4] || f[4] == "unlimited"):
			t.Errorf("engine %q, want a hard limit equal to the soft one", line)
		}
	}
	if wantUID == nobodyUID && launcherRoot {
		// The same uid may read a dumpable process's environment;
		// not this one's. (A launcher that is not root owns the
		// engine's user namespace, and so may read it anyway: it
		// could as well read its own.)
		out, err := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "cat", p+"/environ").CombinedOutput()
		if err == nil {
			t.Errorf("nobody read the engine's environment: it is dumpable (%d bytes)", len(out))
		}
	}
}

// checkLayersLine fails the test unless the output has the engine's one
// line naming its layers, all active.
func checkLayersLine(t *testing.T, output string) {
	t.Helper()
	for _, line := range strings.Split(output, "\n") {
		if !strings.Contains(line, `msg=sandbox layers=`) {
			continue
		}
		for _, layer := range []string{"empty root", "not root", "no capabilities", "no_new_privs", "not dumpable", "rlimits", "landlock (ABI", "seccomp (allow-list"} {
			if !strings.Contains(line, layer) {
				t.Errorf("the sandbox line lacks %q: %s", layer, line)
			}
		}
		if strings.Contains(line, "MISSING") {
			t.Errorf("a layer is missing: %s", line)
		}
		return
	}
	t.Errorf("no sandbox line in the output:\n%s", output)
}

func TestSandboxServe(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "setpriv")
	sock := filepath.Join(t.TempDir(), "vm.sock")
	s := testenv.Serve(t, "--listen", "stream:unix:"+sock, "--log-level", "info")
	checkConfined(t, enginePID(t, s.Cmd.Process.Pid), nobodyUID, true)
	checkLayersLine(t, s.Output())
}

// TestSandboxRun: the engine of `slipway run`, while the command runs.
func TestSandboxRun(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "setpriv", "sleep")
	r, w, _ := os.Pipe()
	defer r.Close()
	cmd := exec.Command(testenv.Slipway(t), "run", "--ready-fd", "3", "--log-level", "info", "--", "sleep", "60")
	cmd.ExtraFiles = []*os.File{w}
	p := testenv.StartProcess(t, "slipway run", cmd)
	w.Close()
	if b := make([]byte, 1); readByte(r, b) != "1" {
		t.Fatalf("not ready:\n%s", p.Output())
	}
	checkConfined(t, enginePID(t, cmd.Process.Pid), nobodyUID, true)
	checkLayersLine(t, p.Output())
}

func readByte(r *os.File, b []byte) string {
	n, _ := r.Read(b)
	return string(b[:n])
}

// TestSandboxBhyveHelper: bhyve's helper, confined once it has its
// configuration.
func TestSandboxBhyveHelper(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "setpriv")
	child, ours := guestpeer.Socketpair(t, unix.SOCK_SEQPACKET)
	cmd := exec.Command(testenv.Slipway(t), "bhyve-helper", "-S", "3", "--log-level", "info")
	cmd.ExtraFiles = []*os.File{child}
	p := testenv.StartProcess(t, "slipway bhyve-helper", cmd)
	child.Close()
	cfg, err := nvlist.Pack(&nvlist.List{Pairs: []nvlist.Pair{{Name: "backend", Type: nvlist.String, Value: "slirp"}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ours.Write(cfg); err != nil {
		t.Fatal(err)
	}
	// Confined once it logged its layers.
	waitOutput(t, p, "msg=sandbox")
	checkConfined(t, enginePID(t, cmd.Process.Pid), nobodyUID, true)
	checkLayersLine(t, p.Output())
	ours.Close()
}

func waitOutput(t *testing.T, p *testenv.Process, s string) {
	t.Helper()
	if !p.WaitOutput(s, 20*time.Second) {
		t.Fatalf("no %q in the output:\n%s", s, p.Output())
	}
}

// TestSandboxUnprivileged: a launcher running as nobody, given a
// connected socket for its VM (as a caller that opened it passes it):
// the engine is nobody too, with every layer.
func TestSandboxUnprivileged(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "setpriv")
	child, ours := guestpeer.Socketpair(t, unix.SOCK_STREAM)
	defer ours.Close()
	r, w, _ := os.Pipe()
	defer r.Close()
	cmd := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
		testenv.Slipway(t), "serve", "--fd", "3:stream", "--ready-fd", "4", "--log-level", "info")
	cmd.ExtraFiles = []*os.File{child, w}
	p := testenv.StartProcess(t, "slipway serve as nobody", cmd)
	child.Close()
	w.Close()
	if b := make([]byte, 1); readByte(r, b) != "1" {
		t.Fatalf("not ready:\n%s", p.Output())
	}
	checkConfined(t, enginePID(t, cmd.Process.Pid), nobodyUID, false)
	// The engine's log reaches us through the launcher: the line may
	// come a moment after the ready byte.
	p.WaitOutput("msg=sandbox", 10*time.Second)
	checkLayersLine(t, p.Output())
	// The VM still gets an address.
	g := guestpeer.New(t, guestpeer.NewStream(ours), "52:54:00:12:34:56")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := g.DHCP(ctx); err != nil {
		t.Errorf("DHCP through the sandboxed engine: %v", err)
	}
}

// TestSandboxOff: --sandbox=off is one unconfined process, and says so.
func TestSandboxOff(t *testing.T) {
	testenv.RequireRoot(t)
	sock := filepath.Join(t.TempDir(), "vm.sock")
	s := testenv.Serve(t, "--listen", "stream:unix:"+sock, "--sandbox=off")
	st := testenv.ProcStatus(t, s.Cmd.Process.Pid)
	if st["Seccomp"] != "0" {
		t.Errorf("--sandbox=off: Seccomp = %q, want 0", st["Seccomp"])
	}
	waitOutput(t, s, "sandbox off (--sandbox=off)")
	bad := testenv.Run(t, 10*time.Second, "serve", "--listen", "stream:unix:"+sock+"2", "--sandbox=maybe")
	if bad.Code != 2 || !strings.Contains(bad.Output, "sandbox") {
		t.Errorf("--sandbox=maybe: exit %d, output %q; want 2 and a line naming the flag", bad.Code, bad.Output)
	}
}

// probeEngine runs the probe build's serve with SLIPWAY_TEST_PROBE=name (and
// env) and returns its output and how the launcher ended.
func probeEngine(t *testing.T, name string, env ...string) (string, error) {
	t.Helper()
	return probeEngineArgs(t, name, nil, env...)
}

func probeEngineArgs(t *testing.T, name string, args []string, env ...string) (string, error) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "vm.sock")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, testenv.SlipwayProbe(t), append([]string{"serve", "--listen", "stream:unix:" + sock, "--log-level", "info"}, args...)...)
	cmd.Env = append(append(os.Environ(), "SLIPWAY_TEST_PROBE="+name), env...)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("probe %s: timed out:\n%s", name, out)
	}
	return string(out), err
}

// TestSandboxKillsEscapes: a confined engine that tries a system call a
// compromised one would (open a file, run a program, a raw or netlink
// socket, trace, fork, a new namespace, ...) is killed by its seccomp
// filter before the call does anything.
func TestSandboxKillsEscapes(t *testing.T) {
	testenv.RequireRoot(t)
	for _, name := range []string{"open", "execve", "packet", "netlink", "unix", "mptcp", "ptrace", "fork",
		"mount", "unshare", "setns", "bpf", "io_uring", "keyctl", "perf_event_open"} {
		out, err := probeEngine(t, name)
		var ee *exec.ExitError
		if !errors.As(err, &ee) || strings.Contains(out, "@probe=") || !strings.Contains(out, "killed by its seccomp filter") {
			t.Errorf("%s: launcher ended with %v; want the engine killed by seccomp:\n%s", name, err, out)
		}
	}
}

// TestSandboxLayersBehindSeccomp: with seccomp only logging (as when
// deriving the list), the other layers still refuse: no file to open in
// the empty root (and Landlock), no program to run, no raw socket without
// capabilities, no TCP bind (Landlock), no mount.
func TestSandboxLayersBehindSeccomp(t *testing.T) {
	testenv.RequireRoot(t)
	for _, name := range []string{"open", "execve", "packet", "bind", "mount", "ptrace", "unshare"} {
		out, _ := probeEngine(t, name, "SLIPWAY_SECCOMP=log")
		m := testenv.Markers(out)
		if !strings.HasPrefix(m["probe"], "refused") || name == "bind" && !strings.Contains(m["probe"], "permission denied") {
			t.Errorf("%s with seccomp logging only: %q, want refused by another layer:\n%s", name, m["probe"], out)
		}
	}
}

// TestSandboxPublishesLowPortAtRunTime: a port below 1024 published
// through the API after start-up listens, although the engine (nobody, no
// capabilities, Landlock: no bind) could bind nothing: the launcher binds
// it and hands the socket over.
func TestSandboxPublishesLowPortAtRunTime(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "curl")
	port := 0
	for p := 900; p < 1000 && port == 0; p++ {
		if l, err := net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", p)); err == nil {
			l.Close()
			port = p
		}
	}
	if port == 0 {
		t.Fatal("no free port between 900 and 999")
	}
	dir := t.TempDir()
	api := filepath.Join(dir, "api.sock")
	s := testenv.Serve(t, "--listen", "stream:unix:"+filepath.Join(dir, "vm.sock"), "--api-socket", api)
	out, err := exec.Command("curl", "-s", "-w", "\n%{http_code}", "--unix-socket", api, "-X", "POST", "http://slipway/v1/forwards",
		"-d", fmt.Sprintf(`{"spec":"127.0.0.1:%d:80"}`, port)).CombinedOutput()
	if err != nil || !strings.HasSuffix(strings.TrimSpace(string(out)), "201") {
		t.Fatalf("POST /v1/forwards: %v %s\n%s", err, out, s.Output())
	}
	c, err := net.DialTimeout("tcp4", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
	if err != nil {
		t.Fatalf("port %d published at run time does not listen: %v", port, err)
	}
	c.Close()
}

// TestSandboxStrict: in strict mode the engine is in a network namespace
// of its own with no socket(), connect() or bind(); every host socket
// comes from the launcher. TCP, UDP, DNS, ping and a port published at run
// time still work.
func TestSandboxStrict(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "setpriv", "curl", "dig", "socat", "busybox", "sha256sum")
	dir := t.TempDir()
	s := testenv.Serve(t, "--listen", "stream:unix:"+filepath.Join(dir, "vm.sock"), "--sandbox=strict", "--log-level", "info")
	checkLayers(t, enginePID(t, s.Cmd.Process.Pid), nobodyUID, true, true)
	checkLayersLine(t, s.Output())
	if !strings.Contains(s.Output(), "strict (an empty network namespace") {
		t.Errorf("the sandbox line does not name strict mode:\n%s", s.Output())
	}

	dns := testenv.Dnsmasq(t)
	web, sum := testenv.HTTPFile(t, 4<<20)
	echo := testenv.UDPEcho(t)
	api := filepath.Join(dir, "api.sock")
	pub := testenv.FreePort(t, "tcp")
	www := publicDir(t)
	os.WriteFile(filepath.Join(www, "index.html"), []byte("published\n"), 0o644)
	res := runNS(t, []string{"--sandbox=strict", "--dns-upstream", dns.String(), "--api-socket", api}, script(
		fmt.Sprintf(`echo "@sha=$(curl -s -m 20 http://10.0.2.2:%d/blob | sha256sum | cut -d' ' -f1)"`, web.Port()),
		`echo "@dns_udp=$(dig +short +time=3 +tries=1 a.`+testenv.TestDomain+`)"`,
		`echo "@dns_tcp=$(dig +tcp +short +time=3 +tries=1 a.`+testenv.TestDomain+`)"`,
		fmt.Sprintf(`echo "@udp=$(echo ping | socat -T3 - UDP:10.0.2.2:%d)"`, echo.Port()),
		`busybox ping -c1 -W5 10.0.2.2 >/dev/null && echo "@ping=ok"`,
		"busybox httpd -p 8080 -h "+www,
		fmt.Sprintf(`curl -s -o /dev/null --unix-socket %s -X POST http://slipway/v1/forwards -d '{"spec":"127.0.0.1:%d:8080"}'`, api, pub),
		fmt.Sprintf(`echo "@published=$(curl -s -m 5 http://10.0.2.2:%d/index.html)"`, pub),
	))
	m := testenv.Markers(res.Output)
	checkMarkers(t, m, map[string]string{
		"sha": sum, "dns_udp": testenv.TestDomainAddr, "dns_tcp": testenv.TestDomainAddr,
		"udp": "echo:ping", "ping": "ok", "published": "published",
	}, "strict: ")
	if t.Failed() {
		t.Logf("output:\n%s", res.Output)
	}
}

// TestSandboxStrictKillsSockets: a plain TCP socket, allowed to the
// default engine, kills the strict one.
func TestSandboxStrictKillsSockets(t *testing.T) {
	testenv.RequireRoot(t)
	out, _ := probeEngine(t, "inet")
	if m := testenv.Markers(out); m["probe"] != "ok" {
		t.Fatalf("default mode: a TCP socket %q, want ok:\n%s", m["probe"], out)
	}
	for _, name := range []string{"inet", "bind"} {
		out, err := probeEngineArgs(t, name, []string{"--sandbox=strict"})
		if err == nil || strings.Contains(out, "@probe=") || !strings.Contains(out, "killed by its seccomp filter") {
			t.Errorf("strict: %s: %v, want the engine killed:\n%s", name, err, out)
		}
	}
}

// TestSandboxGvproxy: the gvproxy personality's engine (started through a
// link named gvproxy, as podman machine runs it) is confined like every
// mode's, while the launcher opened its unix, tcp and vsock API listeners
// and its VM socket; a VM on it leases podman machine's address and
// reaches the host's loopback at .254, the tcp:// API answers, and a unix
// forward asked for through the API at run time, which would need the
// host's file system, is refused, saying what to use instead.
func TestSandboxGvproxy(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "setpriv")
	web, sum := testenv.HTTPFile(t, 1<<20)
	bin := publicCopy(t, "gvproxy")
	dir := t.TempDir()
	qemuSock, svc := filepath.Join(dir, "qemu.sock"), filepath.Join(dir, "services.sock")
	api := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t, "tcp"))
	gv := testenv.StartProcess(t, "gvproxy", exec.Command(bin, "-ssh-port", "-1", "-listen-qemu", "unix://"+qemuSock,
		"-listen", "tcp://"+api, "-listen", fmt.Sprintf("vsock://:%d", 20000+os.Getpid()%10000), "-services", "unix://"+svc))
	c := waitSocket(t, qemuSock, gv)
	// Confined once it logged its layers.
	waitOutput(t, gv, "msg=sandbox")
	checkConfined(t, enginePID(t, gv.Cmd.Process.Pid), nobodyUID, true)
	checkLayersLine(t, gv.Output())

	g := guestpeer.New(t, guestpeer.NewStream(c), gvGuestMAC)
	if l := gvOnline(t, g, gvGateway); l.IP.String() != gvGuest {
		t.Errorf("lease %v, want podman machine's %s", l.IP, gvGuest)
	}
	gvDownload(t, g, gvHost, web, sum)
	resp, err := http.Get("http://" + api + "/services/dhcp/leases")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), gvGuestMAC) {
		t.Errorf("tcp:// API leases: %s", b)
	}
	body := fmt.Sprintf(`{"local":%q,"remote":"tcp://%s:22","protocol":"unix"}`, filepath.Join(dir, "runtime.sock"), gvGuest)
	resp, err = unixHTTP(svc).Post("http://gvproxy/services/forwarder/expose", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode == 200 || !strings.Contains(string(b), "-forward-sock") || !strings.Contains(string(b), "-sandbox=off") {
		t.Errorf("a unix forward at run time: %d %q, want refused, naming -forward-sock and -sandbox=off", resp.StatusCode, b)
	}
	if _, err := os.Lstat(filepath.Join(dir, "runtime.sock")); err == nil {
		t.Error("the refused unix forward made its socket")
	}
	// Stopped as podman machine stops it: the vsock listener does not
	// hold the engine up, and the launcher removes its socket files.
	gv.Cmd.Process.Signal(unix.SIGTERM)
	select {
	case <-gv.Done():
	case <-time.After(10 * time.Second):
		t.Fatalf("gvproxy did not stop on SIGTERM:\n%s", gv.Output())
	}
	for _, f := range []string{qemuSock, svc} {
		if _, err := os.Stat(f); err == nil {
			t.Errorf("%s left behind", f)
		}
	}
}

// TestSandboxGvproxyStrict: -sandbox=strict gives gvproxy's engine an
// empty network namespace too; its VM still resolves through the host's
// resolver, downloads from the host's loopback at .254, is reached on a
// port it publishes through the forwarder at gateway:80, and is kept from
// the cloud metadata address by the launcher's policy.
func TestSandboxGvproxyStrict(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "setpriv", "unshare", "dnsmasq")
	web, sum := testenv.HTTPFile(t, 1<<20)
	dns := testenv.Dnsmasq53(t)
	bin := publicCopy(t, "gvproxy")
	qemuSock := filepath.Join(t.TempDir(), "qemu.sock")
	gv := testenv.StartProcess(t, "gvproxy", withResolv(t, dns.Addr(), bin, "-ssh-port", "-1", "-sandbox=strict", "-listen-qemu", "unix://"+qemuSock))
	c := waitSocket(t, qemuSock, gv)
	waitOutput(t, gv, "msg=sandbox")
	// withResolv's shell execs gvproxy: its pid is the launcher's.
	checkLayers(t, enginePID(t, gv.Cmd.Process.Pid), nobodyUID, true, true)
	checkLayersLine(t, gv.Output())
	if !strings.Contains(gv.Output(), "strict (an empty network namespace") {
		t.Errorf("the sandbox line does not name strict mode:\n%s", gv.Output())
	}

	g := guestpeer.New(t, guestpeer.NewStream(c), gvGuestMAC)
	gvOnline(t, g, gvGateway)
	gvDownload(t, g, gvHost, web, sum)
	if a, rc := gvLookup(t, g, gvGateway, "probe."+testenv.TestDomain+"."); a != testenv.TestDomainAddr {
		t.Errorf("an upstream name: %q (%v), want %s", a, rc, testenv.TestDomainAddr)
	}
	if a, _ := gvLookup(t, g, gvGateway, "host.containers.internal."); a != gvHost {
		t.Errorf("host.containers.internal: %q, want %s", a, gvHost)
	}
	ln, err := g.Listen(8080)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, "from the VM\n")
			c.Close()
		}
	}()
	hostPort := testenv.FreePort(t, "tcp")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if status := guestPost(ctx, t, g, netip.AddrPortFrom(netip.MustParseAddr(gvGateway), 80), "/services/forwarder/expose",
		fmt.Sprintf(`{"local":"127.0.0.1:%d","remote":":8080","protocol":"tcp"}`, hostPort)); !strings.Contains(status, " 200 ") {
		t.Fatalf("expose from inside the VM: %q", status)
	}
	hc, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", hostPort), 5*time.Second)
	if err != nil {
		t.Fatalf("the port published from inside the VM: %v", err)
	}
	hc.SetDeadline(time.Now().Add(10 * time.Second))
	got, _ := io.ReadAll(hc)
	hc.Close()
	if string(got) != "from the VM\n" {
		t.Errorf("the port published from inside the VM: %q", got)
	}
	mctx, mcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer mcancel()
	if conn, err := g.Dial(mctx, netip.MustParseAddrPort("169.254.169.254:80")); err == nil {
		conn.Close()
		t.Error("the VM reached the cloud metadata address")
	}
}

// guestPost POSTs body to path at to from inside the guest and returns
// the answer's status line.
func guestPost(ctx context.Context, t *testing.T, g *guestpeer.Guest, to netip.AddrPort, path, body string) string {
	t.Helper()
	c, err := g.Dial(ctx, to)
	if err != nil {
		t.Fatalf("dial %v from the guest: %v", to, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", path, to.Addr(), len(body), body)
	line, _ := bufio.NewReader(c).ReadString('\n')
	return line
}

// TestServeTFTPRootNeedsSandboxOff: the confined engine opens no file, so
// a tftp-root (libslirp's tftp=, in the config file) with the sandbox on
// is refused at start with one line saying what to do, not an engine the
// seccomp filter kills; with --sandbox off serve serves it, at the
// default MTU too (whose block size was once out of TFTP's range).
func TestServeTFTPRootNeedsSandboxOff(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "slipway.yaml")
	if err := os.WriteFile(conf, []byte("tftp-root: "+dir+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "vm.sock")
	res := testenv.Run(t, time.Minute, "serve", "--sandbox", "on", "--config", conf, "--listen", "stream:unix:"+sock)
	if res.Code != 2 || !strings.Contains(res.Output, "tftp-root") || !strings.Contains(res.Output, "--sandbox off") {
		t.Errorf("exit %d, output %q; want 2 and one line naming tftp-root and --sandbox off", res.Code, res.Output)
	}
	testenv.Serve(t, "--sandbox", "off", "--config", conf, "--listen", "stream:unix:"+sock)
}

// TestSandboxPasta: the pasta personality's engine is confined like every
// mode's. Podman 5's command line (as root) leaves the daemon running,
// whose pid --pid names: its child, the engine, is nobody with every
// layer. rootlesskit's (as an unprivileged user, with auto and
// --host-lo-to-ns-lo) the same, and its --log-file names the layers.
// --sandbox=off is one unconfined process, and says so; a bad --sandbox
// fails as pasta fails.
func TestSandboxPasta(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "ip", "setpriv", "unshare", "nsenter")
	bin := publicCopy(t, "pasta")
	_, path := namedNS(t)
	pidFile := filepath.Join(publicDir(t), "pasta.pid")
	t.Cleanup(func() { killPidFile(pidFile) })
	if out, err := exec.Command(bin, podman5Line(testenv.FreePort(t, "tcp"), path, pidFile)...).CombinedOutput(); err != nil || len(out) != 0 {
		t.Fatalf("podman 5's line: %v, output %q", err, out)
	}
	checkConfined(t, enginePID(t, pidFromFile(t, pidFile)), nobodyUID, true)

	openTun(t)
	holder := userNSHolder(t)
	dir := publicDir(t)
	logf, pidFile2 := filepath.Join(dir, "pasta.log"), filepath.Join(dir, "rk.pid")
	t.Cleanup(func() { killPidFile(pidFile2) })
	args := append(rootlesskitLine(), "-l", logf, "--pid", pidFile2, holder)
	if out, err := exec.Command("setpriv", append(nobody, append([]string{bin}, args...)...)...).CombinedOutput(); err != nil {
		t.Fatalf("rootlesskit's line: %v\n%s", err, out)
	}
	checkConfined(t, enginePID(t, pidFromFile(t, pidFile2)), nobodyUID, false)
	b, _ := os.ReadFile(logf)
	checkLayersLine(t, string(b))

	_, path3 := namedNS(t)
	off := testenv.StartProcess(t, "pasta --sandbox=off", exec.Command(bin, "--config-net", "-f", "--sandbox=off", "-t", "none", "-u", "none", "--netns", path3))
	waitOutput(t, off, "sandbox off (--sandbox=off)")
	if st := testenv.ProcStatus(t, off.Cmd.Process.Pid); st["Seccomp"] != "0" {
		t.Errorf("--sandbox=off: Seccomp = %q, want 0", st["Seccomp"])
	}
	out, err := exec.Command(bin, "--sandbox=maybe", "--netns", path3).CombinedOutput()
	if exitCode(err) != 1 || !strings.Contains(string(out), "--sandbox") || strings.Count(strings.TrimSpace(string(out)), "\n") != 0 {
		t.Errorf("--sandbox=maybe: exit %d, %q; want 1 and one line naming the option", exitCode(err), out)
	}
}

// TestSandboxPastaStrict: --sandbox=strict gives the pasta personality's
// engine an empty network namespace and no socket, connect or bind; the
// namespace still reaches the host at its address (an outbound flow the
// launcher opens), resolves through the host's resolver, carries -T and
// -U to the host's loopback ports (which, with --no-map-gw, no guest flow
// may reach: the launcher allows those targets, fixed at start, and no
// others), and a server it starts on its
// loopback is published on the host's (auto, --host-lo-to-ns-lo: the
// port bound by the launcher, the connection into the namespace made by
// the attach helper).
func TestSandboxPastaStrict(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "ip", "setpriv", "unshare", "curl", "busybox", "socat", "dnsmasq")
	bin := publicCopy(t, "pasta")
	dns := testenv.Dnsmasq53(t)
	web, _ := testenv.HTTPFile(t, 16)
	onHost, _ := testenv.HTTPFileOn(t, testenv.HostAddr(t).String()+":0", 16)
	echo := testenv.UDPEcho(t)
	name, path := namedNS(t)
	dir := publicDir(t)
	logf, pidFile := filepath.Join(dir, "pasta.log"), filepath.Join(dir, "pasta.pid")
	t.Cleanup(func() { killPidFile(pidFile) })
	args := []string{"--config-net", "-a", "10.7.0.2", "-n", "24", "-g", "10.7.0.1", "--ipv4-only", "--no-map-gw", "--dns-forward", "10.7.0.3",
		"-t", "auto", "-u", "none", "-T", strconv.Itoa(int(web.Port())), "-U", strconv.Itoa(int(echo.Port())), "--host-lo-to-ns-lo",
		"--sandbox=strict", "-l", logf, "--pid", pidFile, "--netns", path}
	if out, err := withResolv(t, dns.Addr(), append([]string{bin}, args...)...).CombinedOutput(); err != nil {
		t.Fatalf("pasta --sandbox=strict: %v\n%s", err, out)
	}
	checkLayers(t, enginePID(t, pidFromFile(t, pidFile)), nobodyUID, true, true)
	b, _ := os.ReadFile(logf)
	checkLayersLine(t, string(b))
	if !strings.Contains(string(b), "strict (an empty network namespace") {
		t.Errorf("the sandbox line does not name strict mode:\n%s", b)
	}

	m := testenv.Markers(inNetNS(t, name, script(
		fmt.Sprintf(`echo "@host=$(curl -s -m 10 http://%s/)"`, onHost),
		fmt.Sprintf(`echo "@dns=$(busybox nslookup probe.%s 10.7.0.3 | awk '/^Address/ {a=$NF} END {print a}')"`, testenv.TestDomain),
		fmt.Sprintf(`echo "@T=$(curl -s -m 10 http://127.0.0.1:%d/)"`, web.Port()),
		fmt.Sprintf(`echo "@U=$(echo hi | socat -T 3 - UDP:127.0.0.1:%d)"`, echo.Port()),
	)))
	checkMarkers(t, m, map[string]string{"host": "hello from the host", "dns": testenv.TestDomainAddr,
		"T": "hello from the host", "U": "echo:hi"}, "strict: ")

	port := lowFreePort(t)
	www := publicDir(t)
	os.WriteFile(filepath.Join(www, "index.html"), []byte("from the namespace's loopback\n"), 0o644)
	srv := exec.Command("ip", "netns", "exec", name, "busybox", "httpd", "-f", "-p", fmt.Sprintf("127.0.0.1:%d", port), "-h", www)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
	var body []byte
	for deadline := time.Now().Add(10 * time.Second); string(body) != "from the namespace's loopback\n" && time.Now().Before(deadline); {
		body, _ = exec.Command("curl", "-s", "-m", "2", fmt.Sprintf("http://127.0.0.1:%d/", port)).Output()
		time.Sleep(100 * time.Millisecond)
	}
	if string(body) != "from the namespace's loopback\n" {
		b, _ := os.ReadFile(logf)
		t.Errorf("auto, --host-lo-to-ns-lo: the host's port %d answers %q\n%s", port, body, b)
	}
}
