package libslirp

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slipway-net/slipway/test/testenv"
)

// The process shape's server, confined as slipway's engine is (README,
// "Two shapes"), checked from outside as a user would.

const nobodyUID = "65534"

// noGuestArgs is a QEMU that boots nothing (-S), with one -netdev user
// per netdev option string and its QMP socket at qmpPath.
func noGuestArgs(qmpPath string, netdevs ...string) []string {
	args := []string{"-accel", "tcg", "-nodefaults", "-no-user-config", "-display", "none", "-S",
		"-qmp", "unix:" + qmpPath + ",server=on,wait=off"}
	for i, nd := range netdevs {
		id := fmt.Sprintf("n%d", i)
		args = append(args, "-netdev", "user,id="+id+nd, "-device", "virtio-net-pci,netdev="+id)
	}
	return args
}

// startNoGuest starts cmd (a QEMU from noGuestArgs, perhaps behind a
// wrapper) and returns it once its monitor answers.
func startNoGuest(t *testing.T, cmd *exec.Cmd, qmpPath string) (*testenv.Process, *qmp) {
	t.Helper()
	p := testenv.StartProcess(t, "qemu", cmd)
	q := dialQMP(t, qmpPath)
	return p, q
}

// serversOf waits for QEMU's (pid) slipway servers, n of them.
func serversOf(t *testing.T, pid, n int) []int {
	t.Helper()
	var found []int
	for range 200 {
		found = found[:0]
		for _, p := range testenv.PIDs() {
			// The kernel cuts a command name to 15 bytes.
			if comm, ppid, ok := testenv.ProcStat(p); ok && ppid == pid && strings.HasPrefix(comm, "slipway-slirp-s") {
				found = append(found, p)
			}
		}
		if len(found) == n {
			return found
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("QEMU (pid %d) has %d slipway servers, want %d", pid, len(found), n)
	return nil
}

// checkSeccompAndPrivs fails the test unless pid has no capability in
// any set, no_new_privs and a seccomp filter.
func checkSeccompAndPrivs(t *testing.T, pid int) {
	t.Helper()
	testenv.CheckUnprivileged(t, pid, "server")
}

// sameNamespaces lists the namespaces of kinds that pid shares with host.
func sameNamespaces(t *testing.T, pid, host int, kinds ...string) []string {
	t.Helper()
	var same []string
	for _, ns := range kinds {
		theirs, err1 := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", pid, ns))
		ours, err2 := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", host, ns))
		if err1 != nil || err2 != nil {
			t.Fatalf("ns/%s: %v %v", ns, err1, err2)
		}
		if theirs == ours {
			same = append(same, ns)
		}
	}
	return same
}

// TestServerSandboxed: the server of a running QEMU (its child) has no
// capabilities, no_new_privs, a seccomp filter, runs as nobody (QEMU is
// root), in user, mount, IPC, UTS and PID namespaces of its own but QEMU's
// network namespace, with an empty root, no core dumps and a hard
// descriptor limit. A hostfwd below 1024 added from the monitor still
// listens: the shim binds it with QEMU's rights, which the server lacks.
func TestServerSandboxed(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "qemu-system-x86_64")
	dir := libDir(t)
	qmpPath := filepath.Join(t.TempDir(), "qmp.sock")
	port := testenv.FreePort(t, "tcp")
	cmd := exec.Command("qemu-system-x86_64", noGuestArgs(qmpPath, fmt.Sprintf(",hostfwd=tcp:127.0.0.1:%d-:22", port))...)
	cmd.Env = append(os.Environ(), "LD_LIBRARY_PATH="+dir)
	qemu, q := startNoGuest(t, cmd, qmpPath)
	pid := cmd.Process.Pid
	srv := serversOf(t, pid, 1)[0]

	checkSeccompAndPrivs(t, srv)
	st := testenv.ProcStatus(t, srv)
	if f := strings.Fields(st["Uid"]); len(f) != 4 || f[0] != nobodyUID || f[1] != nobodyUID || f[2] != nobodyUID || f[3] != nobodyUID {
		t.Errorf("server host uids %q, want nobody's (QEMU is root)", st["Uid"])
	}
	if same := sameNamespaces(t, srv, pid, "user", "mnt", "ipc", "uts", "pid", "net"); len(same) != 1 || same[0] != "net" {
		t.Errorf("server shares namespaces %v with QEMU, want only net", same)
	}
	proc := "/proc/" + strconv.Itoa(srv)
	if entries, err := os.ReadDir(proc + "/root"); err != nil || len(entries) != 0 {
		t.Errorf("server root holds %d entries (%v), want an empty directory", len(entries), err)
	}
	limits, err := os.ReadFile(proc + "/limits")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(limits), "\n") {
		f := strings.Fields(line)
		switch {
		case strings.HasPrefix(line, "Max core file size") && (len(f) < 6 || f[4] != "0" || f[5] != "0"):
			t.Errorf("server %q, want 0 0", line)
		case strings.HasPrefix(line, "Max open files") && (len(f) < 5 || f[3] != f[4] || f[4] == "unlimited"):
			t.Errorf("server %q, want a hard limit equal to the soft one", line)
		}
	}

	// The forward from the command line and one below 1024 from the
	// monitor accept connections (the guest is stopped: the server
	// accepts, then fails to reach it).
	low := 0
	for try := 900; try < 1000 && low == 0; try++ {
		if l, err := net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", try)); err == nil {
			l.Close()
			low = try
		}
	}
	if low == 0 {
		t.Fatal("no free port in 900-999")
	}
	if out := q.hmp(t, fmt.Sprintf("hostfwd_add tcp:127.0.0.1:%d-:22", low)); strings.TrimSpace(out) != "" {
		t.Errorf("hostfwd_add of port %d: %q", low, out)
	}
	for _, p := range []int{port, low} {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", p), 5*time.Second)
		if err != nil {
			t.Errorf("hostfwd of port %d: %v", p, err)
			continue
		}
		c.Close()
	}
	if strings.Contains(qemu.Output(), "weaker than it should be") {
		t.Errorf("the library says its server's sandbox is weaker:\n%s", qemu.Output())
	}
}

