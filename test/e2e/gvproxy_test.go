package e2e

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/slipway-net/slipway/test/testenv"
	"github.com/slipway-net/slipway/test/vmtest"
)

// gvproxy's addressing, as its users hard-code it.
const (
	gvGateway  = "192.168.127.1"
	gvGuest    = "192.168.127.2"
	gvHost     = "192.168.127.254"
	gvGuestMAC = "5a:94:ef:e4:0c:ee" // podman machine's VM
)

// podmanMachineLine is podman machine's gvproxy command line on QEMU
// (../shared/callers.md), exactly: -forward-dest is the guest's podman
// socket, here a path the namespace-guest shares with the test.
func podmanMachineLine(sshPort int, qemuSock, fwdSock, fwdDest, key, pidFile, logFile string) []string {
	return []string{"-mtu", "1500", "-ssh-port", fmt.Sprint(sshPort), "-listen-qemu", "unix://" + qemuSock,
		"-forward-sock", fwdSock, "-forward-dest", fwdDest, "-forward-user", "root", "-forward-identity", key,
		"-pid-file", pidFile, "-log-file", logFile}
}

// waitSocket waits for a unix socket to accept, with backoff, as podman
// machine waits for gvproxy's.
func waitSocket(t *testing.T, path string, gv *testenv.Process) net.Conn {
	t.Helper()
	delay := 10 * time.Millisecond
	for i := 0; i < 40; i++ {
		if c, err := net.Dial("unix", path); err == nil {
			return c
		}
		select {
		case <-gv.Done():
			t.Fatalf("gvproxy exited: %v\n%s", gv.Err(), gv.Output())
		case <-time.After(delay):
		}
		delay = min(2*delay, 500*time.Millisecond)
	}
	t.Fatalf("%s: nobody listens", path)
	return nil
}

// tapIn creates a TAP named ifname inside the network namespace at
// nsPath and returns its file: one thread enters the namespace, opens the
// TAP there and comes back.
func tapIn(t *testing.T, nsPath, ifname string) *os.File {
	t.Helper()
	runtime.LockOSThread()
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	defer self.Close()
	ns, err := os.Open(nsPath)
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	defer ns.Close()
	if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("setns: %v", err)
	}
	fd, terr := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if terr == nil {
		ifr, _ := unix.NewIfreq(ifname)
		ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
		if terr = unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); terr != nil {
			unix.Close(fd)
		}
	}
	if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
		// This thread stays in the namespace: never unlock it, so it
		// ends with the goroutine.
		t.Fatalf("setns back: %v", err)
	}
	runtime.UnlockOSThread()
	if terr != nil {
		t.Fatalf("tap in %s: %v", nsPath, terr)
	}
	return os.NewFile(uintptr(fd), ifname)
}

// qemuBridge carries frames between a TAP and a stream socket in QEMU's
// framing (a 32-bit big-endian length before each frame): the namespace
// is a VM on gvproxy's -listen-qemu, as QEMU's -netdev stream makes one.
func qemuBridge(t *testing.T, tap *os.File, c net.Conn) {
	t.Helper()
	t.Cleanup(func() { c.Close(); tap.Close() })
	go func() {
		buf := make([]byte, 4+65536)
		for {
			n, err := tap.Read(buf[4:])
			if err != nil {
				return
			}
			binary.BigEndian.PutUint32(buf, uint32(n))
			if _, err := c.Write(buf[:4+n]); err != nil {
				return
			}
		}
	}()
	go func() {
		r := bufio.NewReader(c)
		var hdr [4]byte
		buf := make([]byte, 65536)
		for {
			if _, err := io.ReadFull(r, hdr[:]); err != nil {
				return
			}
			n := binary.BigEndian.Uint32(hdr[:])
			if n > uint32(len(buf)) {
				return
			}
			if _, err := io.ReadFull(r, buf[:n]); err != nil {
				return
			}
			tap.Write(buf[:n])
		}
	}()
}

