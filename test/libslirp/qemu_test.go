package libslirp

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/slipway-net/slipway/test/testenv"
	"github.com/slipway-net/slipway/test/vmtest"
)

// usernetForward is how QEMU's own Python tooling finds a host forward in
// `info usernet` (its port is the first group).
var usernetForward = regexp.MustCompile(`TCP.HOST_FORWARD.*127\.0\.0\.1\s+(\d+)\s+10\.`)

// TestQEMUUserNetdev boots a QEMU 7.2 guest on -netdev user with
// LD_LIBRARY_PATH at slipway's libslirp.so.0, in each shape: DHCP lease with the
// netdev's options, DNS, a 50 MB download with its sha256, ping, IPv6 by
// SLAAC on QEMU's fec0::/64 to the host's ::1, a hostfwd from the command
// line and one added from the monitor, hostfwd_remove, info usernet, and
// SIGIO/SIGALRM sent to QEMU, which it survives.
func TestQEMUUserNetdev(t *testing.T) {
	testenv.RequireTools(t, "qemu-system-x86_64")
	for _, shape := range shapes {
		t.Run(shape, func(t *testing.T) { qemuUserNetdev(t, shape) })
	}
}

func qemuUserNetdev(t *testing.T, shape string) {
	dir := libDir(t)
	guest := vmtest.Build(t)
	dns := testenv.Dnsmasq(t)
	web, sum := testenv.HTTPFile(t, 50<<20)
	web6, sum6 := testenv.HTTPFileOn(t, "[::1]:0", 5<<20)
	fwdPort := testenv.FreePort(t, "tcp")
	ctlPort := testenv.FreePort(t, "tcp")
	qmpPath := filepath.Join(t.TempDir(), "qmp.sock")
	// The guest polls /ctl until the host's checks are done.
	var finished atomic.Bool
	ctl := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !finished.Load() {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, "done")
	})}
	ctlLn, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go ctl.Serve(ctlLn)
	t.Cleanup(func() { ctl.Close() })

	vm := vmtest.Start(t, guest, vmtest.Options{
		Netdev: []string{
			"-netdev", fmt.Sprintf("user,id=n0,hostname=vm1,domainname=lab.example,dnssearch=lab.example,"+
				"hostfwd=tcp:127.0.0.1:%d-:8080", fwdPort),
			"-device", "virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56",
		},
		ExtraQEMUArgs: []string{"-qmp", "unix:" + qmpPath + ",server=on,wait=off"},
		Env:           []string{"LD_LIBRARY_PATH=" + dir, "SLIPWAY_DNS_UPSTREAM=" + dns.String(), "SLIPWAY_LIBSLIRP=" + shape},
		Timeout:       240 * time.Second,
		Script: strings.Join([]string{
			`echo "@dns=$(nslookup a.` + testenv.TestDomain + ` 2>/dev/null | awk '/^Address/ && !/#53/ {print $NF}' | tail -1)"`,
			fmt.Sprintf(`echo "@sha=$(wget -q -O - http://10.0.2.2:%d/blob | sha256sum | cut -d' ' -f1)"`, web.Port()),
			`ping -c1 -W5 10.0.2.2 >/dev/null && echo "@ping=ok"`,
			`for i in $(seq 1 100); do ip -6 addr show dev eth0 | grep 'inet6 fec0' | grep -qv tentative && break; sleep 0.2; done`,
			`echo "@slaac=$(ip -6 addr show dev eth0 | awk '/inet6 fec0/ {print $2}' | head -1)"`,
			fmt.Sprintf(`echo "@sha6=$(wget -q -O - 'http://[fec0::2]:%d/blob' | sha256sum | cut -d' ' -f1)"`, web6.Port()),
			`mkdir -p /tmp/www && echo hello-from-guest > /tmp/www/index.html && httpd -p 8080 -h /tmp/www`,
			`echo "@serving"`,
			fmt.Sprintf(`while ! wget -q -O /tmp/ctl http://10.0.2.2:%d/ctl; do sleep 0.5; done`, ctlLn.Addr().(*net.TCPAddr).Port),
			`echo "@ctl=$(cat /tmp/ctl)"`,
		}, "\n"),
	})
	if _, err := vm.WaitFor("@serving", 200*time.Second); err != nil {
		t.Fatal(err)
	}
	if !onSlipway(t, vm.Pid(), shape) {
		t.Fatalf("QEMU does not run on slipway's library in the %s shape", shape)
	}
	q := dialQMP(t, qmpPath)

	// The forward from the command line reaches the guest's httpd.
	if got := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/", fwdPort)); got != "hello-from-guest\n" {
		t.Errorf("hostfwd from the command line: got %q", got)
	}
	info := q.hmp(t, "info usernet")
	if m := usernetForward.FindStringSubmatch(info); m == nil || m[1] != fmt.Sprint(fwdPort) {
		t.Errorf("info usernet does not show the forward of port %d as QEMU's tools parse it:\n%s", fwdPort, info)
	}

	// Process-directed SIGIO and SIGALRM: QEMU blocks them and reads a
	// signalfd; Go's threads must not take them.
	for _, sig := range []syscall.Signal{syscall.SIGIO, syscall.SIGALRM, syscall.SIGIO, syscall.SIGALRM} {
		if err := syscall.Kill(vm.Pid(), sig); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := q.run("query-status", nil); err != nil {
		t.Fatalf("QEMU after SIGIO/SIGALRM: %v", err)
	}

	// hostfwd_remove, then a connection is refused.
	if out := q.hmp(t, fmt.Sprintf("hostfwd_remove tcp:127.0.0.1:%d", fwdPort)); !strings.Contains(out, "removed") {
		t.Errorf("hostfwd_remove: %q", out)
	}
	if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", fwdPort), 5*time.Second); err == nil {
		c.Close()
		t.Errorf("port %d still accepts after hostfwd_remove", fwdPort)
	}

	// hostfwd_add at run time reaches the guest's httpd too.
	if out := q.hmp(t, fmt.Sprintf("hostfwd_add tcp:127.0.0.1:%d-:8080", ctlPort)); strings.TrimSpace(out) != "" {
		t.Errorf("hostfwd_add: %q", out)
	}
	if got := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/", ctlPort)); got != "hello-from-guest\n" {
		t.Errorf("hostfwd added from the monitor: got %q", got)
	}
	finished.Store(true)

	res, err := vm.Wait()
	if err != nil {
		t.Fatal(err)
	}
	lease := res.Lease
	for k, v := range map[string]string{"ip": "10.0.2.15", "router": "10.0.2.2", "dns": "10.0.2.3", "mtu": "1500",
		"domain": "lab.example", "search": "lab.example", "hostname": "vm1", "serverid": "10.0.2.2"} {
		if lease[k] != v {
			t.Errorf("lease %s = %q, want %q", k, lease[k], v)
		}
	}
	m := testenv.Markers(res.Console)
	want := map[string]string{"dns": testenv.TestDomainAddr, "sha": sum, "ping": "ok",
		"slaac": "fec0::5054:ff:fe12:3456/64", "sha6": sum6, "ctl": "done"}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("in the guest: %s = %q, want %q", k, m[k], v)
		}
	}
	if t.Failed() {
		t.Logf("console:\n%s", res.Console)
	}
}

