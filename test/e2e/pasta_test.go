package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/slipway-net/slipway/test/testenv"
)

// namedNS makes a network namespace under /run/netns (a bind-mounted
// namespace file, as podman makes its own) and returns its path; it is
// deleted when the test ends unless the test deleted it.
func namedNS(t *testing.T) (name, path string) {
	t.Helper()
	var b [4]byte
	rand.Read(b[:])
	name = "slw-" + hex.EncodeToString(b[:])
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	return name, "/run/netns/" + name
}

// withResolv runs argv in a mount namespace of its own where
// /etc/resolv.conf names ns as the only nameserver: the host's resolvers
// a program reads, under the test's control (a real dnsmasq), without
// touching the machine's.
func withResolv(t *testing.T, ns netip.Addr, argv ...string) *exec.Cmd {
	t.Helper()
	conf := filepath.Join(publicDir(t), "resolv.conf")
	if err := os.WriteFile(conf, []byte("nameserver "+ns.String()+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sh := `mount --bind "$0" /etc/resolv.conf && exec "$@"`
	return exec.Command("unshare", append([]string{"--mount", "--propagation", "private", "sh", "-c", sh, conf}, argv...)...)
}

// inNetNS runs a shell script in the named namespace.
func inNetNS(t *testing.T, name, script string) string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", name, "sh", "-c", script).CombinedOutput()
	if err != nil {
		t.Logf("in %s: %v\n%s", name, err, out)
	}
	return string(out)
}

// pidFromFile waits for a pid file and returns its process id.
func pidFromFile(t *testing.T, path string) int {
	t.Helper()
	for i := 0; i < 100; i++ {
		if b, err := os.ReadFile(path); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				return pid
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no pid in %s", path)
	return 0
}

// waitGone waits for a process to exit (it is not our child).
func waitGone(pid int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err != nil {
			return true
		}
		b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if f := strings.Fields(string(b)); len(f) > 2 && f[2] == "Z" {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// killPidFile ends the daemon whose pid a file holds (cleanup).
func killPidFile(path string) {
	if b, err := os.ReadFile(path); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 1 {
			if p, err := os.FindProcess(pid); err == nil {
				p.Kill()
			}
		}
	}
}

// hostNet is the host's addressing as `ip` shows it: what pasta copies.
type hostNet struct{ ifname, addr4, gw4, addr6, gw6 string }

func readHostNet(t *testing.T) hostNet {
	t.Helper()
	var h hostNet
	out, _ := exec.Command("ip", "-4", "route", "show", "default").Output()
	if f := strings.Fields(string(out)); len(f) >= 5 && f[0] == "default" && f[1] == "via" {
		h.gw4, h.ifname = f[2], f[4]
	}
	if h.ifname == "" {
		t.Skip("the host has no IPv4 default route for pasta to copy")
	}
	h.addr4 = firstAddr(string(mustOutput(t, "ip", "-4", "-o", "addr", "show", "dev", h.ifname, "scope", "global")))
	out, _ = exec.Command("ip", "-6", "route", "show", "default").Output()
	if f := strings.Fields(string(out)); len(f) >= 5 && f[0] == "default" && f[1] == "via" && f[4] == h.ifname {
		h.gw6 = f[2]
		h.addr6 = firstAddr(string(mustOutput(t, "ip", "-6", "-o", "addr", "show", "dev", h.ifname, "scope", "global")))
	}
	return h
}

func mustOutput(t *testing.T, name string, args ...string) []byte {
	t.Helper()
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		t.Fatalf("%s %v: %v", name, args, err)
	}
	return out
}

var inetRe = regexp.MustCompile(`inet6? (\S+)`)

func firstAddr(ipOutput string) string {
	if m := inetRe.FindStringSubmatch(ipOutput); m != nil {
		return m[1]
	}
	return ""
}

// nsView is what a user (and podman) reads of a namespace's network.
func nsView(t *testing.T, name string) map[string]string {
	t.Helper()
	return testenv.Markers(inNetNS(t, name, script(
		`dev=$(ip -o link show | awk -F': ' '$2 != "lo" {print $2; exit}')`,
		`echo "@ifname=$dev"`,
		`echo "@mtu=$(cat /sys/class/net/$dev/mtu)"`,
		`echo "@addr4=$(ip -4 -o addr show dev $dev scope global | awk '{print $4}')"`,
		`echo "@addr6=$(ip -6 -o addr show dev $dev scope global | awk '{print $4}' | tr '\n' ' ')"`,
		`echo "@route4=$(ip -4 route show default | awk '{print $3}')"`,
		`echo "@route6=$(ip -6 route show default | awk '{print $3}')"`,
	)))
}

// podman5Line is podman 5's pasta command line for a container
// (../shared/callers.md): one published port, the rootless netns's --pid.
func podman5Line(hostPort int, netns, pidFile string) []string {
	return []string{"--config-net", "-t", fmt.Sprintf("%d-%d:80-80", hostPort, hostPort), "--dns-forward", "169.254.1.1",
		"-u", "none", "-T", "none", "-U", "none", "--no-map-gw", "--quiet", "--netns", netns,
		"--map-guest-addr", "169.254.1.2", "--pid", pidFile}
}

// TestPastaPodman5CommandLine: podman 5's exact pasta command line, run
// against a namespace the way podman runs it (waiting for all of pasta's
// output, then reading the namespace), served by slipway linked as pasta.
// The container gets the host's addresses and routes, resolves through
// 169.254.1.1, reaches the host at 169.254.1.2 (host.containers.internal
// in podman's /etc/hosts), serves its published port on IPv4 and IPv6,
// and slipway exits when podman deletes the namespace.
func TestPastaPodman5CommandLine(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "ip", "unshare", "curl", "busybox", "dnsmasq")
	host := readHostNet(t)
	bin := publicCopy(t, "pasta")
	dns := testenv.Dnsmasq53(t)
	name, path := namedNS(t)
	onHost, _ := testenv.HTTPFileOn(t, testenv.HostAddr(t).String()+":0", 16)
	www := publicDir(t)
	os.WriteFile(filepath.Join(www, "index.html"), []byte("hello from the container\n"), 0o644)
	port := testenv.FreePort(t, "tcp")
	pidFile := filepath.Join(publicDir(t), "pasta.pid")
	t.Cleanup(func() { killPidFile(pidFile) })

	cmd := withResolv(t, dns.Addr(), append([]string{bin}, podman5Line(port, path, pidFile)...)...)
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("pasta's foreground process did not return (a daemon holding its output?)")
	}
	if err != nil || len(out) != 0 {
		t.Fatalf("pasta: %v, output %q (want exit 0, nothing printed with --quiet)", err, out)
	}
	pid := pidFromFile(t, pidFile)

	v := nsView(t, name)
	want := map[string]string{"ifname": host.ifname, "mtu": "65520", "addr4": host.addr4, "route4": host.gw4}
	if host.addr6 != "" {
		want["addr6"] = host.addr6
		want["route6"] = host.gw6
	}
	checkMarkers(t, v, want, "the namespace as pasta configures it")

	srv := exec.Command("ip", "netns", "exec", name, "busybox", "httpd", "-f", "-p", "80", "-h", www)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
	m := testenv.Markers(inNetNS(t, name, script(
		fmt.Sprintf(`echo "@host=$(curl -s -m 10 http://169.254.1.2:%d/)"`, onHost.Port()),
		fmt.Sprintf(`echo "@dns=$(busybox nslookup probe.%s 169.254.1.1 | awk '/^Address/ {a=$NF} END {print a}')"`, testenv.TestDomain),
	)))
	checkMarkers(t, m, map[string]string{"host": "hello from the host", "dns": testenv.TestDomainAddr}, "from the container")
	for _, u := range []string{"http://127.0.0.1", "http://[::1]"} {
		var body []byte
		for i := 0; i < 50 && len(body) == 0; i++ {
			body, _ = exec.Command("curl", "-s", "-m", "2", fmt.Sprintf("%s:%d/", u, port)).Output()
			time.Sleep(50 * time.Millisecond)
		}
		if string(body) != "hello from the container\n" {
			if u == "http://[::1]" && host.addr6 == "" {
				continue
			}
			t.Errorf("published port at %s:%d: %q", u, port, body)
		}
	}

	// podman removes the namespace; pasta quits by itself.
	srv.Process.Kill()
	srv.Wait()
	if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns del: %v %s", err, out)
	}
	if !waitGone(pid, 10*time.Second) {
		t.Fatal("slipway's pasta still runs after its namespace was deleted")
	}
}

