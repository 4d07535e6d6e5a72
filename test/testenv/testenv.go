// Package testenv gives end-to-end tests the real things they run against:
// the slipway binary built from this tree, a dnsmasq upstream, and servers
// on the host's loopback.
package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// skipShort skips an end-to-end test in -short mode: make test-unit runs
// as root too, and must create no namespace or TAP device, boot no QEMU
// and start no real program. Every helper below that needs one of those
// calls it, so a test that forgets a check of its own is still skipped.
func skipShort(t testing.TB, what string) {
	t.Helper()
	if testing.Short() {
		t.Skip("skipped in -short mode: " + what)
	}
}

// RequireRoot skips tests that need to create namespaces and TAP devices
// as root (CI runs as root), and skips them in -short mode even as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	skipShort(t, "creates network namespaces")
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces")
	}
}

// RequireTools fails (not skips: CI installs them) when a tool is missing.
// In -short mode it skips: only end-to-end tests run outside tools, and a
// machine running only the unit tests need not have them.
func RequireTools(t testing.TB, tools ...string) {
	t.Helper()
	skipShort(t, "runs "+strings.Join(tools, ", "))
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed (the README's test command installs it): %v", tool, err)
		}
	}
}

var (
	buildOnce      = sync.OnceValues(func() (string, error) { return build("") })
	probeBuildOnce = sync.OnceValues(func() (string, error) { return build("sandboxprobe") })
)

// build builds slipway with the given build tags into a directory any
// user may enter, as an installed binary's: a root launcher then runs its
// engine as nobody, and tests see the sandbox as users get it.
func build(tags string) (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "slipway-e2e-")
	if err != nil {
		return "", err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "slipway")
	cmd := exec.Command("go", "build", "-tags="+tags, "-o", bin, "./cmd/slipway")
	// As shipped: without cgo, the sandbox can change every thread.
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
}

// Slipway returns the path of a slipway binary built from this tree once
// per test process.
func Slipway(t testing.TB) string {
	t.Helper()
	skipShort(t, "runs the slipway binary")
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// SandboxEnv, if set, is the --sandbox mode Run, Serve and WithSandbox
// give slipway's run, serve and bhyve-helper when the test names none:
// SLIPWAY_TEST_SANDBOX=strict runs a suite with the strict sandbox.
const SandboxEnv = "SLIPWAY_TEST_SANDBOX"

// WithSandbox adds --sandbox=$SLIPWAY_TEST_SANDBOX after args' command.
func WithSandbox(args []string) []string {
	mode := os.Getenv(SandboxEnv)
	if mode == "" || len(args) == 0 {
		return args
	}
	switch args[0] {
	case "run", "serve", "bhyve-helper":
	default:
		return args
	}
	for _, a := range args {
		if a == "--" {
			break
		}
		if strings.HasPrefix(a, "--sandbox") {
			return args
		}
	}
	return append([]string{args[0], "--sandbox=" + mode}, args[1:]...)
}

// SlipwayProbe is slipway built with the sandboxprobe tag: its engine,
// once confined, tries the escape $SLIPWAY_TEST_PROBE names, prints
// "@probe=RESULT" and exits (internal/sandbox/probe_on.go).
func SlipwayProbe(t testing.TB) string {
	t.Helper()
	skipShort(t, "runs the slipway binary")
	bin, err := probeBuildOnce()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// moduleRoot is slipway's module root: the nearest ancestor with a go.mod
// and cmd/slipway, so that tests of a nested module (bench/, whose soak
// runs slipway too) find it as well.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		_, errMod := os.Stat(filepath.Join(dir, "go.mod"))
		_, errCmd := os.Stat(filepath.Join(dir, "cmd", "slipway"))
		if errMod == nil && errCmd == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("slipway's go.mod not found above the test's directory")
		}
		dir = parent
	}
}

// Result is how a command ended.
type Result struct {
	Output string // stdout and stderr, interleaved
	Code   int
}