var probeServerOnce = sync.OnceValues(func() (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "slipway-libslirp-probe-")
	if err != nil {
		return "", err
	}
	if err := os.Chmod(dir, 0o755); err != nil { // nobody runs it
		return "", err
	}
	bin := filepath.Join(dir, "slipway-slirp-server")
	cmd := exec.Command("go", "build", "-tags=sandboxprobe", "-o", bin, "./libslirp/server")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

// probeServer runs a QEMU whose server is the sandboxprobe build trying
// the escape name (internal/sandbox/probe_on.go) once confined, and
// returns QEMU's output once the library has said how the server ended
// (the server's own output comes too: SLIPWAY_LOG_LEVEL). The process
// shape is asked for: there is no falling back to inproc.
func probeServer(t *testing.T, name string, env ...string) string {
	t.Helper()
	dir := libDir(t)
	bin, err := probeServerOnce()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("qemu-system-x86_64", noGuestArgs(filepath.Join(t.TempDir(), "qmp.sock"), "")...)
	cmd.Env = append(append(os.Environ(), "LD_LIBRARY_PATH="+dir, "SLIPWAY_LIBSLIRP=process",
		"SLIPWAY_LIBSLIRP_SERVER="+bin, "SLIPWAY_LOG_LEVEL=info", "SLIPWAY_TEST_PROBE="+name), env...)
	qemu := testenv.StartProcess(t, "qemu", cmd)
	defer qemu.Stop()
	// QEMU 7.2 runs on without its netdev's Slirp; the library's line
	// is the end of the story.
	if !qemu.WaitOutput(bin+" did not start", 60*time.Second) {
		t.Fatalf("probe %s: the library never said the server ended:\n%s", name, qemu.Output())
	}
	return qemu.Output()
}

// TestServerSandboxKillsEscapes: a confined server that tries what a
// compromised one would (open a file, run a program, a raw, netlink or
// unix socket, MPTCP, trace, fork, mount, a new namespace, bpf, io_uring,
// keyctl, perf_event_open) is killed by its seccomp filter before the
// call does anything, and the library says so; a TCP socket, which
// outbound flows need, it may open.
func TestServerSandboxKillsEscapes(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "qemu-system-x86_64")
	for _, name := range []string{"open", "execve", "packet", "netlink", "unix", "mptcp", "ptrace", "fork",
		"mount", "unshare", "setns", "bpf", "io_uring", "keyctl", "perf_event_open"} {
		out := probeServer(t, name)
		if strings.Contains(out, "@probe=") || !strings.Contains(out, "killed by its seccomp filter") {
			t.Errorf("%s: want the server killed by its seccomp filter:\n%s", name, out)
		}
	}
	if m := testenv.Markers(probeServer(t, "inet")); m["probe"] != "ok" {
		t.Errorf("a TCP socket: %q, want ok", m["probe"])
	}
}