// TestPastaSameAsPasta runs the same command line through the real pasta
// and through slipway, each on a namespace of its own, and compares what
// podman and a user would read: interface name, MTU, addresses, routes.
func TestPastaSameAsPasta(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "ip", "busybox")
	// The current pasta build beside the project (../shared/peers); the
	// Debian one (2023) lacks --map-guest-addr.
	real := ""
	for _, p := range []string{"../../../shared/peers/passt", "/work/shared/peers/passt"} {
		if _, err := os.Stat(p); err == nil {
			real, _ = filepath.Abs(p)
			break
		}
	}
	if real == "" {
		t.Skip("no current pasta build (../shared/peers/passt) to compare with")
	}
	realPasta := filepath.Join(publicDir(t), "pasta")
	if err := os.Symlink(real, realPasta); err != nil {
		t.Fatal(err)
	}
	ours := publicCopy(t, "pasta")
	views := map[string]map[string]string{}
	for _, bin := range []string{realPasta, ours} {
		name, path := namedNS(t)
		pidFile := filepath.Join(publicDir(t), "pid")
		t.Cleanup(func() { killPidFile(pidFile) })
		args := podman5Line(testenv.FreePort(t, "tcp"), path, pidFile)
		if bin == realPasta {
			args = append(args, "--runas", "0") // as root it would drop to nobody
		}
		if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", bin, err, out)
		}
		pidFromFile(t, pidFile)
		views[bin] = nsView(t, name)
	}
	if views[realPasta]["addr4"] == "" {
		t.Fatalf("pasta's namespace: %v", views[realPasta])
	}
	t.Logf("pasta: %v", views[realPasta])
	checkMarkers(t, views[ours], views[realPasta], "slipway's namespace against pasta's")

	// An option pasta does not know reads the same from both: podman
	// looks for this text to retry without --map-guest-addr.
	for _, bin := range []string{realPasta, ours} {
		out, err := exec.Command(bin, "--map-guest-adr", "169.254.1.2", "--netns", "x").CombinedOutput()
		if code := exitCode(err); code != 1 || !strings.Contains(string(out), "unrecognized option '--map-guest-adr'") {
			t.Errorf("%s with an unknown option: exit %d, %q", bin, code, out)
		}
	}
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return -1
}