// Run runs slipway with args, killing it after timeout.
func Run(t testing.TB, timeout time.Duration, args ...string) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, Slipway(t), WithSandbox(args)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("slipway %s: timed out after %v\n%s", strings.Join(args, " "), timeout, out.String())
	}
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return Result{Output: out.String(), Code: code}
}

// FreePort returns a port nothing listens on now ("tcp" or "udp").
func FreePort(t testing.TB, network string) int {
	t.Helper()
	if network == "udp" {
		c, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port
	}
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestDomain is served by Dnsmasq: every name under it resolves to
// TestDomainAddr.
const (
	TestDomain     = "test.example"
	TestDomainAddr = "192.0.2.55"
)

// Dnsmasq also serves answers too large for a plain UDP reply (512
// bytes), to test truncation and the fallback to TCP: BigTXTName has one
// TXT record of BigTXTStrings strings of 200 bytes each, ManyAName
// ManyACount A records (198.51.100.1 and on).
const (
	BigTXTName    = "big.example"
	BigTXTStrings = 10
	ManyAName     = "many.example"
	ManyACount    = 60
)

// bigRecords are dnsmasq's flags for BigTXTName and ManyAName.
func bigRecords() []string {
	txt := BigTXTName
	for range BigTXTStrings {
		txt += "," + strings.Repeat("a", 200)
	}
	flags := []string{"--txt-record=" + txt}
	for i := 1; i <= ManyACount; i++ {
		flags = append(flags, fmt.Sprintf("--host-record=%s,198.51.100.%d", ManyAName, i))
	}
	return flags
}

// dnsmasqAddr picks where a test's dnsmasq listens: a loopback address of
// its own (all of 127.0.0.0/8 is on lo), on which nothing else of this
// machine has sockets, and a port free there for both UDP and TCP, which
// dnsmasq binds both of. A port checked free on 127.0.0.1 for UDP alone
// was now and then taken for TCP by the time dnsmasq bound it.
func dnsmasqAddr(t testing.TB) (netip.Addr, int) {
	t.Helper()
	for range 20 {
		var b [2]byte
		rand.Read(b[:])
		ip := netip.AddrFrom4([4]byte{127, 53, 1 + b[0]%253, 1 + b[1]%253})
		u, err := net.ListenPacket("udp4", netip.AddrPortFrom(ip, 0).String())
		if err != nil {
			t.Fatal(err)
		}
		port := u.LocalAddr().(*net.UDPAddr).Port
		l, err := net.Listen("tcp4", netip.AddrPortFrom(ip, uint16(port)).String())
		u.Close()
		if err == nil {
			l.Close()
			return ip, port
		}
	}
	t.Fatal("no loopback address and port free for dnsmasq")
	return netip.Addr{}, 0
}

// Dnsmasq starts a real dnsmasq on the host's loopback as a DNS upstream
// and returns its address once it answers.
func Dnsmasq(t testing.TB) netip.AddrPort { return StartDnsmasq(t).Addr }

// DNSServer is a dnsmasq a test can stop and start again on the same
// address, to play an upstream that goes away and comes back.
type DNSServer struct {
	Addr  netip.AddrPort
	t     testing.TB
	extra []string
	cmd   *exec.Cmd
	out   bytes.Buffer
}

// StartDnsmasq is Dnsmasq with a handle on the server.
func StartDnsmasq(t testing.TB) *DNSServer {
	t.Helper()
	RequireTools(t, "dnsmasq")
	ip, port := dnsmasqAddr(t)
	return startDnsmasqAt(t, netip.AddrPortFrom(ip, uint16(port)))
}

// Dnsmasq53 is Dnsmasq on port 53 of a loopback address of its own, so it
// can stand in /etc/resolv.conf (which names no ports); extra are more
// dnsmasq options (--address=/NAME/IP).
func Dnsmasq53(t testing.TB, extra ...string) netip.AddrPort {
	t.Helper()
	RequireTools(t, "dnsmasq")
	for range 20 {
		var b [2]byte
		rand.Read(b[:])
		ip := netip.AddrFrom4([4]byte{127, 54, 1 + b[0]%253, 1 + b[1]%253})
		if u, err := net.ListenPacket("udp4", netip.AddrPortFrom(ip, 53).String()); err == nil {
			u.Close()
			return startDnsmasqAt(t, netip.AddrPortFrom(ip, 53), extra...).Addr
		}
	}
	t.Fatal("no loopback address free on port 53 for dnsmasq")
	return netip.AddrPort{}
}

func startDnsmasqAt(t testing.TB, ap netip.AddrPort, extra ...string) *DNSServer {
	t.Helper()
	d := &DNSServer{Addr: ap, t: t, extra: extra}
	t.Cleanup(d.Stop)
	d.Start()
	return d
}

// Start runs dnsmasq (again) and returns once it answers.
func (d *DNSServer) Start() {
	d.t.Helper()
	ip, port := d.Addr.Addr(), d.Addr.Port()
	d.out.Reset()
	d.cmd = exec.Command("dnsmasq", "--no-daemon", "--no-resolv", "--no-hosts", "--listen-address="+ip.String(),
		"--port="+strconv.Itoa(int(port)), "--bind-interfaces", "--address=/"+TestDomain+"/"+TestDomainAddr,
		"--address=/v6."+TestDomain+"/2001:db8::55", "--pid-file=")
	d.cmd.Args = append(append(d.cmd.Args, bigRecords()...), d.extra...)
	d.cmd.Stdout, d.cmd.Stderr = &d.out, &d.out
	if err := d.cmd.Start(); err != nil {
		d.t.Fatalf("start dnsmasq: %v", err)
	}
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return net.Dial("udp", d.Addr.String())
	}}
	for i := 0; i < 100; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		_, err := r.LookupHost(ctx, "probe."+TestDomain)
		cancel()
		if err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	d.t.Fatalf("dnsmasq did not answer on %v:\n%s", d.Addr, d.out.String())
}