// TestServerSandboxLayersBehindSeccomp: with seccomp only logging, the
// server's other layers still refuse: no file in the empty root (and
// Landlock), no program to run, no raw socket or mount without
// capabilities, no bind (Landlock: the shim binds host forwards).
func TestServerSandboxLayersBehindSeccomp(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "qemu-system-x86_64")
	for _, name := range []string{"open", "execve", "packet", "bind", "mount", "unshare"} {
		out := probeServer(t, name, "SLIPWAY_SECCOMP=log")
		m := testenv.Markers(out)
		if !strings.HasPrefix(m["probe"], "refused") || name == "bind" && !strings.Contains(m["probe"], "permission denied") {
			t.Errorf("%s with seccomp logging only: %q, want refused by another layer:\n%s", name, m["probe"], out)
		}
	}
}

// TestServerNamespacesRefused: where the host lets QEMU create no user
// namespace (here: a user namespace whose limit is 0), the server starts
// without its namespaces, still under its seccomp filter without
// capabilities, and the library says so on standard error once, not once
// per netdev, with the layers that are missing.
func TestServerNamespacesRefused(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "qemu-system-x86_64", "unshare")
	dir := libDir(t)
	qmpPath := filepath.Join(t.TempDir(), "qmp.sock")
	args := append([]string{"-Ur", "sh", "-c", `echo 0 >/proc/sys/user/max_user_namespaces && exec "$@"`,
		"sh", "qemu-system-x86_64"}, noGuestArgs(qmpPath, "", "")...)
	cmd := exec.Command("unshare", args...)
	cmd.Env = append(os.Environ(), "LD_LIBRARY_PATH="+dir)
	qemu, _ := startNoGuest(t, cmd, qmpPath)
	pid := cmd.Process.Pid
	for _, srv := range serversOf(t, pid, 2) {
		checkSeccompAndPrivs(t, srv)
		if same := sameNamespaces(t, srv, pid, "user", "mnt", "pid"); len(same) != 3 {
			t.Errorf("server shares namespaces %v with QEMU, want all (none could be made)", same)
		}
	}
	out := qemu.Output()
	for _, want := range []string{"the slipway server's namespaces were refused", "the slipway server's sandbox is weaker than it should be: empty root"} {
		if n := strings.Count(out, want); n != 1 {
			t.Errorf("%q said %d times, want once:\n%s", want, n, out)
		}
	}
}

// TestServerUnderSeccompSaysSo: under QEMU's -sandbox the core runs in
// QEMU (the server's fork may be denied), and the library says so once.
func TestServerUnderSeccompSaysSo(t *testing.T) {
	testenv.RequireTools(t, "qemu-system-x86_64")
	dir := libDir(t)
	qmpPath := filepath.Join(t.TempDir(), "qmp.sock")
	cmd := exec.Command("qemu-system-x86_64", append(noGuestArgs(qmpPath, "", ""), "-sandbox", "on")...)
	cmd.Env = append(os.Environ(), "LD_LIBRARY_PATH="+dir)
	qemu, _ := startNoGuest(t, cmd, qmpPath)
	if !onSlipway(t, cmd.Process.Pid, "inproc") {
		t.Fatal("QEMU under -sandbox does not run slipway's core in its own process")
	}
	const want = "under a seccomp filter"
	if n := strings.Count(qemu.Output(), want); n != 1 {
		t.Errorf("%q said %d times, want once:\n%s", want, n, qemu.Output())
	}
}
