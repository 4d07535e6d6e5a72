package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/slipway-net/slipway/test/testenv"
)

// openTun makes /dev/net/tun usable by unprivileged users for the test,
// as Debian ships it (mode 0666).
func openTun(t *testing.T) {
	t.Helper()
	fi, err := os.Stat("/dev/net/tun")
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o666 {
		os.Chmod("/dev/net/tun", 0o666)
		t.Cleanup(func() { os.Chmod("/dev/net/tun", fi.Mode().Perm()) })
	}
}

// publicDir is a temporary directory any user may use (t.TempDir's
// parents are private to root).
func publicDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "slipway-pub-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o777)
	return dir
}

// publicCopy copies slipway where any user may run it, as name.
func publicCopy(t *testing.T, name string) string {
	t.Helper()
	dir := publicDir(t)
	data, err := os.ReadFile(testenv.Slipway(t))
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "slipway")
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	if name != "slipway" {
		link := filepath.Join(dir, name)
		if err := os.Symlink(bin, link); err != nil {
			t.Fatal(err)
		}
		return link
	}
	return bin
}

// TestSlirp4netnsCommandLine: an unprivileged user's namespace (made with
// unshare, as rootlesskit and podman make theirs) served by slipway started
// through a symlink named slirp4netns, with slirp4netns's options.
func TestSlirp4netnsCommandLine(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "unshare", "nsenter", "setpriv", "curl", "socat", "busybox")
	openTun(t)
	s4 := publicCopy(t, "slirp4netns")
	web, _ := testenv.HTTPFile(t, 1024)
	pid := userNSHolder(t)

	api := filepath.Join(publicDir(t), "api.sock")
	readyR, readyW, _ := os.Pipe()
	exitR, exitW, _ := os.Pipe()
	slirp := exec.Command("setpriv", append(nobody, s4, "--configure", "--mtu=65520", "--disable-host-loopback",
		"--api-socket", api, "-r", "3", "-e", "4", pid, "tap0")...)
	slirp.ExtraFiles = []*os.File{readyW, exitR}
	var out testenv.Output
	slirp.Stdout, slirp.Stderr = &out, &out
	if err := slirp.Start(); err != nil {
		t.Fatal(err)
	}
	readyW.Close()
	exitR.Close()
	exited := make(chan error, 1)
	go func() { exited <- slirp.Wait() }()
	t.Cleanup(func() { slirp.Process.Kill() })
	b := make([]byte, 1)
	if n, _ := readyR.Read(b); n != 1 || b[0] != '1' {
		slirp.Process.Kill()
		t.Fatalf("no ready signal (%v):\n%s", <-exited, out.String())
	}
	// Podman's --enable-sandbox --enable-seccomp or not, the engine is
	// confined; nobody's launcher owns its user namespace.
	checkConfined(t, enginePID(t, slirp.Process.Pid), nobodyUID, false)

	m := testenv.Markers(inUserNS(t, pid, script(
		`echo "@addr=$(ip -4 -o addr show tap0 | awk '{print $4}')"`,
		`echo "@route=$(ip -4 route show default | awk '{print $3}')"`,
		`echo "@mtu=$(ip -o link show tap0 | sed 's/.*mtu \([0-9]*\).*/\1/')"`,
		fmt.Sprintf(`curl -s -m 10 -o /dev/null http://10.0.2.2:%d/; echo "@loopback=$?"`, web.Port()),
	)))
	if m["addr"] != "10.0.2.100/24" || m["route"] != "10.0.2.2" || m["mtu"] != "65520" || m["loopback"] != "7" {
		t.Fatalf("namespace as slirp4netns configures it: %v (want 10.0.2.100/24 via 10.0.2.2, mtu 65520, host loopback refused)\n%s", m, out.String())
	}

	// A server in the namespace, published through slirp4netns's API.
	srv := exec.Command("nsenter", "--target", pid, "--net", "--user", "--preserve-credentials",
		"busybox", "httpd", "-f", "-p", "8080", "-h", "/proc/self")
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
	port := testenv.FreePort(t, "tcp")
	req := fmt.Sprintf(`{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"127.0.0.1","host_port":%d,"guest_addr":"","guest_port":8080}}`, port)
	if ans := slirpAPI(t, api, req); !strings.Contains(ans, `"return":{"id"`) {
		t.Fatalf("add_hostfwd: %s", ans)
	}
	var status int
	for i := 0; i < 50 && status != 404 && status != 200; i++ {
		o, _ := exec.Command("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", fmt.Sprintf("http://127.0.0.1:%d/nonexistent", port)).Output()
		status, _ = strconv.Atoi(string(o))
		time.Sleep(100 * time.Millisecond)
	}
	if status != 404 {
		t.Fatalf("the published port did not reach busybox httpd in the namespace (HTTP %d)", status)
	}

	// Closing the exit fd ends it, as with slirp4netns.
	exitW.Close()
	select {
	case <-exited:
	case <-time.After(20 * time.Second):
		t.Fatal("slipway did not exit after its exit fd closed")
	}
}

// nobody are setpriv's options that run a program as user nobody.
var nobody = []string{"--reuid=65534", "--regid=65534", "--clear-groups"}