// Stop kills dnsmasq and waits for it; its port is then closed.
func (d *DNSServer) Stop() {
	if d.cmd == nil {
		return
	}
	d.cmd.Process.Kill() // SIGKILL ends a stopped process too
	d.cmd.Wait()
	d.cmd = nil
}

// HTTPFile serves size random bytes at /blob on the host's loopback and
// returns the server's address and the blob's sha256.
func HTTPFile(t testing.TB, size int) (netip.AddrPort, string) {
	return HTTPFileOn(t, "127.0.0.1:0", size)
}

// HTTPFileOn is HTTPFile listening on addr (e.g. "[::1]:0").
func HTTPFileOn(t testing.TB, addr string, size int) (netip.AddrPort, string) {
	t.Helper()
	blob := make([]byte, size)
	rand.Read(blob)
	sum := sha256.Sum256(blob)
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/blob", func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "blob", time.Time{}, bytes.NewReader(blob))
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "hello from the host") })
	srv := &http.Server{Handler: mux}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().(*net.TCPAddr).AddrPort(), hex.EncodeToString(sum[:])
}

// TCPServer accepts connections on the host's loopback and runs handle for
// each on a goroutine of its own; it stops when the test ends.
func TCPServer(t testing.TB, handle func(net.Conn)) netip.AddrPort {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go handle(c)
		}
	}()
	return l.Addr().(*net.TCPAddr).AddrPort()
}

// UDPEcho echoes datagrams on the host's loopback, prefixed with "echo:".
func UDPEcho(t testing.TB) netip.AddrPort { return UDPEchoOn(t, "127.0.0.1:0") }

// UDPEchoOn is UDPEcho listening on addr (e.g. "[::1]:0").
func UDPEchoOn(t testing.TB, addr string) netip.AddrPort {
	t.Helper()
	return UDPServer(t, addr, func(pkt []byte, _ net.Addr) []byte { return append([]byte("echo:"), pkt...) })
}

// UDPServer answers each datagram arriving on addr with what respond
// makes of it and of its sender, until the test ends.
func UDPServer(t testing.TB, addr string, respond func(pkt []byte, from net.Addr) []byte) netip.AddrPort {
	t.Helper()
	c, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 65536)
		for {
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			c.WriteTo(respond(buf[:n], from), from)
		}
	}()
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}

