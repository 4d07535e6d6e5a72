package libslirp

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/slipway-net/slipway/test/testenv"
	"github.com/slipway-net/slipway/test/vmtest"
)

// TestQEMUNetdevOptions boots a guest on -netdev user with the addressing
// options QEMU 7.2 passes through set away from their defaults: net=,
// host=, dhcpstart=, dns=, ipv6-net=, ipv6-host=, ipv6-dns=, and
// restrict=on. The guest's lease, its SLAAC address and its DNS servers
// follow them; restrict=on keeps the guest from the host's loopback while
// a host forward still reaches the guest.
func TestQEMUNetdevOptions(t *testing.T) {
	testenv.RequireTools(t, "qemu-system-x86_64")
	dir := libDir(t)
	guest := vmtest.Build(t)
	dns := testenv.Dnsmasq(t)
	web, _ := testenv.HTTPFile(t, 1<<10)
	fwdPort, donePort := testenv.FreePort(t, "tcp"), testenv.FreePort(t, "tcp")
	cfg := filepath.Join(t.TempDir(), "slipway.yaml")
	if err := os.WriteFile(cfg, []byte("mtu: 65520\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	vm := vmtest.Start(t, guest, vmtest.Options{
		Netdev: []string{
			"-netdev", fmt.Sprintf("user,id=n0,net=10.9.0.0/24,host=10.9.0.1,dhcpstart=10.9.0.50,dns=10.9.0.53,"+
				"ipv6-net=fd00:9::/64,ipv6-host=fd00:9::1,ipv6-dns=fd00:9::53,restrict=on,"+
				"hostfwd=tcp:127.0.0.1:%d-:8080,hostfwd=tcp:127.0.0.1:%d-:8081", fwdPort, donePort),
			"-device", "virtio-net-pci,netdev=n0,mac=52:54:00:12:34:57",
		},
		Env:     []string{"LD_LIBRARY_PATH=" + dir, "SLIPWAY_DNS_UPSTREAM=" + dns.String(), "SLIPWAY_CONFIG=" + cfg},
		Timeout: 180 * time.Second,
		Script: strings.Join([]string{
			`echo "@mtu=$(cat /sys/class/net/eth0/mtu)"`,
			`echo "@dns4=$(nslookup a.` + testenv.TestDomain + ` 10.9.0.53 2>/dev/null | awk '/^Address/ && !/#53/ {print $NF}' | tail -1)"`,
			`for i in $(seq 1 100); do ip -6 addr show dev eth0 | grep 'inet6 fd00:9' | grep -qv tentative && break; sleep 0.2; done`,
			`echo "@slaac=$(ip -6 addr show dev eth0 | awk '/inet6 fd00:9/ {print $2}' | head -1)"`,
			`echo "@route6=$(ip -6 route show default | awk '{print $3}' | head -1)"`,
			`echo "@dns6=$(nslookup a.` + testenv.TestDomain + ` fd00:9::53 2>/dev/null | awk '/^Address/ && !/#53/ {print $NF}' | tail -1)"`,
			fmt.Sprintf(`if wget -q -O /dev/null http://10.9.0.1:%d/blob; then echo "@host=reached"; else echo "@host=refused"; fi`, web.Port()),
			`mkdir -p /tmp/www && echo hello-restricted > /tmp/www/index.html && httpd -p 8080 -h /tmp/www`,
			`echo "@serving"`,
			// The host says it is done through the second forward.
			`nc -l -p 8081 > /tmp/done`,
			`echo "@done=$(cat /tmp/done)"`,
		}, "\n"),
	})
	if _, err := vm.WaitFor("@serving", 150*time.Second); err != nil {
		t.Fatal(err)
	}
	if got := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/", fwdPort)); got != "hello-restricted\n" {
		t.Errorf("hostfwd under restrict=on: got %q", got)
	}
	sayDone(t, donePort)
	res, err := vm.Wait()
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{"ip": "10.9.0.50", "router": "10.9.0.1", "dns": "10.9.0.53", "mtu": "65520"} {
		if res.Lease[k] != v {
			t.Errorf("lease %s = %q, want %q", k, res.Lease[k], v)
		}
	}
	m := testenv.Markers(res.Console)
	for k, v := range map[string]string{"dns4": testenv.TestDomainAddr, "dns6": testenv.TestDomainAddr,
		"slaac": "fd00:9::5054:ff:fe12:3457/64", "host": "refused", "done": "done", "mtu": "65520"} {
		if m[k] != v {
			t.Errorf("in the guest: %s = %q, want %q", k, m[k], v)
		}
	}
	if r := m["route6"]; r != "fe80::1" && r != "fd00:9::1" && !strings.HasPrefix(r, "fe80::") {
		t.Errorf("in the guest: no IPv6 default route (%q)", r)
	}
	if t.Failed() {
		t.Logf("console:\n%s", res.Console)
	}
}