// udhcpcScript configures the lease busybox udhcpc got and prints it as
// markers.
const udhcpcScript = `#!/bin/sh
case "$1" in
bound|renew)
	ip addr add "$ip/$mask" dev "$interface"
	ip route add default via "$router"
	echo "@ip=$ip"; echo "@router=$router"; echo "@dns=$dns"; echo "@mtu=$mtu"
	;;
esac
`

// gvGuestNS makes a namespace that is a VM on gvproxy's -listen-qemu
// socket: a TAP with mac, bridged to the socket, configured by DHCP. It
// returns the namespace's name and the lease's markers. Programs in the
// namespace resolve through the gateway (/etc/netns/NAME/resolv.conf).
func gvGuestNS(t *testing.T, gv *testenv.Process, qemuSock, mac string) (string, map[string]string) {
	t.Helper()
	name, path := namedNS(t)
	conn := waitSocket(t, qemuSock, gv)
	qemuBridge(t, tapIn(t, path, "eth0"), conn)
	dir := filepath.Join("/etc/netns", name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.WriteFile(filepath.Join(dir, "resolv.conf"), []byte("nameserver "+gvGateway+"\n"), 0o644)
	sc := filepath.Join(t.TempDir(), "udhcpc.sh")
	os.WriteFile(sc, []byte(udhcpcScript), 0o755)
	m := testenv.Markers(inNetNS(t, name, script(
		"ip link set lo up",
		"ip link set eth0 address "+mac+" up",
		"busybox udhcpc -i eth0 -f -q -n -t 5 -T 2 -s "+sc,
	)))
	if m["ip"] == "" {
		t.Fatalf("the namespace got no DHCP lease: %v", m)
	}
	return name, m
}

// sshdIn runs OpenSSH's sshd in the namespace, root's key the one given,
// and returns when it accepts on port 22.
func sshdIn(t *testing.T, name, pubKey string) {
	t.Helper()
	dir := t.TempDir()
	hostKey := filepath.Join(dir, "host_key")
	mustOutput(t, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", hostKey)
	auth := filepath.Join(dir, "authorized_keys")
	os.WriteFile(auth, []byte(pubKey), 0o600)
	conf := filepath.Join(dir, "sshd_config")
	os.WriteFile(conf, []byte(strings.Join([]string{
		"ListenAddress 0.0.0.0:22", "HostKey " + hostKey, "AuthorizedKeysFile " + auth,
		"PidFile " + filepath.Join(dir, "sshd.pid"), "StrictModes no", "UsePAM no",
		"PermitRootLogin prohibit-password", "AllowStreamLocalForwarding yes", "LogLevel VERBOSE",
	}, "\n")+"\n"), 0o600)
	os.MkdirAll("/run/sshd", 0o755) // sshd's privilege separation directory
	sshd := testenv.StartProcess(t, "sshd", exec.Command("ip", "netns", "exec", name, "/usr/sbin/sshd", "-D", "-e", "-f", conf))
	for i := 0; i < 100; i++ {
		out, _ := exec.Command("ip", "netns", "exec", name, "sh", "-c", "cat /proc/net/tcp").Output()
		if strings.Contains(string(out), ":0016 00000000:0000 0A") {
			return
		}
		select {
		case <-sshd.Done():
			t.Fatalf("sshd exited: %s", sshd.Output())
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("sshd does not listen: %s", sshd.Output())
}

// unixHTTP is an HTTP client for a unix socket.
func unixHTTP(path string) *http.Client {
	return &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", path)
		}}}
}

// sshBanner reads the SSH server's first line at addr.
func sshBanner(addr string) string {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err.Error()
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	line, _ := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line)
}