// HostAddr is a non-loopback IPv4 address of this host (reachable from
// guests through slipway as an ordinary destination).
func HostAddr(t testing.TB) netip.Addr {
	t.Helper()
	ifs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range ifs {
		if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Is4() && !p.Addr().IsLoopback() {
			return p.Addr()
		}
	}
	t.Skip("the host has no non-loopback IPv4 address")
	return netip.Addr{}
}

// Markers extracts "KEY=VALUE" lines printed by a guest script as
// "@KEY=VALUE".
func Markers(output string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(output, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok && strings.HasPrefix(k, "@") {
			m[k[1:]] = v
		}
	}
	return m
}

// stopGrace is how long a stopped process has to exit after SIGTERM
// before it is killed; it only keeps a hung process from hanging a test.
const stopGrace = 20 * time.Second

// PIDs lists the host's processes.
func PIDs() []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// ProcStat reads a process's command name and parent from /proc/PID/stat;
// ok is false once the process is gone.
func ProcStat(pid int) (comm string, ppid int, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", 0, false
	}
	// pid (comm) state ppid ...: comm may hold spaces and parentheses.
	s := string(b)
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return "", 0, false
	}
	f := strings.Fields(s[end+1:])
	if len(f) < 2 {
		return "", 0, false
	}
	ppid, err = strconv.Atoi(f[1])
	return s[open+1 : end], ppid, err == nil
}

// Process is a program a test runs in the background, slipway mostly. Its
// output (stdout and stderr together) is collected; when the test ends it
// is stopped, and its output logged if the test failed.
type Process struct {
	Cmd  *exec.Cmd
	out  Output
	done chan struct{}
	err  error // from Wait, once done is closed
}

// StartProcess starts cmd, whose Stdout and Stderr it sets. name labels
// the output in the test's log.
func StartProcess(t testing.TB, name string, cmd *exec.Cmd) *Process {
	t.Helper()
	p := &Process{Cmd: cmd, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = &p.out, &p.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("%s output:\n%s", name, p.Output())
		}
	})
	return p
}

// Output is what the process wrote so far.
func (p *Process) Output() string { return p.out.String() }

// Done is closed once the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// WaitOutput waits until s is in the process's output, for at most
// timeout, and reports whether it came. It gives up early once the
// process has exited without writing it.
func (p *Process) WaitOutput(s string, timeout time.Duration) bool {
	return p.waitFor(func() bool { return strings.Contains(p.Output(), s) }, timeout)
}

// WaitPath waits until path exists (a socket the process makes), for at
// most timeout, and reports whether it does. It gives up early once the
// process has exited without making it.
func (p *Process) WaitPath(path string, timeout time.Duration) bool {
	return p.waitFor(func() bool { _, err := os.Stat(path); return err == nil }, timeout)
}