// userNSHolder starts, as nobody, a process in new user and network
// namespaces (as rootlesskit and podman make theirs) and returns its pid
// once it is in them; it is killed when the test ends.
func userNSHolder(t *testing.T) string {
	t.Helper()
	holder := exec.Command("setpriv", append(nobody, "unshare", "--user", "--map-root-user", "--net", "sleep", "600")...)
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { holder.Process.Kill(); holder.Wait() })
	// unshare replaces itself with sleep: its pid is the namespace's.
	pid := strconv.Itoa(holder.Process.Pid)
	// unshare(2) makes both namespaces at once and writes the ID maps
	// after: until then the user namespace maps nobody to no one, and
	// who joins it has no capability in it.
	waitNS := time.Now().Add(10 * time.Second)
	for time.Now().Before(waitNS) {
		a, _ := os.Readlink("/proc/" + pid + "/ns/net")
		b, _ := os.Readlink("/proc/self/ns/net")
		m, _ := os.ReadFile("/proc/" + pid + "/uid_map")
		g, _ := os.ReadFile("/proc/" + pid + "/gid_map")
		if a != "" && a != b && len(m) > 0 && len(g) > 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	return pid
}

// inUserNS runs a shell script in the user and network namespaces of pid
// (a userNSHolder's).
func inUserNS(t *testing.T, pid, script string) string {
	t.Helper()
	o, err := exec.Command("nsenter", "--target", pid, "--net", "--user", "--preserve-credentials", "sh", "-c", script).CombinedOutput()
	if err != nil {
		t.Logf("in namespace: %v\n%s", err, o)
	}
	return string(o)
}

// slirpAPI sends one slirp4netns API request and returns the answer.
func slirpAPI(t *testing.T, sock, req string) string {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write([]byte(req))
	c.(*net.UnixConn).CloseWrite()
	buf := make([]byte, 4096)
	n, _ := c.Read(buf)
	return string(buf[:n])
}

// TestRootlesskitWithSlipway runs rootlesskit, the way rootless docker
// and podman set up their network, with slipway as its slirp4netns binary
// and rootlesskit's slirp4netns port driver publishing a port.
func TestRootlesskitWithSlipway(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "rootlesskit", "newuidmap", "useradd", "busybox", "curl")
	openTun(t)
	user := rootlessUser(t)
	s4 := publicCopy(t, "slirp4netns")
	www := publicDir(t)
	os.WriteFile(filepath.Join(www, "index.html"), []byte("hello through rootlesskit\n"), 0o644)
	inside := filepath.Join(www, "inside.sh")
	os.WriteFile(inside, []byte(`#!/bin/sh
echo "@addr=$(ip -4 -o addr show tap0 | awk '{print $4}')"
exec busybox httpd -f -p 80 -h `+www+"\n"), 0o755)
	port := testenv.FreePort(t, "tcp")
	rk := exec.Command("su", user, "-s", "/bin/sh", "-c", fmt.Sprintf(
		"cd /tmp && exec rootlesskit --net=slirp4netns --slirp4netns-binary=%s --disable-host-loopback --port-driver=slirp4netns -p 127.0.0.1:%d:80/tcp --copy-up=/etc %s",
		s4, port, inside))
	var out testenv.Output
	rk.Stdout, rk.Stderr = &out, &out
	rk.WaitDelay = 5 * time.Second
	if err := rk.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// rootlesskit and its children run as the user, in sessions of
		// their own: end them all.
		exec.Command("pkill", "-KILL", "-u", user).Run()
		rk.Wait()
	})
	var body string
	for i := 0; i < 60 && body == ""; i++ {
		o, _ := exec.Command("curl", "-s", "-m", "1", fmt.Sprintf("http://127.0.0.1:%d/", port)).Output()
		body = string(o)
		time.Sleep(200 * time.Millisecond)
	}
	if body != "hello through rootlesskit\n" {
		t.Fatalf("rootlesskit's published port: %q\n%s", body, out.String())
	}
	if m := testenv.Markers(out.String()); m["addr"] != "10.0.2.100/24" {
		t.Fatalf("tap0 in rootlesskit's namespace: %q\n%s", m["addr"], out.String())
	}
	// Started by rootlesskit as the user, slipway's engine is confined.
	uid, err := exec.Command("id", "-u", user).Output()
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(uid)))
	checkConfined(t, engineByExe(t, s4), n, false)
}

// rootlessUser returns an unprivileged user with subordinate ids, as
// rootlesskit needs; it is created for the test when missing.
func rootlessUser(t *testing.T) string {
	t.Helper()
	const user = "slipway-rootless"
	if exec.Command("id", user).Run() != nil {
		if out, err := exec.Command("useradd", "--system", "-M", "-d", "/tmp", "-s", "/bin/sh", user).CombinedOutput(); err != nil {
			t.Fatalf("useradd: %v %s", err, out)
		}
		t.Cleanup(func() { exec.Command("userdel", user).Run() })
	}
	for _, f := range []string{"/etc/subuid", "/etc/subgid"} {
		b, _ := os.ReadFile(f)
		if strings.Contains(string(b), user+":") {
			continue
		}
		line := user + ":300000:65536\n"
		os.WriteFile(f, append(b, line...), 0o644)
		t.Cleanup(func() { os.WriteFile(f, b, 0o644) })
	}
	return user
}