// ifaceMarkers prints an interface's IPv4 address, default route, MTU
// and number of global IPv6 addresses as markers.
func ifaceMarkers(dev string) string {
	return script(
		`echo "@addr=$(ip -4 -o addr show `+dev+` | awk '{print $4}')"`,
		`echo "@route=$(ip -4 route show default | awk '{print $3}')"`,
		`echo "@mtu=$(ip -o link show `+dev+` | sed 's/.*mtu \([0-9]*\).*/\1/')"`,
		`echo "@v6=$(ip -6 -o addr show dev `+dev+` scope global | wc -l)"`,
	)
}

// rootlesskitLine is rootlesskit's pasta driver's command line
// (../shared/callers.md), with implicit port forwarding (auto), ending in
// the target (a PID, or --userns and --netns).
func rootlesskitLine(target ...string) []string {
	return append([]string{"--stderr", "--ns-ifname=tap0", "--mtu=65520", "--config-net", "--address=10.0.2.100",
		"--netmask=24", "--gateway=10.0.2.2", "--dns-forward=10.0.2.3", "--ipv4-only",
		"--tcp-ports=auto", "--udp-ports=auto", "--host-lo-to-ns-lo"}, target...)
}

// TestPastaRootlesskitCommandLine: rootlesskit's pasta driver's exact
// command lines, run as an unprivileged user against its own user and
// network namespaces: its probes succeed, the namespace gets slirp4netns's
// addressing, reaches the host's loopback at the gateway and DNS at .3,
// and a server started in the namespace later is published on the host
// (auto) and withdrawn when it stops.
func TestPastaRootlesskitCommandLine(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "unshare", "nsenter", "setpriv", "curl", "busybox", "dnsmasq")
	openTun(t)
	bin := publicCopy(t, "pasta")
	for _, probe := range [][]string{{"--version"}, {"--host-lo-to-ns-lo", "--version"}} {
		if out, err := exec.Command(bin, probe...).CombinedOutput(); err != nil {
			t.Fatalf("rootlesskit's probe %v: %v %s", probe, err, out)
		}
	}
	dns := testenv.Dnsmasq53(t)
	web, _ := testenv.HTTPFile(t, 16)
	pid := userNSHolder(t)
	cmd := withResolv(t, dns.Addr(), append([]string{"setpriv"}, append(nobody, append([]string{bin}, rootlesskitLine(pid)...)...)...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("pasta: %v\n%s", err, out)
	}
	m := testenv.Markers(inUserNS(t, pid, script(
		ifaceMarkers("tap0"),
		fmt.Sprintf(`echo "@loopback=$(curl -s -m 10 http://10.0.2.2:%d/)"`, web.Port()),
		fmt.Sprintf(`echo "@dns=$(busybox nslookup probe.%s 10.0.2.3 | awk '/^Address/ {a=$NF} END {print a}')"`, testenv.TestDomain),
	)))
	checkMarkers(t, m, map[string]string{"addr": "10.0.2.100/24", "route": "10.0.2.2", "mtu": "65520", "v6": "0",
		"loopback": "hello from the host", "dns": testenv.TestDomainAddr}, "rootlesskit's namespace")

	// auto: a server started in the namespace appears on the host.
	port := testenv.FreePort(t, "tcp")
	www := publicDir(t)
	os.WriteFile(filepath.Join(www, "index.html"), []byte("auto\n"), 0o644)
	srv := exec.Command("nsenter", "--target", pid, "--net", "--user", "--preserve-credentials",
		"busybox", "httpd", "-f", "-p", strconv.Itoa(port), "-h", www)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
	get := func() string {
		o, _ := exec.Command("curl", "-s", "-m", "2", fmt.Sprintf("http://127.0.0.1:%d/", port)).Output()
		return string(o)
	}
	var body string
	for i := 0; i < 100 && body != "auto\n"; i++ {
		body = get()
		time.Sleep(100 * time.Millisecond)
	}
	if body != "auto\n" {
		t.Fatalf("a port bound in the namespace was not forwarded from the host: %q", body)
	}
	srv.Process.Kill()
	srv.Wait()
	refused := false
	for i := 0; i < 100 && !refused; i++ {
		err := exec.Command("curl", "-s", "-m", "2", fmt.Sprintf("http://127.0.0.1:%d/", port)).Run()
		refused = exitCode(err) == 7 // could not connect: the host port is closed again
		time.Sleep(100 * time.Millisecond)
	}
	if !refused {
		t.Fatal("the host port stayed open after the namespace's server went away")
	}
}

