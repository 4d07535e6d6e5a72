// Package publish_test runs slipway's published ports and control API end
// to end: the slipway binary, a real network namespace or QEMU guest with
// a real server in it, and real clients on the host side.
//
// The "host" of these tests is a network namespace of their own with
// 198.51.100.1 on its loopback device, so clients can connect from an
// address that is neither loopback nor the machine's own: a guest kernel
// drops loopback sources as martians, so only a non-loopback client shows
// that slipway keeps the client's address.
package publish_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slipway-net/slipway/control"
	"github.com/slipway-net/slipway/test/testenv"
)

// hostAddr and hostAddr6 are the client-side addresses inside the test's
// host namespace.
const (
	hostAddr  = "198.51.100.1"
	hostAddr6 = "2001:db8:1::1"
)

// peerechoDir is where peerechoBin put the binary, for TestMain to remove;
// empty while no test has needed it (in -short mode none does).
var peerechoDir string

var peerechoBin = sync.OnceValues(func() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	dir, err := os.MkdirTemp("", "slipway-peerecho-")
	if err != nil {
		return "", err
	}
	peerechoDir = dir
	bin := filepath.Join(dir, "peerecho")
	cmd := exec.Command("go", "build", "-o", bin, "./test/publish/peerecho")
	cmd.Dir = filepath.Dir(strings.TrimSpace(string(out)))
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build peerecho: %v\n%s", err, out)
	}
	return bin, nil
})

func TestMain(m *testing.M) {
	code := m.Run()
	// Every test has ended, so peerechoBin is no longer running.
	if peerechoDir != "" {
		os.RemoveAll(peerechoDir)
	}
	os.Exit(code)
}

// binaries returns slipway built from this tree and the peerecho server,
// static so it also runs in the QEMU guest.
func binaries(t *testing.T) (slipway, peerecho string) {
	t.Helper()
	slipway = testenv.Slipway(t) // first: it skips in -short mode
	peerecho, err := peerechoBin()
	if err != nil {
		t.Fatal(err)
	}
	return slipway, peerecho
}

// needRoot skips tests that create network namespaces when they cannot,
// and fails when a tool is missing (the README's test command installs
// them).
func needRoot(t *testing.T, tools ...string) {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireTools(t, append([]string{"ip", "socat"}, tools...)...)
}

