// Package libslirp tests slipway's libslirp.so.0 the way its users run
// it: a C program driving the ABI, QEMU 7.2's -netdev user and
// slirp4netns with LD_LIBRARY_PATH pointing at the library.
package libslirp

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slipway-net/slipway/test/testenv"
)

// debianLibslirp is the real libslirp QEMU and slirp4netns link against.
const debianLibslirp = "/lib/x86_64-linux-gnu/libslirp.so.0"

var buildOnce = sync.OnceValues(func() (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "slipway-libslirp-")
	if err != nil {
		return "", err
	}
	// As an installed library's directory: a root host's server then
	// runs as nobody, and the tests see the sandbox as users get it.
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", err
	}
	cmd := exec.Command("make", "-s", "libslirp", "LIBSLIRP_DIR="+dir)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("make libslirp: %v\n%s", err, out)
	}
	return dir, nil
})

// libDir builds the library (once per test binary) and returns the
// directory holding libslirp.so.0 and its core. Skips in -short mode.
func libDir(t testing.TB) string {
	t.Helper()
	testenv.RequireTools(t, "make", "cc")
	dir, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the test's directory")
		}
		dir = parent
	}
}

// qmp is a QEMU monitor (QMP) connection.
type qmp struct {
	conn net.Conn
	r    *bufio.Reader
}

// dialQMP connects to a QMP socket, waiting for QEMU to create it.
func dialQMP(t testing.TB, path string) *qmp {
	t.Helper()
	var conn net.Conn
	var err error
	for range 200 {
		if conn, err = net.Dial("unix", path); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("QMP %s: %v", path, err)
	}
	t.Cleanup(func() { conn.Close() })
	q := &qmp{conn: conn, r: bufio.NewReader(conn)}
	if _, err := q.line(); err != nil { // the greeting
		t.Fatalf("QMP greeting: %v", err)
	}
	if _, err := q.run("qmp_capabilities", nil); err != nil {
		t.Fatalf("QMP: %v", err)
	}
	return q
}

func (q *qmp) line() (map[string]any, error) {
	q.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	for {
		b, err := q.r.ReadBytes('\n')
		if err != nil {
			return nil, err
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, fmt.Errorf("QMP: %q: %w", b, err)
		}
		if _, ev := m["event"]; !ev {
			return m, nil
		}
	}
}

func (q *qmp) run(cmd string, args map[string]any) (any, error) {
	req := map[string]any{"execute": cmd}
	if args != nil {
		req["arguments"] = args
	}
	b, _ := json.Marshal(req)
	if _, err := q.conn.Write(append(b, '\n')); err != nil {
		return nil, err
	}
	m, err := q.line()
	if err != nil {
		return nil, err
	}
	if e, ok := m["error"]; ok {
		return nil, fmt.Errorf("QMP %s: %v", cmd, e)
	}
	return m["return"], nil
}

// hmp runs a human monitor command and returns what it printed.
func (q *qmp) hmp(t testing.TB, line string) string {
	t.Helper()
	r, err := q.run("human-monitor-command", map[string]any{"command-line": line})
	if err != nil {
		t.Fatalf("%s: %v", line, err)
	}
	s, _ := r.(string)
	return s
}

// usesSlipway reports whether process pid has slipway's core mapped.
func usesSlipway(t testing.TB, pid int) bool {
	t.Helper()
	maps, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Contains(string(maps), "libslipway-slirp.so")
}

// onSlipway reports whether QEMU (pid) runs on slipway in the given
// shape: its core mapped into QEMU (inproc), or QEMU free of Go with a
// slipway-slirp-server child (process).
func onSlipway(t testing.TB, pid int, shape string) bool {
	t.Helper()
	if shape != "process" {
		return usesSlipway(t, pid)
	}
	if usesSlipway(t, pid) {
		return false
	}
	for _, p := range testenv.PIDs() {
		// The kernel cuts a command name to 15 bytes.
		if comm, ppid, ok := testenv.ProcStat(p); ok && ppid == pid && strings.HasPrefix(comm, "slipway-slirp-s") {
			return true
		}
	}
	return false
}