// TestPastaRootlesskitDetachedNetNS: rootlesskit's other form, --userns
// and --netns PATH (its detached namespace, a bind-mounted file): served,
// and slipway quits when the file goes away.
func TestPastaRootlesskitDetachedNetNS(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "unshare", "nsenter", "setpriv", "mount", "umount")
	openTun(t)
	bin := publicCopy(t, "pasta")
	pid := userNSHolder(t)
	nsFile := filepath.Join(publicDir(t), "netns")
	os.WriteFile(nsFile, nil, 0o644)
	if out, err := exec.Command("mount", "--bind", "/proc/"+pid+"/ns/net", nsFile).CombinedOutput(); err != nil {
		t.Fatalf("bind the namespace: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", nsFile).Run() })
	pidFile := filepath.Join(publicDir(t), "pid")
	t.Cleanup(func() { killPidFile(pidFile) })
	args := append(rootlesskitLine("--userns=/proc/"+pid+"/ns/user", "--netns="+nsFile), "--pid", pidFile)
	if out, err := exec.Command("setpriv", append(nobody, append([]string{bin}, args...)...)...).CombinedOutput(); err != nil {
		t.Fatalf("pasta: %v\n%s", err, out)
	}
	daemon := pidFromFile(t, pidFile)
	o, _ := exec.Command("nsenter", "--target", pid, "--net", "--user", "--preserve-credentials",
		"ip", "-4", "-o", "addr", "show", "tap0").CombinedOutput()
	if !strings.Contains(string(o), "10.0.2.100/24") {
		t.Fatalf("tap0: %s", o)
	}
	exec.Command("umount", nsFile).Run()
	os.Remove(nsFile)
	if !waitGone(daemon, 10*time.Second) {
		t.Fatal("slipway's pasta still runs after the namespace file went away")
	}
}

// TestPastaFailsAsPasta: a target that does not exist is a failure podman
// can read: exit status 1 and the reason on stderr, nothing left running.
func TestPastaFailsAsPasta(t *testing.T) {
	testenv.RequireRoot(t)
	bin := publicCopy(t, "pasta")
	out, err := exec.Command(bin, "--config-net", "--quiet", "--netns", "/run/netns/slw-does-not-exist").CombinedOutput()
	if exitCode(err) != 1 || !strings.Contains(string(out), "slw-does-not-exist") || strings.Count(strings.TrimSpace(string(out)), "\n") != 0 {
		t.Fatalf("exit %d, %q: want 1 and one line naming the namespace", exitCode(err), out)
	}
	// A port taken on the host fails in the daemon; the foreground tells.
	_, path := namedNS(t)
	l := testenv.TCPServer(t, func(c net.Conn) { c.Close() })
	args := []string{"--config-net", "--quiet", "-t", fmt.Sprintf("127.0.0.1/%d", l.Port()), "--netns", path}
	out, err = exec.Command(bin, args...).CombinedOutput()
	if exitCode(err) != 1 || !strings.Contains(string(out), strconv.Itoa(int(l.Port()))) {
		t.Fatalf("a taken port: exit %d, %q", exitCode(err), out)
	}
}