// hostNS creates the test's host namespace: loopback up, with hostAddr on
// it. It is deleted when the test ends.
func hostNS(t *testing.T) string {
	t.Helper()
	b := make([]byte, 4)
	rand.Read(b)
	ns := "slwpub-" + hex.EncodeToString(b)
	run(t, "ip", "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	run(t, "ip", "-n", ns, "link", "set", "lo", "up")
	run(t, "ip", "-n", ns, "addr", "add", hostAddr+"/32", "dev", "lo")
	run(t, "ip", "-n", ns, "addr", "add", hostAddr6+"/128", "dev", "lo", "nodad")
	return ns
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// slipwayProc is a slipway running in the host namespace.
type slipwayProc struct {
	*testenv.Process
	api string
}

// startSlipway runs slipway with args in ns, with an API socket, and
// waits for the API to answer. It is stopped (SIGTERM, then SIGKILL) when
// the test ends.
func startSlipway(t *testing.T, ns string, args ...string) *slipwayProc {
	t.Helper()
	slipway, _ := binaries(t)
	api := filepath.Join(t.TempDir(), "api.sock")
	full := append([]string{"netns", "exec", ns, slipway, args[0], "--api-socket", api}, args[1:]...)
	p := &slipwayProc{Process: testenv.StartProcess(t, "slipway", exec.Command("ip", full...)), api: api}
	c := control.NewClient(p.api)
	waitFor(t, 30*time.Second, "slipway's API", func() error {
		select {
		case <-p.Done():
			t.Fatalf("slipway exited: %v\n%s", p.Cmd.ProcessState, p.Output())
		default:
		}
		return c.Do(context.Background(), "GET", "/v1/health", nil, nil)
	})
	return p
}

func (p *slipwayProc) client() *control.Client { return control.NewClient(p.api) }

// fds counts slipway's open file descriptors.
func (p *slipwayProc) fds(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p.Cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// waitFor retries f until it succeeds or the deadline passes. Deadlines
// here only bound how long a broken setup is waited for; nothing asserts
// on how fast anything is.
func waitFor(t *testing.T, d time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// tcpPeer connects from ns to addr (from srcPort if not 0) and returns the
// line the guest's peerecho sends: "peer=IP:PORT".
func tcpPeer(ns, addr string, srcPort int) (string, error) {
	target := "TCP4:" + addr
	if strings.HasPrefix(addr, "[") {
		target = "TCP6:" + addr
	}
	if srcPort != 0 {
		target += ",sourceport=" + strconv.Itoa(srcPort) + ",reuseaddr"
	}
	cmd := exec.Command("ip", "netns", "exec", ns, "socat", "-T", "10", "-t", "10", "-", target)
	cmd.Stdin = strings.NewReader("")
	out, err := cmd.CombinedOutput()
	line := strings.TrimSpace(string(out))
	if err != nil || !strings.HasPrefix(line, "peer=") {
		return "", fmt.Errorf("tcp to %s: %v: %s", addr, err, line)
	}
	return line, nil
}

// udpPeer sends payload from ns (from srcPort) to addr and returns the
// guest's answer: "peer=IP:PORT payload".
func udpPeer(ns, addr string, srcPort int, payload string) (string, error) {
	target := "UDP4:" + addr
	if strings.HasPrefix(addr, "[") {
		target = "UDP6:" + addr
	}
	if srcPort != 0 {
		target += ",sourceport=" + strconv.Itoa(srcPort)
	}
	cmd := exec.Command("ip", "netns", "exec", ns, "socat", "-T", "3", "-t", "3", "-", target)
	cmd.Stdin = strings.NewReader(payload)
	out, _ := cmd.CombinedOutput()
	line := strings.TrimSpace(string(out))
	if !strings.HasPrefix(line, "peer=") {
		return "", fmt.Errorf("udp to %s: no answer: %s", addr, line)
	}
	return line, nil
}

// slirpCall sends one slirp4netns API request on the socket the way
// rootlesskit does (write, shut down writing, read to the end).
func slirpCall(t *testing.T, sock, req string) map[string]any {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	c.(*net.UnixConn).CloseWrite()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	var reply map[string]any
	if err := json.Unmarshal(b, &reply); err != nil {
		t.Fatalf("slirp4netns reply %q: %v", b, err)
	}
	return reply
}

// unixDialer dials sock whatever address an HTTP client asks for.
func unixDialer(sock string) func(ctx context.Context, _, _ string) (net.Conn, error) {
	return func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}
}

// expectTCPPeer waits up to wait for the published TCP port 8080 to
// answer a client from hostAddr:src, and checks that the guest saw the
// client as that address.
func expectTCPPeer(t *testing.T, ns string, src int, wait time.Duration) {
	t.Helper()
	var got string
	waitFor(t, wait, "the published TCP port", func() (err error) {
		got, err = tcpPeer(ns, hostAddr+":8080", src)
		return err
	})
	if want := fmt.Sprintf("peer=%s:%d", hostAddr, src); got != want {
		t.Errorf("guest saw the TCP client as %q, want %q", got, want)
	}
}

// expectUDPPeers has a client from hostAddr:src for each of srcs send
// payload-N to the published UDP port 5000, and checks that each gets its
// own answer, naming its own address.
func expectUDPPeers(t *testing.T, ns, payload string, srcs ...int) {
	t.Helper()
	for i, src := range srcs {
		p := fmt.Sprintf("%s-%d", payload, i)
		got, err := udpPeer(ns, hostAddr+":5000", src, p)
		if want := fmt.Sprintf("peer=%s:%d %s", hostAddr, src, p); err != nil || got != want {
			t.Errorf("UDP client %d: got %q, %v; want %q", src, got, err, want)
		}
	}
}