// TestGvproxyPodmanMachine: podman machine's exact gvproxy command line,
// with a namespace as its VM on -listen-qemu (QEMU's framing) running a
// real sshd. The VM gets podman machine's address by its MAC, resolves
// gvproxy's names and the host's, reaches the host's loopback at .254,
// publishes a port from inside through gateway.containers.internal with
// no address in "remote", and the host reaches the VM's SSH on -ssh-port
// and podman's API socket in the VM through -forward-sock (SSH).
func TestGvproxyPodmanMachine(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "ip", "busybox", "curl", "dnsmasq", "ssh-keygen", "/usr/sbin/sshd")
	bin := publicCopy(t, "gvproxy")
	dns := testenv.Dnsmasq53(t)
	dir := t.TempDir()
	key := filepath.Join(dir, "machine")
	mustOutput(t, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key)
	pub, _ := os.ReadFile(key + ".pub")
	qemuSock, fwdSock := filepath.Join(dir, "qemu.sock"), filepath.Join(dir, "podman.sock")
	guestSock := filepath.Join(dir, "in-guest", "podman.sock")
	os.MkdirAll(filepath.Dir(guestSock), 0o755)
	pidFile, logFile := filepath.Join(dir, "gvproxy.pid"), filepath.Join(dir, "gvproxy.log")
	sshPort := testenv.FreePort(t, "tcp")
	gv := testenv.StartProcess(t, "gvproxy", withResolv(t, dns.Addr(),
		append([]string{bin}, podmanMachineLine(sshPort, qemuSock, fwdSock, guestSock, key, pidFile, logFile)...)...))

	// podman's API in the VM: a unix socket only the SSH tunnel reaches.
	api, err := net.Listen("unix", guestSock)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/_ping", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "OK") })
	srv := &http.Server{Handler: mux}
	go srv.Serve(api)
	t.Cleanup(func() { srv.Close() })

	name, lease := gvGuestNS(t, gv, qemuSock, gvGuestMAC)
	checkMarkers(t, lease, map[string]string{"ip": gvGuest, "router": gvGateway, "dns": gvGateway, "mtu": "1500"}, "lease ")
	if pid := pidFromFile(t, pidFile); pid != gv.Cmd.Process.Pid {
		// withResolv execs: the pid is gvproxy's own.
		t.Errorf("-pid-file holds %d, gvproxy is %d", pid, gv.Cmd.Process.Pid)
	}
	sshdIn(t, name, string(pub))

	onHost, _ := testenv.HTTPFile(t, 16)
	hostPort := testenv.FreePort(t, "tcp")
	www := t.TempDir()
	os.WriteFile(filepath.Join(www, "index.html"), []byte("hello from the VM\n"), 0o644)
	httpd := exec.Command("ip", "netns", "exec", name, "busybox", "httpd", "-f", "-p", "8080", "-h", www)
	if err := httpd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { httpd.Process.Kill(); httpd.Wait() })
	look := func(n string) string {
		return fmt.Sprintf(`busybox nslookup %s %s | awk '/^Address/ {a=$NF} END {print a}'`, n, gvGateway)
	}
	m := testenv.Markers(inNetNS(t, name, script(
		`echo "@host=$(`+look("host.containers.internal")+`)"`,
		`echo "@gateway=$(`+look("gateway.containers.internal")+`)"`,
		`echo "@docker=$(`+look("host.docker.internal")+`)"`,
		`echo "@upstream=$(`+look("probe."+testenv.TestDomain)+`)"`,
		fmt.Sprintf(`echo "@loopback=$(curl -s -m 10 http://%s:%d/)"`, gvHost, onHost.Port()),
		// podman in the VM publishes a container's port: no address in remote.
		fmt.Sprintf(`echo "@expose=$(curl -s -m 10 -o /dev/null -w '%%{http_code}' -d '{"local":"127.0.0.1:%d","remote":":8080","protocol":"tcp"}' http://gateway.containers.internal/services/forwarder/expose)"`, hostPort),
		`echo "@list=$(curl -s -m 10 http://gateway.containers.internal/services/forwarder/all)"`,
	)))
	checkMarkers(t, m, map[string]string{"host": gvHost, "gateway": gvGateway, "docker": gvHost,
		"upstream": testenv.TestDomainAddr, "loopback": "hello from the host", "expose": "200"}, "in the VM: ")
	if want := fmt.Sprintf(`"remote":"%s:8080"`, gvGuest); !strings.Contains(m["list"], want) {
		t.Errorf("forwarder/all %s: want the caller's address in remote (%s)", m["list"], want)
	}
	body, _ := exec.Command("curl", "-s", "-m", "10", fmt.Sprintf("http://127.0.0.1:%d/", hostPort)).Output()
	if string(body) != "hello from the VM\n" {
		t.Errorf("the port published from inside the VM: %q", body)
	}

	if b := sshBanner(fmt.Sprintf("127.0.0.1:%d", sshPort)); !strings.HasPrefix(b, "SSH-2.0-OpenSSH") {
		t.Errorf("-ssh-port %d: %q, want the VM's sshd", sshPort, b)
	}
	resp, err := unixHTTP(fwdSock).Get("http://d/_ping")
	if err != nil {
		t.Fatalf("-forward-sock %s: %v", fwdSock, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "OK" {
		t.Errorf("podman's API through -forward-sock: %q", b)
	}
	if log, _ := os.ReadFile(logFile); len(log) == 0 {
		t.Error("-log-file is empty")
	}

	// podman machine stops gvproxy by its pid file; it cleans up after itself.
	gv.Cmd.Process.Signal(unix.SIGTERM)
	select {
	case <-gv.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("gvproxy did not stop on SIGTERM")
	}
	for _, f := range []string{pidFile, qemuSock, fwdSock} {
		if _, err := os.Stat(f); err == nil {
			t.Errorf("%s left behind", f)
		}
	}
}

// TestGvproxyLima: what lima's user-v2 network does with gvproxy's API on
// -listen: poll /services/dhcp/leases for the VM's MAC, expose its SSH
// port on the host, add its names with /services/dns/add; and the other
// endpoints a user reads (/cam, /stats, /services/dns/all, /tunnel),
// the -notification socket, and a bad request's plain-text answer.
func TestGvproxyLima(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "ip", "busybox", "curl", "ssh-keygen", "/usr/sbin/sshd")
	bin := publicCopy(t, "gvproxy")
	dir := t.TempDir()
	qemuSock, apiSock, note := filepath.Join(dir, "qemu.sock"), filepath.Join(dir, "api.sock"), filepath.Join(dir, "notify.sock")
	notes, err := net.Listen("unix", note)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { notes.Close() })
	got := make(chan string, 8)
	go func() {
		for {
			c, err := notes.Accept()
			if err != nil {
				return
			}
			var n struct {
				Type string `json:"notification_type"`
			}
			json.NewDecoder(c).Decode(&n)
			c.Close()
			got <- n.Type
		}
	}()
	gv := testenv.StartProcess(t, "gvproxy", exec.Command(bin, "-ssh-port", "-1", "-listen", "unix://"+apiSock,
		"-listen-qemu", "unix://"+qemuSock, "-notification", "unix://"+note))
	const limaMAC = "52:55:55:12:34:56"
	name, lease := gvGuestNS(t, gv, qemuSock, limaMAC)
	ip := lease["ip"]
	if ip == "" || ip == gvGuest { // .2 is podman machine's static lease
		t.Errorf("lima's VM got %q", ip)
	}
	for _, want := range []string{"ready", "connection_established"} {
		select {
		case n := <-got:
			if n != want {
				t.Errorf("notification %q, want %q", n, want)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("no %q notification", want)
		}
	}
	c := unixHTTP(apiSock)
	get := func(path string) string {
		resp, err := c.Get("http://gvproxy" + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	post := func(path, body string) (int, string) {
		resp, err := c.Post("http://gvproxy"+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	var leases map[string]string
	json.Unmarshal([]byte(get("/services/dhcp/leases")), &leases)
	if leases[ip] != limaMAC {
		t.Errorf("/services/dhcp/leases %v: want %s → %s", leases, ip, limaMAC)
	}
	var cam map[string]int
	json.Unmarshal([]byte(get("/cam")), &cam)
	if _, ok := cam[limaMAC]; !ok || len(cam) != 1 {
		t.Errorf("/cam %v: want the VM's MAC alone", cam)
	}

	sshdIn(t, name, "")
	sshPort := testenv.FreePort(t, "tcp")
	if st, b := post("/services/forwarder/expose", fmt.Sprintf(`{"local":"127.0.0.1:%d","remote":"%s:22","protocol":"tcp"}`, sshPort, ip)); st != 200 {
		t.Fatalf("expose SSH: %d %q", st, b)
	}
	if b := sshBanner(fmt.Sprintf("127.0.0.1:%d", sshPort)); !strings.HasPrefix(b, "SSH-2.0-OpenSSH") {
		t.Errorf("lima's SSH port: %q", b)
	}
	// The same through /tunnel: "OK", then the VM's port.
	tc, err := net.Dial("unix", apiSock)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(tc, "GET /tunnel?ip=%s&port=22 HTTP/1.1\r\nHost: gvproxy\r\n\r\n", ip)
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(tc)
	ok := make([]byte, 2)
	io.ReadFull(r, ok)
	line, _ := r.ReadString('\n')
	tc.Close()
	if string(ok) != "OK" || !strings.HasPrefix(line, "SSH-2.0-OpenSSH") {
		t.Errorf("/tunnel: %q then %q", ok, line)
	}

	if st, b := post("/services/dns/add", fmt.Sprintf(`{"name":"internal.","records":[{"name":"host.lima","ip":"%s"},{"name":"lima-default","ip":"%s"}]}`, gvHost, ip)); st != 200 {
		t.Fatalf("dns add: %d %q", st, b)
	}
	// Into an existing zone: merged, gvproxy's own names stay.
	if st, b := post("/services/dns/add", fmt.Sprintf(`{"name":"containers.internal.","records":[{"name":"vm","ip":"%s"}]}`, ip)); st != 200 {
		t.Fatalf("dns add into containers.internal.: %d %q", st, b)
	}
	look := func(n string) string {
		return fmt.Sprintf(`busybox nslookup %s %s | awk '/^Address/ {a=$NF} END {print a}'`, n, gvGateway)
	}
	m := testenv.Markers(inNetNS(t, name, script(
		`echo "@vm=$(`+look("vm.containers.internal")+`)"`,
		`echo "@host=$(`+look("host.containers.internal")+`)"`,
		`echo "@hostlima=$(`+look("host.lima.internal")+`)"`,
		`echo "@self=$(`+look("lima-default.internal")+`)"`,
		// A cloud host's metadata service is out of the VM's reach.
		`curl -s -m 5 http://169.254.169.254/latest/meta-data/; echo "@metadata=$?"`,
	)))
	checkMarkers(t, m, map[string]string{"vm": ip, "host": gvHost, "hostlima": gvHost, "self": ip, "metadata": "7"}, "lima's names: ")
	if all := get("/services/dns/all"); !strings.Contains(all, `"host.lima"`) || !strings.Contains(all, `"containers.internal."`) {
		t.Errorf("/services/dns/all: %s", all)
	}
	if s := get("/stats"); !strings.Contains(s, `"BytesSent":`) || strings.Contains(s, `"BytesSent":0,`) || !strings.Contains(s, `"destination denied":1`) {
		t.Errorf("/stats: %s", s)
	}
	if st, b := post("/services/forwarder/expose", `{"local":`); st != 400 || strings.HasPrefix(b, "{") {
		t.Errorf("bad JSON: %d %q, want 400 in plain text", st, b)
	}
	if st, b := post("/services/forwarder/unexpose", fmt.Sprintf(`{"local":"127.0.0.1:%d","protocol":"tcp"}`, sshPort)); st != 200 {
		t.Errorf("unexpose: %d %q", st, b)
	}
	if b := sshBanner(fmt.Sprintf("127.0.0.1:%d", sshPort)); strings.HasPrefix(b, "SSH-") {
		t.Error("the SSH port is still published after unexpose")
	}
}

// TestGvproxyPodmanMachineQEMU: podman machine's gvproxy command line and
// its QEMU network arguments, with a real QEMU guest: the guest leases
// podman machine's address by its MAC, resolves gvproxy's names, reaches
// the host's loopback at .254, publishes a port through the forwarder at
// gateway.containers.internal with no address in "remote", and the
// host's -ssh-port reaches the guest's port 22.
func TestGvproxyPodmanMachineQEMU(t *testing.T) {
	testenv.RequireTools(t, "qemu-system-x86_64", "ssh-keygen", "curl")
	guest := vmtest.Build(t)
	bin := publicCopy(t, "gvproxy")
	dir := t.TempDir()
	key := filepath.Join(dir, "machine")
	mustOutput(t, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key)
	qemuSock := filepath.Join(dir, "qemu.sock")
	sshPort, hostPort := testenv.FreePort(t, "tcp"), testenv.FreePort(t, "tcp")
	gv := testenv.StartProcess(t, "gvproxy", exec.Command(bin, podmanMachineLine(sshPort, qemuSock, filepath.Join(dir, "podman.sock"),
		"/run/podman/podman.sock", key, filepath.Join(dir, "gvproxy.pid"), filepath.Join(dir, "gvproxy.log"))...))
	waitSocket(t, qemuSock, gv).Close()
	onHost, _ := testenv.HTTPFile(t, 16)
	look := func(n string) string {
		return fmt.Sprintf(`nslookup %s 2>/dev/null | awk '/^Address/ && !/#53/ {print $NF}' | tail -1`, n)
	}
	vm := vmtest.Start(t, guest, vmtest.Options{
		Netdev: streamNIC(qemuSock, gvGuestMAC),
		Files:  map[string][]byte{"/www/index.html": []byte("hello from the VM\n")},
		Script: strings.Join([]string{
			`echo "@host=$(` + look("host.containers.internal") + `)"`,
			`echo "@gateway=$(` + look("gateway.containers.internal") + `)"`,
			fmt.Sprintf(`echo "@loopback=$(wget -q -O - http://%s:%d/)"`, gvHost, onHost.Port()),
			`httpd -p 8080 -h /www && httpd -p 22 -h /www`,
			fmt.Sprintf(`wget -q -O /dev/null --post-data '{"local":"127.0.0.1:%d","remote":":8080","protocol":"tcp"}' http://gateway.containers.internal/services/forwarder/expose && echo "@expose=ok"`, hostPort),
			`echo "@published=yes"`,
			`sleep 600`,
		}, "\n"),
	})
	if _, err := vm.WaitFor("@published=yes", 3*time.Minute); err != nil {
		t.Fatalf("%v\n%s", err, vm.Console())
	}
	con := vm.Console()
	m := testenv.Markers(con)
	checkMarkers(t, m, map[string]string{"host": gvHost, "gateway": gvGateway, "loopback": "hello from the host", "expose": "ok"}, "in the VM: ")
	lease := map[string]string{}
	for _, l := range strings.Split(con, "\n") {
		if _, rest, ok := strings.Cut(l, vmtest.MarkerLease); ok {
			for _, f := range strings.Fields(rest) {
				k, v, _ := strings.Cut(f, "=")
				lease[k] = v
			}
		}
	}
	checkMarkers(t, lease, map[string]string{"ip": gvGuest, "router": gvGateway, "dns": gvGateway, "mtu": "1500"}, "lease ")
	for what, port := range map[string]int{"the port published from inside": hostPort, "-ssh-port": sshPort} {
		body, _ := exec.Command("curl", "-s", "-m", "10", fmt.Sprintf("http://127.0.0.1:%d/", port)).Output()
		if string(body) != "hello from the VM\n" {
			t.Errorf("%s (%d): %q", what, port, body)
		}
	}
	if t.Failed() {
		t.Logf("console:\n%s", con)
	}
}