// TestPastaOptions: pasta's other options a user gives by hand, in the
// foreground (-f) with debug output on stderr (-d --stderr): the
// namespace gets the address, netmask, gateway, interface name and MTU
// given (-a -n -g --ns-ifname --mtu, --ipv4-only); the gateway and a
// --map-host-loopback address reach the host's loopback; --dns-forward
// is where DNS answers; -T and -U carry the namespace's loopback ports to
// the host's. A second run takes only IPv6 (--ipv6-only).
func TestPastaOptions(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "ip", "busybox", "curl", "socat", "dnsmasq")
	bin := publicCopy(t, "pasta")
	dns := testenv.Dnsmasq53(t)
	web, _ := testenv.HTTPFile(t, 16)
	echo := testenv.UDPEcho(t)
	name, path := namedNS(t)
	args := []string{"--config-net", "-f", "-d", "--stderr", "-a", "10.5.0.2", "-n", "255.255.255.0", "-g", "10.5.0.1",
		"--ns-ifname", "eth7", "--mtu", "1400", "--ipv4-only", "--map-host-loopback", "10.5.0.9", "--dns-forward", "10.5.0.3",
		"-t", "none", "-u", "none", "-T", strconv.Itoa(int(web.Port())), "-U", strconv.Itoa(int(echo.Port())), "--netns", path}
	p := testenv.StartProcess(t, "pasta", withResolv(t, dns.Addr(), append([]string{bin}, args...)...))
	configured := func() bool {
		out, _ := exec.Command("ip", "netns", "exec", name, "ip", "-4", "-o", "addr", "show", "eth7").Output()
		return strings.Contains(string(out), "10.5.0.2/24")
	}
	for i := 0; i < 200 && !configured(); i++ {
		select {
		case <-p.Done():
			t.Fatalf("pasta -f exited: %v\n%s", p.Err(), p.Output())
		case <-time.After(50 * time.Millisecond):
		}
	}
	m := testenv.Markers(inNetNS(t, name, script(
		ifaceMarkers("eth7"),
		fmt.Sprintf(`echo "@gw=$(curl -s -m 10 http://10.5.0.1:%d/)"`, web.Port()),
		fmt.Sprintf(`echo "@maplo=$(curl -s -m 10 http://10.5.0.9:%d/)"`, web.Port()),
		fmt.Sprintf(`echo "@dns=$(busybox nslookup probe.%s 10.5.0.3 | awk '/^Address/ {a=$NF} END {print a}')"`, testenv.TestDomain),
		fmt.Sprintf(`echo "@T=$(curl -s -m 10 http://127.0.0.1:%d/)"`, web.Port()),
		fmt.Sprintf(`echo "@U=$(echo hi | socat -T 3 - UDP:127.0.0.1:%d)"`, echo.Port()),
	)))
	checkMarkers(t, m, map[string]string{"addr": "10.5.0.2/24", "route": "10.5.0.1", "mtu": "1400", "v6": "0",
		"gw": "hello from the host", "maplo": "hello from the host", "dns": testenv.TestDomainAddr,
		"T": "hello from the host", "U": "echo:hi"}, "pasta's options: ")
	select {
	case <-p.Done():
		t.Fatalf("pasta -f did not stay in the foreground: %v", p.Err())
	default:
	}
	if !strings.Contains(p.Output(), "level=DEBUG") {
		t.Errorf("-d --stderr: no debug lines on stderr:\n%s", p.Output())
	}
	p.Stop()

	name6, path6 := namedNS(t)
	p6 := testenv.StartProcess(t, "pasta -6", exec.Command(bin, "--config-net", "-f", "--ipv6-only", "-a", "fd00:5::2", "-g", "fd00:5::1",
		"-t", "none", "-u", "none", "--netns", path6))
	var v6 string
	for i := 0; i < 200 && !strings.Contains(v6, "fd00:5::2/64"); i++ {
		out, _ := exec.Command("ip", "netns", "exec", name6, "ip", "-o", "addr", "show", "scope", "global").Output()
		v6 = string(out)
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(v6, "fd00:5::2/64") || strings.Contains(v6, "inet ") {
		t.Errorf("--ipv6-only: %q, want fd00:5::2/64 and no IPv4 address", v6)
	}
	p6.Stop()
}

// realPastaBin is the current pasta build beside the project
// (../shared/peers), linked as pasta in a directory any user can read, or
// "" if there is none.
func realPastaBin(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"../../../shared/peers/passt", "/work/shared/peers/passt"} {
		if _, err := os.Stat(p); err == nil {
			abs, _ := filepath.Abs(p)
			link := filepath.Join(publicDir(t), "pasta")
			if err := os.Symlink(abs, link); err != nil {
				t.Fatal(err)
			}
			return link
		}
	}
	return ""
}

