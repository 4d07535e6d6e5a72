package e2e

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/slipway-net/slipway/config"
	"github.com/slipway-net/slipway/control"
	"github.com/slipway-net/slipway/internal/nvlist"
	"github.com/slipway-net/slipway/test/guestpeer"
	"github.com/slipway-net/slipway/test/testenv"
)

// waitFile waits until the file at path holds s.
func waitFile(t *testing.T, p *testenv.Process, path, s string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, _ := os.ReadFile(path)
		if strings.Contains(string(b), s) {
			return
		}
		select {
		case <-p.Done():
			t.Fatalf("%q never in %s: the process exited (%v):\n%s\n%s", s, path, p.Err(), b, p.Output())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%q never in %s:\n%s", s, path, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// rotate does what logrotate does to path, once the process pid logged
// first: renames the file, then sends SIGHUP. It returns once the
// launcher, and a confined engine, have said they reopened it.
func rotate(t *testing.T, p *testenv.Process, pid int, path, first string, confined bool) {
	t.Helper()
	waitFile(t, p, path, first)
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFile(t, p, path, `msg="log file reopened"`)
	if confined {
		waitFile(t, p, path, `msg="engine's log reopened"`)
	}
}

// checkRotated fails the test unless every line is in the new file at
// path and none in the renamed one, which still holds what came first.
func checkRotated(t *testing.T, path, first string, lines ...string) {
	t.Helper()
	now, _ := os.ReadFile(path)
	old, _ := os.ReadFile(path + ".1")
	if !strings.Contains(string(old), first) {
		t.Errorf("the renamed file lacks %q:\n%s", first, old)
	}
	for _, l := range lines {
		if !strings.Contains(string(now), l) {
			t.Errorf("%q is not in the new %s:\n%s", l, path, now)
		}
		if strings.Contains(string(old), l) {
			t.Errorf("%q went to the renamed file:\n%s", l, old)
		}
	}
}

// TestLogFileReopenOnSIGHUP: logrotate renames --log-file and sends
// SIGHUP to the process the user started; the lines logged from then on,
// the engine's (a guest's lease, a port published) and the launcher's (its
// shutdown), land in a new file at the path, none in the renamed one. In
// every mode with --log-file (pasta's -l), confined and not.
func TestLogFileReopenOnSIGHUP(t *testing.T) {
	testenv.RequireRoot(t)
	const leased = `msg="dhcp4: lease granted"`
	for _, mode := range []string{"on", "off"} {
		t.Run("serve-sandbox-"+mode, func(t *testing.T) {
			dir := t.TempDir()
			sock, logf := filepath.Join(dir, "vm.sock"), filepath.Join(dir, "slipway.log")
			s := testenv.Serve(t, "--listen", "stream:unix:"+sock, "--log-file", logf, "--log-level", "info", "--sandbox", mode)
			rotate(t, s, s.Cmd.Process.Pid, logf, "msg=serving", mode == "on")
			c, err := net.Dial("unix", sock)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := guestpeer.New(t, guestpeer.NewStream(c), "52:54:00:00:31:01").Online(); err != nil {
				t.Fatal(err)
			}
			waitFile(t, s, logf, leased)
			s.Stop()
			checkRotated(t, logf, "msg=serving", leased, `msg="shutting down"`)
		})
	}
	t.Run("run", func(t *testing.T) {
		dir := t.TempDir()
		api, logf := filepath.Join(dir, "api.sock"), filepath.Join(dir, "slipway.log")
		r, w, _ := os.Pipe()
		defer r.Close()
		cmd := exec.Command(testenv.Slipway(t), "run", "--ready-fd", "3", "--log-file", logf, "--log-level", "info", "--api-socket", api, "--", "sleep", "60")
		cmd.ExtraFiles = []*os.File{w}
		p := testenv.StartProcess(t, "slipway run", cmd)
		w.Close()
		if b := make([]byte, 1); readByte(r, b) != "1" {
			t.Fatalf("not ready:\n%s", p.Output())
		}
		rotate(t, p, cmd.Process.Pid, logf, "msg=sandbox", true)
		// SIGHUP was the log's: the command runs on.
		select {
		case <-p.Done():
			t.Fatalf("slipway run ended on SIGHUP: %v", p.Err())
		default:
		}
		rule, err := config.ParsePublish("127.0.0.1:" + strconv.Itoa(testenv.FreePort(t, "tcp")) + ":8080")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		var fw control.Forward
		if err := control.NewClient(api).Do(ctx, "POST", "/v1/forwards", control.ForwardRequest{PublishRule: rule}, &fw); err != nil {
			t.Fatal(err)
		}
		waitFile(t, p, logf, `msg="port published"`)
		p.Stop()
		checkRotated(t, logf, "msg=sandbox", `msg="port published"`)
	})
	t.Run("bhyve-helper", func(t *testing.T) {
		logf := filepath.Join(t.TempDir(), "slipway.log")
		child, ours := guestpeer.Socketpair(t, unix.SOCK_SEQPACKET)
		cmd := exec.Command(testenv.Slipway(t), "bhyve-helper", "-S", "3", "--log-file", logf, "--log-level", "info")
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
		rotate(t, p, cmd.Process.Pid, logf, "msg=sandbox", true)
		if _, err := guestpeer.New(t, &guestpeer.Packet{Conn: ours}, "52:54:00:00:31:02").Online(); err != nil {
			t.Fatal(err)
		}
		waitFile(t, p, logf, leased)
		p.Stop()
		checkRotated(t, logf, "msg=sandbox", leased, `msg="shutting down"`)
	})
	t.Run("gvproxy", func(t *testing.T) {
		dir := t.TempDir()
		sock, logf := filepath.Join(dir, "qemu.sock"), filepath.Join(dir, "gvproxy.log")
		gv := testenv.StartProcess(t, "gvproxy", exec.Command(publicCopy(t, "gvproxy"), "-ssh-port", "-1", "-listen-qemu", "unix://"+sock, "-log-file", logf))
		c := waitSocket(t, sock, gv)
		rotate(t, gv, gv.Cmd.Process.Pid, logf, `msg="waiting for clients..."`, true)
		gvOnline(t, guestpeer.New(t, guestpeer.NewStream(c), gvGuestMAC), gvGateway)
		waitFile(t, gv, logf, leased)
		gv.Stop()
		checkRotated(t, logf, `msg="waiting for clients..."`, leased, `msg="shutting down"`)
	})
	t.Run("pasta", func(t *testing.T) {
		testenv.RequireTools(t, "ip", "busybox")
		name, path := namedNS(t)
		logf := filepath.Join(t.TempDir(), "pasta.log")
		p := testenv.StartProcess(t, "pasta", exec.Command(publicCopy(t, "pasta"), "--config-net", "-f", "-l", logf, "-I", "eth9",
			"-a", "10.6.0.2", "-n", "24", "-g", "10.6.0.1", "--ipv4-only", "-t", "none", "-u", "none", "--netns", path))
		rotate(t, p, p.Cmd.Process.Pid, logf, `msg="namespace configured"`, true)
		// The engine's line: a DHCP client in the namespace leases.
		inNetNS(t, name, "timeout 20 busybox udhcpc -i eth9 -n -q -f -t 5 -T 1 -s /bin/true")
		waitFile(t, p, logf, leased)
		p.Stop()
		checkRotated(t, logf, `msg="namespace configured"`, leased, `msg="shutting down"`)
	})
}
