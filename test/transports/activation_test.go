package transports

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/slipway-net/slipway/control"
	"github.com/slipway-net/slipway/test/guestpeer"
	"github.com/slipway-net/slipway/test/testenv"
)

// notifySocket is a service manager's end of NOTIFY_SOCKET: each datagram
// is one notification.
type notifySocket struct {
	t *testing.T
	c *net.UnixConn
}

func listenNotify(t *testing.T, path string) *notifySocket {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &notifySocket{t: t, c: c}
}

// next returns the next notification; it fails the test if none comes.
func (n *notifySocket) next(what string) string {
	n.t.Helper()
	buf := make([]byte, 4096)
	n.c.SetReadDeadline(time.Now().Add(60 * time.Second))
	k, err := n.c.Read(buf)
	if err != nil {
		n.t.Fatalf("waiting for %s on NOTIFY_SOCKET: %v", what, err)
	}
	return string(buf[:k])
}

// Run as systemd runs slipway@.service with its socket unit: the sockets
// are bound before slipway starts and passed as descriptors 3 and 4
// (LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES), by systemd's own
// systemd-socket-activate, which starts slipway only when the first VM
// connects. slipway serves that VM on the passed socket and its API on the
// other, tells NOTIFY_SOCKET READY=1 once serving, feeds the watchdog, says
// STOPPING=1 on SIGTERM, and leaves the socket files, which are the
// manager's, in place.
func TestSocketActivation(t *testing.T) {
	testenv.RequireTools(t, "systemd-socket-activate")
	web, sum := testenv.HTTPFile(t, 1<<20)
	dir := t.TempDir()
	vmSock, apiSock, notify := filepath.Join(dir, "vm.sock"), filepath.Join(dir, "api.sock"), filepath.Join(dir, "notify")
	ns := listenNotify(t, notify)
	args := append([]string{"-l", vmSock, "-l", apiSock, "--fdname=vm:api",
		"-E", "NOTIFY_SOCKET=" + notify, "-E", "WATCHDOG_USEC=1000000", testenv.Slipway(t)},
		testenv.WithSandbox([]string{"serve", "--listen", "stream:unix:" + vmSock, "--api-socket", apiSock})...)
	cmd := exec.Command("systemd-socket-activate", args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p := testenv.StartProcess(t, "systemd-socket-activate slipway serve", cmd)
	if !p.WaitPath(apiSock, 30*time.Second) {
		t.Fatalf("systemd-socket-activate did not bind %s", apiSock)
	}
	vmFile, _ := os.Lstat(vmSock)

	// The first VM's connection starts slipway; it waits in the backlog.
	c, err := net.Dial("unix", vmSock)
	if err != nil {
		t.Fatal(err)
	}
	g := guestpeer.New(t, guestpeer.NewStream(c), "52:54:00:00:0a:01")
	if got := ns.next("READY=1"); got != "READY=1\nSTATUS=control API at "+apiSock {
		t.Fatalf("first notification %q, want READY=1 and the API's socket", got)
	}
	online(t, g)
	download(t, g, web, sum)

	// The API on the other passed socket sees the VM.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var links []control.Link
	if err := control.NewClient(apiSock).Do(ctx, "GET", "/v1/links", nil, &links); err != nil || len(links) != 1 {
		t.Errorf("GET /v1/links on the passed API socket: %v %+v, want the one VM", err, links)
	}
	// WatchdogSec=1s: WATCHDOG=1 at least every half of it.
	if got := ns.next("WATCHDOG=1"); got != "WATCHDOG=1" {
		t.Errorf("notification %q, want WATCHDOG=1", got)
	}

	p.Cmd.Process.Signal(syscall.SIGTERM)
	for {
		got := ns.next("STOPPING=1")
		if got == "STOPPING=1" {
			break
		}
		if got != "WATCHDOG=1" {
			t.Fatalf("notification %q, want STOPPING=1", got)
		}
	}
	<-p.Done()
	if code := p.Cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("slipway exited %d after SIGTERM, want 0", code)
	}
	if strings.Contains(p.Output(), "level=ERROR") {
		t.Errorf("slipway logged an error:\n%s", p.Output())
	}
	// The manager's sockets stay for the next start.
	for _, s := range []string{vmSock, apiSock} {
		fi, err := os.Lstat(s)
		if err != nil {
			t.Errorf("%s removed by slipway: %v", s, err)
		} else if s == vmSock && !os.SameFile(fi, vmFile) {
			t.Errorf("%s replaced by slipway", s)
		}
	}
}