// nsAnswerer runs a socat server in the user and network namespaces of
// pid, on listen, that answers every connection (tcp) or datagram (udp)
// with "NAME peer=ADDR", ADDR the peer it sees.
func nsAnswerer(t *testing.T, pid, proto string, listen netip.AddrPort, name string) {
	t.Helper()
	kind := map[string]string{"tcp": "TCP-LISTEN", "udp": "UDP-RECVFROM"}[proto]
	if listen.Addr().Is6() {
		kind = map[string]string{"tcp": "TCP6-LISTEN", "udp": "UDP6-RECVFROM"}[proto]
	}
	bind := listen.Addr().String()
	if listen.Addr().Is6() {
		bind = "[" + bind + "]"
	}
	srv := exec.Command("nsenter", "--target", pid, "--net", "--user", "--preserve-credentials", "socat",
		fmt.Sprintf("%s:%d,bind=%s,reuseaddr,fork", kind, listen.Port(), bind),
		"SYSTEM:echo "+name+" peer=$SOCAT_PEERADDR")
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
}

// askFromHost connects to (tcp) or sends a datagram to (udp) addr from the host
// and returns the answer as "NAME PEER" (PEER normalised), or "" when
// nothing answers.
func askFromHost(proto, addr string) string {
	c, err := net.DialTimeout(proto, addr, 3*time.Second)
	if err != nil {
		return ""
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	var b []byte
	if proto == "udp" {
		c.Write([]byte("x\n"))
		buf := make([]byte, 512)
		n, _ := c.Read(buf)
		b = buf[:n]
	} else {
		b, _ = io.ReadAll(c)
	}
	name, peer, ok := strings.Cut(strings.TrimSpace(string(b)), " peer=")
	if !ok {
		return ""
	}
	if a, err := netip.ParseAddr(strings.Trim(peer, "[]")); err == nil {
		peer = a.Unmap().String()
	}
	return name + " " + peer
}

// loopbackView starts bin (pasta or slipway as pasta) as nobody with
// args and the target of a fresh user namespace; there, servers named lo
// on the loopback and eth on addr (each port for TCP and UDP), and reads
// from the host what answers at each probe (name: proto, address and
// port): those named ready until they answer (automatic forwards take a
// moment), at most 10 s each, then the others once; and stops bin.
func loopbackView(t *testing.T, bin string, args []string, lo, addr netip.AddrPort, probes map[string]string, ready []string) map[string]string {
	t.Helper()
	pid := userNSHolder(t)
	pidFile := filepath.Join(publicDir(t), "pid")
	t.Cleanup(func() { killPidFile(pidFile) })
	args = append(append(args, "--pid", pidFile), pid)
	if out, err := exec.Command("setpriv", append(nobody, append([]string{bin}, args...)...)...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", bin, err, out)
	}
	daemon := pidFromFile(t, pidFile)
	for _, proto := range []string{"tcp", "udp"} {
		nsAnswerer(t, pid, proto, lo, "lo")
		nsAnswerer(t, pid, proto, addr, "eth")
	}
	view := map[string]string{}
	for _, name := range ready {
		proto, a, _ := strings.Cut(probes[name], " ")
		for deadline := time.Now().Add(10 * time.Second); view[name] == "" && time.Now().Before(deadline); {
			if view[name] = askFromHost(proto, a); view[name] == "" {
				time.Sleep(100 * time.Millisecond)
			}
		}
	}
	// The others once the ready ones have answered: their ports are
	// forwarded by then, so silence is the answer.
	for name, p := range probes {
		if _, ok := view[name]; !ok {
			proto, a, _ := strings.Cut(p, " ")
			view[name] = askFromHost(proto, a)
		}
	}
	// The next run binds the same host ports.
	killPidFile(pidFile)
	if !waitGone(daemon, 10*time.Second) {
		t.Fatalf("%s did not exit when killed", bin)
	}
	return view
}

// lowFreePort is a port free for TCP and UDP on the host, below the
// ephemeral range: pasta's automatic forwards leave that range out.
func lowFreePort(t *testing.T) int {
	t.Helper()
	for range 100 {
		var b [2]byte
		rand.Read(b[:])
		port := 20000 + int(b[0])<<8%12000 + int(b[1])
		l, err := net.Listen("tcp", ":"+strconv.Itoa(port))
		if err != nil {
			continue
		}
		u, err := net.ListenPacket("udp", ":"+strconv.Itoa(port))
		l.Close()
		if err == nil {
			u.Close()
			return port
		}
	}
	t.Fatal("no free port below the ephemeral range")
	return 0
}

// TestPastaHostLoToNsLo: rootlesskit's command line (automatic forwards
// and --host-lo-to-ns-lo) through slipway and through the real pasta,
// each against a user namespace of its own with servers on its loopback
// and on its address: a client on the host's loopback reaches the
// namespace's loopback server, TCP and UDP, as 127.0.0.1, and not the
// server bound to the namespace's address alone; a client at the host's
// own address still reaches that one, as itself. Then the same over IPv6
// (::1) with the host's addressing and -t/-u PORT, where the host has
// IPv6.
func TestPastaHostLoToNsLo(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "unshare", "nsenter", "setpriv", "socat")
	openTun(t)
	ours := publicCopy(t, "pasta")
	real := realPastaBin(t)
	hostAddr := testenv.HostAddr(t)
	loPort, ethPort := lowFreePort(t), lowFreePort(t)
	at := func(a string, port int) string { return net.JoinHostPort(a, strconv.Itoa(port)) }
	probes := map[string]string{
		"tcp lo":        "tcp " + at("127.0.0.1", loPort),
		"tcp lo->eth":   "tcp " + at("127.0.0.1", ethPort),
		"tcp addr->eth": "tcp " + at(hostAddr.String(), ethPort),
		"udp lo":        "udp " + at("127.0.0.1", loPort),
		"udp lo->eth":   "udp " + at("127.0.0.1", ethPort),
		"udp addr->eth": "udp " + at(hostAddr.String(), ethPort),
	}
	want := map[string]string{"tcp lo": "lo 127.0.0.1", "tcp lo->eth": "", "tcp addr->eth": "eth " + hostAddr.String(),
		"udp lo": "lo 127.0.0.1", "udp lo->eth": "", "udp addr->eth": "eth " + hostAddr.String()}
	lo := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(loPort))
	eth := netip.AddrPortFrom(netip.MustParseAddr("10.0.2.100"), uint16(ethPort))
	line := rootlesskitLine()
	ready := []string{"tcp lo", "tcp addr->eth", "udp lo", "udp addr->eth"}
	got := loopbackView(t, ours, line, lo, eth, probes, ready)
	checkMarkers(t, got, want, "slipway, rootlesskit's line: ")
	if real != "" {
		checkMarkers(t, got, loopbackView(t, real, line, lo, eth, probes, ready), "slipway against pasta, rootlesskit's line: ")
	} else {
		t.Log("no current pasta build (../shared/peers/passt) to compare with")
	}

	host := readHostNet(t)
	if host.addr6 == "" {
		t.Skip("the host has no IPv6 default route: ::1 not tried")
	}
	addr6, _ := netip.ParsePrefix(host.addr6)
	probes6 := map[string]string{"tcp ::1": "tcp " + at("::1", loPort), "tcp ::1->eth": "tcp " + at("::1", ethPort),
		"udp ::1": "udp " + at("::1", loPort), "udp ::1->eth": "udp " + at("::1", ethPort)}
	want6 := map[string]string{"tcp ::1": "lo ::1", "tcp ::1->eth": "", "udp ::1": "lo ::1", "udp ::1->eth": ""}
	ports := fmt.Sprintf("%d,%d", loPort, ethPort)
	line6 := []string{"--config-net", "--host-lo-to-ns-lo", "-t", ports, "-u", ports}
	lo6 := netip.AddrPortFrom(netip.IPv6Loopback(), uint16(loPort))
	eth6 := netip.AddrPortFrom(addr6.Addr(), uint16(ethPort))
	ready6 := []string{"tcp ::1", "udp ::1"}
	got6 := loopbackView(t, ours, line6, lo6, eth6, probes6, ready6)
	checkMarkers(t, got6, want6, "slipway over IPv6: ")
	if real != "" {
		checkMarkers(t, got6, loopbackView(t, real, line6, lo6, eth6, probes6, ready6), "slipway against pasta over IPv6: ")
	}
}