// TestQEMUDaemonizeSandbox: with -daemonize QEMU forks before it creates
// its netdevs, so the library's Go runtime starts in the daemon; under
// -sandbox on with everything denied the runtime starts too. In both the
// library works (a forward added from the monitor, info usernet) and
// process-directed SIGIO and SIGALRM do not kill QEMU. No guest boots:
// the CPU stays stopped (-S). QEMU 7.2 itself cannot combine -daemonize
// with spawn=deny or elevateprivileges=deny (its own fork and setsid are
// refused, with Debian's libslirp as with slipway's), so the daemon runs
// with the other two.
func TestQEMUDaemonizeSandbox(t *testing.T) {
	testenv.RequireTools(t, "qemu-system-x86_64")
	dir := libDir(t)
	t.Run("daemonize", func(t *testing.T) {
		noGuestQEMU(t, dir, true, "on,obsolete=deny,resourcecontrol=deny")
	})
	// Without -sandbox the default shape runs: the server is the
	// daemon's child.
	t.Run("daemonize-process", func(t *testing.T) {
		noGuestQEMU(t, dir, true, "off")
	})
	t.Run("sandbox", func(t *testing.T) {
		noGuestQEMU(t, dir, false, "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny")
	})
}

func noGuestQEMU(t *testing.T, dir string, daemonize bool, sandbox string) {
	tmp := t.TempDir()
	qmpPath, pidFile := filepath.Join(tmp, "qmp.sock"), filepath.Join(tmp, "qemu.pid")
	// Two ports found free now: port+1 may be any socket's local port.
	port, port2 := testenv.FreePort(t, "tcp"), testenv.FreePort(t, "tcp")
	args := []string{"-accel", "tcg", "-nodefaults", "-no-user-config", "-display", "none", "-S",
		"-pidfile", pidFile, "-sandbox", sandbox,
		"-netdev", fmt.Sprintf("user,id=n0,hostfwd=tcp:127.0.0.1:%d-:22", port),
		"-device", "virtio-net-pci,netdev=n0",
		"-qmp", "unix:" + qmpPath + ",server=on,wait=off"}
	if daemonize {
		args = append(args, "-daemonize")
	}
	cmd := exec.Command("qemu-system-x86_64", args...)
	cmd.Env = append(os.Environ(), "LD_LIBRARY_PATH="+dir)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
	})
	var pid int
	if daemonize {
		select {
		case err := <-done:
			done <- err
			if err != nil {
				t.Fatalf("qemu -daemonize: %v: %s", err, out.String())
			}
		case <-time.After(60 * time.Second):
			t.Fatal("qemu -daemonize did not return: the daemon hangs in slirp_new")
		}
		b, err := os.ReadFile(pidFile)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Sscan(string(b), &pid)
		t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	} else {
		pid = cmd.Process.Pid
	}
	q := dialQMP(t, qmpPath)
	// Under -sandbox (a seccomp filter) the default shape is inproc.
	shape := "inproc"
	if sandbox == "off" {
		shape = defaultShape
	}
	if !onSlipway(t, pid, shape) {
		t.Fatalf("QEMU (-sandbox %s) does not run on slipway's library in the %s shape", sandbox, shape)
	}
	if out := q.hmp(t, fmt.Sprintf("hostfwd_add tcp:127.0.0.1:%d-:80", port2)); strings.TrimSpace(out) != "" {
		t.Errorf("hostfwd_add: %q", out)
	}
	info := q.hmp(t, "info usernet")
	if !strings.Contains(info, fmt.Sprintf("127.0.0.1 %5d", port)) || !strings.Contains(info, fmt.Sprintf("127.0.0.1 %5d", port2)) {
		t.Errorf("info usernet lacks the forwards:\n%s", info)
	}
	for _, sig := range []syscall.Signal{syscall.SIGIO, syscall.SIGALRM, syscall.SIGIO, syscall.SIGALRM, syscall.SIGIO, syscall.SIGALRM} {
		syscall.Kill(pid, sig)
	}
	if _, err := q.run("query-status", nil); err != nil {
		t.Fatalf("QEMU after SIGIO/SIGALRM: %v; output: %s", err, out.String())
	}
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("QEMU died: %v", err)
	}
	q.run("quit", nil)
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	body, err := tryGet(url)
	if err != nil {
		t.Errorf("GET %s: %v", url, err)
	}
	return body
}

func tryGet(url string) (string, error) {
	c := http.Client{Timeout: 20 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}