// waitFor waits until cond holds, for at most timeout or until the
// process has exited, and reports whether it does.
func (p *Process) waitFor(cond func() bool, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		select {
		case <-p.done:
			return cond()
		default:
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// Err is what waiting for the process returned; only valid after Done.
func (p *Process) Err() error { return p.err }

// Stop ends the process (SIGTERM, then SIGKILL after stopGrace) and
// waits for it.
func (p *Process) Stop() {
	select {
	case <-p.done:
		return
	default:
	}
	p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(stopGrace):
		p.Cmd.Process.Kill()
		<-p.done
	}
}

// Serve starts `slipway serve` with args and returns once it is serving
// (--ready-fd). It is stopped when the test ends.
func Serve(t testing.TB, args ...string) *Process {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close() // if StartProcess fails
	cmd := exec.Command(Slipway(t), WithSandbox(append([]string{"serve", "--ready-fd", "3"}, args...))...)
	cmd.ExtraFiles = []*os.File{w}
	s := StartProcess(t, "slipway serve", cmd)
	// The child has its copy; ours would keep the read below from seeing
	// it exit.
	w.Close()
	ready := make(chan string, 1)
	go func() {
		b := make([]byte, 1)
		n, _ := r.Read(b)
		ready <- string(b[:n])
	}()
	select {
	case got := <-ready:
		if got != "1" {
			s.Stop()
			t.Fatalf("slipway serve did not become ready:\n%s", s.Output())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("slipway serve not ready after 30s:\n%s", s.Output())
	}
	return s
}

// Output collects a process's output (stdout and stderr together) for a
// test to read while the process runs.
type Output struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *Output) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String is everything written so far.
func (l *Output) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Signal sends sig to dnsmasq (SIGSTOP makes an upstream that hangs).
func (d *DNSServer) Signal(sig os.Signal) {
	if d.cmd != nil {
		d.cmd.Process.Signal(sig)
	}
}

// SubIDUser is an ordinary user of the host with ranges in /etc/subuid
// and /etc/subgid, as rootless podman expects of the user it runs as.
type SubIDUser struct {
	Name     string
	UID, GID int
}

// subIDUserName is the user NewSubIDUser creates.
const subIDUserName = "slipway-test"

// NewSubIDUser creates that user (no home, no login shell; useradd gives
// it the next free subordinate ranges) for the test and removes it, with
// every process it still runs (podman's pause process keeps its user
// namespace), at the end. A user left by an interrupted run is taken
// over. It needs root and useradd (passwd).
func NewSubIDUser(t testing.TB) SubIDUser {
	t.Helper()
	RequireRoot(t)
	RequireTools(t, "useradd", "userdel", "usermod", "newuidmap", "newgidmap", "pkill")
	if _, err := user.Lookup(subIDUserName); err != nil {
		if out, err := exec.Command("useradd", "--no-create-home", "--user-group", "--shell", "/usr/sbin/nologin", subIDUserName).CombinedOutput(); err != nil {
			t.Fatalf("useradd %s: %v\n%s", subIDUserName, err, out)
		}
	}
	u, err := user.Lookup(subIDUserName)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		exec.Command("pkill", "-KILL", "-u", u.Uid).Run()
		for i := 0; i < 50; i++ {
			if exec.Command("userdel", subIDUserName).Run() == nil {
				return
			}
			time.Sleep(100 * time.Millisecond) // its processes still exiting
		}
		t.Errorf("userdel %s failed: the test user is left behind", subIDUserName)
	})
	for _, f := range []string{"/etc/subuid", "/etc/subgid"} {
		b, _ := os.ReadFile(f)
		if !strings.Contains("\n"+string(b), "\n"+subIDUserName+":") {
			opt := map[string]string{"/etc/subuid": "--add-subuids", "/etc/subgid": "--add-subgids"}[f]
			if out, err := exec.Command("usermod", opt, "300000-365535", subIDUserName).CombinedOutput(); err != nil {
				t.Fatalf("usermod %s: %v\n%s", opt, err, out)
			}
		}
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return SubIDUser{Name: u.Username, UID: uid, GID: gid}
}

// ProcStatus is /proc/PID/status as a map of its fields (CapEff,
// NoNewPrivs, Seccomp, ...), for tests that check a process's confinement
// from outside.
func ProcStatus(t testing.TB, pid int) map[string]string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}

// CheckUnprivileged fails the test unless process pid (named who in the
// messages) has no capability in any set, no_new_privs and a seccomp
// filter, as /proc/PID/status shows them.
func CheckUnprivileged(t testing.TB, pid int, who string) map[string]string {
	t.Helper()
	st := ProcStatus(t, pid)
	for _, k := range []string{"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"} {
		if st[k] != "0000000000000000" {
			t.Errorf("%s %s = %q, want none", who, k, st[k])
		}
	}
	if st["NoNewPrivs"] != "1" {
		t.Errorf("%s NoNewPrivs = %q, want 1", who, st["NoNewPrivs"])
	}
	if st["Seccomp"] != "2" {
		t.Errorf("%s Seccomp = %q, want 2 (a filter)", who, st["Seccomp"])
	}
	return st
}