// dnsHooks are DHCP clients' hook scripts that print the lease's address
// and DNS servers as markers, and change nothing.
var dnsHooks = map[string]string{
	"udhcpc-dns.sh": `#!/bin/sh
case "$1" in bound|renew) echo "@lease4=${ip:-}"; echo "@dns4=${dns:-}" ;; esac
exit 0
`,
	"dhclient-dns.sh": `#!/bin/sh
case "$reason" in BOUND6|RENEW6|REBIND6|REBOOT6) echo "@lease6=${new_ip6_address:-}"; echo "@dns6=${new_dhcp6_name_servers:-}" ;; esac
exit 0
`,
}

// dnsView starts bin (pasta, or slipway as pasta) with args on a named
// namespace of its own, in a mount namespace where /etc/resolv.conf is
// resolv, and returns what the namespace's DHCP clients are told: busybox
// udhcpc (lease4, dns4), ISC dhclient -6 where v6 (lease6, dns6), and
// with ra rdisc6's router advertisement (rdnss, its DNS servers).
func dnsView(t *testing.T, bin string, args []string, resolv string, v6, ra bool) map[string]string {
	t.Helper()
	dir := publicDir(t)
	for name, body := range dnsHooks {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	name, path := namedNS(t)
	pidFile := filepath.Join(dir, "pid")
	t.Cleanup(func() { killPidFile(pidFile) })
	full := append([]string{bin, "--config-net", "--quiet", "-I", "eth9", "-t", "none", "-u", "none", "-T", "none", "-U", "none",
		"--pid", pidFile, "--netns", path}, args...)
	sh := `mount --bind "$0" /etc/resolv.conf && exec "$@"`
	cmd := exec.Command("unshare", append([]string{"--mount", "--propagation", "private", "sh", "-c", sh, resolv}, full...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", bin, args, err, out)
	}
	daemon := pidFromFile(t, pidFile)
	lines := []string{
		"d=" + dir,
		`timeout 20 busybox udhcpc -i eth9 -n -q -f -t 5 -T 1 -s $d/udhcpc-dns.sh 2>/dev/null`,
	}
	if v6 || ra {
		// Neither client sends from a tentative address.
		lines = append(lines, `for i in $(seq 100); do [ -z "$(ip -6 addr show dev eth9 tentative)" ] && break; sleep 0.1; done`)
	}
	if v6 {
		// dhclient goes to the background once it has its lease, out
		// of timeout's reach; left running, every run of this test kept
		// one (167 were found after a day of runs). Its pid file ends it.
		lines = append(lines, `timeout 20 dhclient -6 -1 -lf $d/leases6 -pf $d/dhclient6.pid -sf $d/dhclient-dns.sh eth9 2>/dev/null`,
			`[ -s $d/dhclient6.pid ] && kill -KILL $(cat $d/dhclient6.pid) 2>/dev/null; true`)
	}
	if ra {
		lines = append(lines, `echo "@rdnss=$(rdisc6 -1 -w 3000 eth9 2>/dev/null | sed -n 's/^ *Recursive DNS server *: *//p' | tr '\n' ' ' | sed 's/ $//')"`)
	}
	view := testenv.Markers(inNetNS(t, name, script(lines...)))
	killPidFile(pidFile)
	if !waitGone(daemon, 10*time.Second) {
		t.Fatalf("%s did not exit when killed", bin)
	}
	return view
}

// TestPastaDNS: what DHCP clients in the namespace are told of DNS
// servers (udhcpc's option 6, dhclient -6's DHCPv6 name servers), through
// slipway and the real pasta with the same command lines: none by
// default nor with -D alone; with --dhcp-dns, -D's addresses (each
// family its own), none after a last -D none, and without -D the host's
// nameservers (/etc/resolv.conf). slipway's router advertisements name
// the same IPv6 servers (pasta sends none with --config-net).
func TestPastaDNS(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "ip", "busybox", "dhclient", "rdisc6", "unshare", "mount")
	ours := publicCopy(t, "pasta")
	real := realPastaBin(t)
	v6 := readHostNet(t).addr6 != ""
	resolv := filepath.Join(publicDir(t), "resolv.conf")
	if err := os.WriteFile(resolv, []byte("nameserver 192.0.2.77\nnameserver 2001:db8::77\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ args, dns4, dns6 string }{
		{"", "", ""},
		{"-D 192.0.2.53 -D 2001:db8::53", "", ""},
		{"--dhcp-dns -D 192.0.2.53 -D 198.51.100.53 -D 2001:db8::53", "192.0.2.53 198.51.100.53", "2001:db8::53"},
		{"--dhcp-dns -D 192.0.2.53 -D none", "", ""},
		{"--dhcp-dns", "192.0.2.77", "2001:db8::77"},
	} {
		args := strings.Fields(c.args)
		got := dnsView(t, ours, args, resolv, v6, v6)
		want := map[string]string{"dns4": c.dns4}
		if got["lease4"] == "" {
			t.Errorf("%q: udhcpc got no lease from slipway: %v", c.args, got)
		}
		if v6 {
			want["dns6"], want["rdnss"] = c.dns6, c.dns6
			if got["lease6"] == "" {
				t.Errorf("%q: dhclient -6 got no lease from slipway: %v", c.args, got)
			}
		}
		checkMarkers(t, got, want, fmt.Sprintf("slipway %q: ", c.args))
		if real == "" {
			continue
		}
		theirs := dnsView(t, real, append([]string{"--runas", "0"}, args...), resolv, v6, false)
		delete(got, "rdnss")
		delete(got, "lease4") // the namespace's address: the host's for both
		delete(theirs, "lease4")
		delete(got, "lease6") // DHCPv6 hands out other addresses
		delete(theirs, "lease6")
		checkMarkers(t, got, theirs, fmt.Sprintf("slipway against pasta %q: ", c.args))
	}
	if real == "" {
		t.Log("no current pasta build (../shared/peers/passt) to compare with")
	}
}
