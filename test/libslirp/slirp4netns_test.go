package libslirp

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slipway-net/slipway/test/testenv"
)

// TestSlirp4netns runs Debian's real slirp4netns 1.2.0 on slipway's
// libslirp.so.0 for a network namespace: its --version names slipway, the
// namespace downloads 50 MB with the right sha256, pings the gateway,
// resolves through 10.0.2.3, and a port published through slirp4netns's
// own API (add_hostfwd, which calls slirp_add_hostfwd) reaches a server
// in the namespace; in each shape.
func TestSlirp4netns(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "slirp4netns", "ip", "curl", "dig", "busybox")
	for _, shape := range shapes {
		t.Run(shape, func(t *testing.T) { slirp4netnsOn(t, shape) })
	}
}

func slirp4netnsOn(t *testing.T, shape string) {
	dir := libDir(t)
	env := append(os.Environ(), "LD_LIBRARY_PATH="+dir, "SLIPWAY_LIBSLIRP="+shape)

	ver := exec.Command("slirp4netns", "--version")
	ver.Env = env
	if out, err := ver.CombinedOutput(); err != nil || !strings.Contains(string(out), "libslirp: 4.7.0-slipway") {
		t.Fatalf("slirp4netns --version on slipway's library: %v\n%s", err, out)
	}

	dns := testenv.Dnsmasq(t)
	web, sum := testenv.HTTPFile(t, 50<<20)
	ns := fmt.Sprintf("slw-libslirp-%d-%s", os.Getpid(), shape)
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	api := filepath.Join(t.TempDir(), "api.sock")
	cmd := exec.Command("slirp4netns", "--configure", "--mtu=65520", "--api-socket", api,
		"--netns-type=path", "/run/netns/"+ns, "tap0")
	cmd.Env = append(env, "SLIPWAY_DNS_UPSTREAM="+dns.String())
	s4 := testenv.StartProcess(t, "slirp4netns", cmd)

	in := func(args ...string) (string, error) {
		out, err := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...).CombinedOutput()
		return string(out), err
	}
	// --configure has run once the API socket exists (slirp4netns
	// creates it after configuring the TAP).
	if !s4.WaitPath(api, 30*time.Second) {
		select {
		case <-s4.Done():
			t.Fatalf("slirp4netns exited: %v\n%s", s4.Err(), s4.Output())
		default:
			t.Fatalf("slirp4netns never made its API socket:\n%s", s4.Output())
		}
	}

	if !onSlipway(t, cmd.Process.Pid, shape) {
		t.Fatalf("slirp4netns does not run on slipway's library in the %s shape", shape)
	}
	if out, err := in("sh", "-c", fmt.Sprintf("curl -sf -m 120 http://10.0.2.2:%d/blob | sha256sum", web.Port())); err != nil || !strings.HasPrefix(out, sum) {
		t.Errorf("download in the namespace: %v, %q, want sha256 %s", err, out, sum)
	}
	if out, err := in("busybox", "ping", "-c1", "-W5", "10.0.2.2"); err != nil {
		t.Errorf("ping 10.0.2.2: %v\n%s", err, out)
	}
	if out, err := in("dig", "+short", "+time=5", "@10.0.2.3", "a."+testenv.TestDomain); err != nil || strings.TrimSpace(out) != testenv.TestDomainAddr {
		t.Errorf("DNS through 10.0.2.3: %v, %q", err, out)
	}

	// A server in the namespace, published through slirp4netns's API.
	www := t.TempDir()
	os.WriteFile(filepath.Join(www, "index.html"), []byte("hello-from-namespace\n"), 0o644)
	srv := exec.Command("ip", "netns", "exec", ns, "busybox", "httpd", "-f", "-p", "8080", "-h", www)
	testenv.StartProcess(t, "httpd", srv)
	port := testenv.FreePort(t, "tcp")
	reply := slirpAPI(t, api, fmt.Sprintf(`{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"127.0.0.1","host_port":%d,"guest_port":8080}}`, port))
	if !strings.Contains(reply, `"return"`) {
		t.Fatalf("add_hostfwd: %s", reply)
	}
	var got string
	var err error
	for range 50 { // httpd may still be starting
		if got, err = tryGet(fmt.Sprintf("http://127.0.0.1:%d/", port)); err == nil && got != "" {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got != "hello-from-namespace\n" {
		t.Errorf("published port: got %q (%v)", got, err)
	}
	if t.Failed() {
		t.Logf("slirp4netns:\n%s", s4.Output())
	}
}

// slirpAPI sends one request to slirp4netns's API socket and returns the
// answer.
func slirpAPI(t *testing.T, path, req string) string {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	c.(*net.UnixConn).CloseWrite()
	line, _ := bufio.NewReader(c).ReadString('\n')
	return line
}