// TestQEMUSMBRefused: smb= needs a command run for the guest's
// connections, which the library does not do; QEMU must stop with a line
// saying so, not run without the share.
func TestQEMUSMBRefused(t *testing.T) {
	testenv.RequireTools(t, "qemu-system-x86_64")
	dir := libDir(t)
	cmd := exec.Command("qemu-system-x86_64", "-accel", "tcg", "-nodefaults", "-no-user-config", "-display", "none", "-S",
		"-netdev", "user,id=n0,smb="+t.TempDir(), "-device", "virtio-net-pci,netdev=n0")
	cmd.Env = append(os.Environ(), "LD_LIBRARY_PATH="+dir)
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatal("QEMU with smb= kept running")
	}
	if err == nil {
		t.Fatalf("QEMU with smb= exited 0: %s", out)
	}
	if !regexp.MustCompile(`(?i)smb|smbd`).Match(out) {
		t.Errorf("QEMU's error does not name smb: %s", out)
	}
	t.Logf("QEMU: %s", strings.TrimSpace(string(out)))
}

// TestInfoUsernetLayout: `info usernet` of a QEMU on slipway's library
// prints a host forward in the very columns Debian's libslirp does (only
// the descriptor column differs).
func TestInfoUsernetLayout(t *testing.T) {
	testenv.RequireTools(t, "qemu-system-x86_64")
	dir := libDir(t)
	port := testenv.FreePort(t, "tcp")
	table := func(libdir string) string {
		q := bareQEMU(t, libdir, fmt.Sprintf("user,id=n0,hostfwd=tcp:127.0.0.1:%d-:22", port))
		s := q.hmp(t, "info usernet")
		q.run("quit", nil)
		return s
	}
	// The columns are fixed-width: the same length, and the same text
	// once the descriptor is blanked, is the same layout.
	fd := regexp.MustCompile(`\] +-?\d+ `)
	norm := func(s string) []string {
		var rows []string
		for _, l := range strings.Split(s, "\n") {
			if strings.Contains(l, "HOST_FORWARD") || strings.Contains(l, "Protocol[State]") {
				rows = append(rows, fmt.Sprintf("%3d|%s", len(l), fd.ReplaceAllString(l, "] FD ")))
			}
		}
		return rows
	}
	theirs := norm(table(""))
	// Debian's QEMU must have released the port before ours binds it.
	for range 100 {
		if l, err := net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			l.Close()
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	ours := norm(table(dir))
	if len(theirs) != 2 || strings.Join(theirs, "\n") != strings.Join(ours, "\n") {
		t.Errorf("info usernet differs:\nlibslirp:\n%s\nslipway:\n%s", strings.Join(theirs, "\n"), strings.Join(ours, "\n"))
	}
}

// sayDone tells a guest waiting in `nc -l` (behind a host forward of
// port) that the host's checks are over.
func sayDone(t *testing.T, port int) {
	t.Helper()
	var c net.Conn
	var err error
	for range 50 {
		if c, err = net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second); err == nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("telling the guest: %v", err)
	}
	c.Write([]byte("done"))
	c.Close()
}

// bareQEMU starts a QEMU with no guest (-S) on one -netdev user: on
// slipway's library in libdir, or on Debian's libslirp when libdir is "".
// It returns its monitor.
func bareQEMU(t *testing.T, libdir, netdev string) *qmp {
	t.Helper()
	qmpPath := filepath.Join(t.TempDir(), "qmp.sock")
	cmd := exec.Command("qemu-system-x86_64", "-accel", "tcg", "-nodefaults", "-no-user-config", "-display", "none", "-S",
		"-netdev", netdev, "-device", "virtio-net-pci,netdev=n0", "-qmp", "unix:"+qmpPath+",server=on,wait=off")
	cmd.Env = os.Environ()
	if libdir != "" {
		cmd.Env = append(cmd.Env, "LD_LIBRARY_PATH="+libdir)
	}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
	})
	q := dialQMP(t, qmpPath)
	if got := onSlipway(t, cmd.Process.Pid, defaultShape); got != (libdir != "") {
		t.Fatalf("QEMU on slipway's library: %v, want %v (%s)", got, libdir != "", out.String())
	}
	return q
}

// TestQEMUEphemeralHostfwd: hostfwd with host port 0 gets a port the
// kernel picks, which `info usernet` shows where QEMU's own tooling looks
// for it, and which is bound (as Debian's libslirp does).
func TestQEMUEphemeralHostfwd(t *testing.T) {
	testenv.RequireTools(t, "qemu-system-x86_64")
	dir := libDir(t)
	q := bareQEMU(t, dir, "user,id=n0,hostfwd=tcp:127.0.0.1:0-:22")
	info := q.hmp(t, "info usernet")
	m := usernetForward.FindStringSubmatch(info)
	if m == nil || m[1] == "0" {
		t.Fatalf("no forward with a picked port in info usernet:\n%s", info)
	}
	if l, err := net.Listen("tcp4", "127.0.0.1:"+m[1]); err == nil {
		l.Close()
		t.Errorf("port %s shown in info usernet is not bound", m[1])
	}
}
