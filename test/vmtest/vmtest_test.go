package vmtest

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// These tests run the harness against QEMU's built-in -netdev user
// (libslirp), which maps the guest's 10.0.2.2 to the host's loopback, so
// they need nothing from slipway itself.

func userNet(extra string) []string {
	return []string{
		"-netdev", "user,id=n0" + extra,
		"-device", "virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56",
	}
}

// loopbackServer serves handler on 127.0.0.1 and returns the port.
func loopbackServer(t *testing.T, handler http.Handler) int {
	t.Helper()
	srv := httptest.NewServer(handler)
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().(*net.TCPAddr).Port
}

// TestUserNetLeaseAndDownload: the guest takes libslirp's lease, applies
// it, and downloads a file from a server on the host's loopback intact.
func TestUserNetLeaseAndDownload(t *testing.T) {
	t.Parallel()
	g := Build(t)

	blob := make([]byte, 1<<20)
	if _, err := rand.Read(blob); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(blob)
	want := hex.EncodeToString(sum[:])
	port := loopbackServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/blob" {
			http.NotFound(w, r)
			return
		}
		w.Write(blob)
	}))

	res := Run(t, g, Options{
		Netdev: userNet(""),
		Script: fmt.Sprintf(`set -e
ip -4 addr show dev eth0
ip -4 route show
cat /etc/resolv.conf
wget -q -O /tmp/blob http://10.0.2.2:%d/blob
echo "BLOB-SHA256 $(sha256sum /tmp/blob)"
`, port),
	})
	t.Logf("guest finished after %v", res.Elapsed)
	if res.RC != 0 {
		t.Fatalf("script failed with rc=%d:\n%s", res.RC, res.Console)
	}
	for k, v := range map[string]string{
		"ip": "10.0.2.15", "prefix": "24", "mask": "255.255.255.0",
		"router": "10.0.2.2", "dns": "10.0.2.3",
	} {
		if res.Lease[k] != v {
			t.Errorf("lease %s = %q, want %q (lease %v)", k, res.Lease[k], v, res.Lease)
		}
	}
	// The lease must be applied, not only reported.
	for _, s := range []string{
		"inet 10.0.2.15/24",
		"default via 10.0.2.2 dev eth0",
		"nameserver 10.0.2.3",
		"BLOB-SHA256 " + want + "  /tmp/blob",
	} {
		if !strings.Contains(res.Console, s) {
			t.Errorf("console lacks %q:\n%s", s, res.Console)
		}
	}
}

// TestExitCodeAndFiles: files reach the guest, the benchmark tools run
// there, and the script's exit code comes back. No DHCP: the interface
// must stay unconfigured.
func TestExitCodeAndFiles(t *testing.T) {
	t.Parallel()
	g := Build(t)

	script := `cat /etc/greeting
/usr/local/bin/hello
ip -4 addr show dev eth0 | grep inet || echo NO-IPV4
`
	var tools []string
	for _, tool := range []string{"iperf3", "sockperf"} {
		// build.sh includes a tool only when the host has it.
		if _, err := exec.LookPath(tool); err == nil {
			tools = append(tools, tool)
			script += tool + " --version >/dev/null 2>&1 && echo " + tool + "-RUNS\n"
		}
	}
	script += "exit 7\n"

	res := Run(t, g, Options{
		Netdev: userNet(""),
		NoDHCP: true,
		Script: script,
		Files: map[string][]byte{
			"/etc/greeting":        []byte("GREETING from the host\n"),
			"/usr/local/bin/hello": []byte("#!/bin/sh\necho HELLO-RAN\n"),
		},
	})
	if res.RC != 7 {
		t.Errorf("RC = %d, want 7", res.RC)
	}
	if res.Lease != nil {
		t.Errorf("NoDHCP run has a lease: %v", res.Lease)
	}
	want := []string{"GREETING from the host", "HELLO-RAN", "NO-IPV4", MarkerReady}
	for _, tool := range tools {
		want = append(want, tool+"-RUNS")
	}
	for _, s := range want {
		if !strings.Contains(res.Console, s) {
			t.Errorf("console lacks %q:\n%s", s, res.Console)
		}
	}
}

// TestHTTPDWhileRunning: the host talks to a guest service while the guest
// runs, using WaitFor to know when it is up, then lets the guest finish.
func TestHTTPDWhileRunning(t *testing.T) {
	t.Parallel()
	g := Build(t)

	fwd := freePort(t)
	var finished atomic.Bool
	ctl := loopbackServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/finished" || !finished.Load() {
			http.NotFound(w, r)
		}
	}))
	page := bytes.Repeat([]byte("slipway test page\n"), 500)

	v := Start(t, g, Options{
		Netdev: userNet(fmt.Sprintf(",hostfwd=tcp:127.0.0.1:%d-:8080", fwd)),
		Files:  map[string][]byte{"/www/index.html": page},
		Script: fmt.Sprintf(`httpd -p 8080 -h /www
echo HTTPD-UP
# Stay up until the host has checked us; give up after a minute.
i=0
until wget -q -O /dev/null http://10.0.2.2:%d/finished; do
	i=$((i + 1)); [ $i -lt 300 ] || exit 3
	sleep 0.2
done
echo GUEST-LEAVING
`, ctl),
	})
	// Markers come in console order; WaitFor moves past each one.
	if _, err := v.WaitFor(MarkerReady, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := v.WaitFor("HTTPD-UP", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := v.WaitFor(MarkerReady, 500*time.Millisecond); err == nil {
		t.Error("WaitFor found a marker again that it had already returned")
	}

	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/index.html", fwd))
	if err != nil {
		t.Fatalf("fetching from the guest's httpd: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("reading the guest's page: %v", err)
	}
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, page) {
		t.Errorf("guest httpd: status %d, %d bytes, want 200 and %d bytes", resp.StatusCode, len(body), len(page))
	}

	finished.Store(true)
	if _, err := v.WaitFor("GUEST-LEAVING", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	res, err := v.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if res.RC != 0 {
		t.Errorf("RC = %d, want 0", res.RC)
	}
	// Once QEMU is gone WaitFor must fail at once, not sit out its timeout.
	start := time.Now()
	if _, err := v.WaitFor("NEVER-PRINTED", time.Minute); err == nil {
		t.Error("WaitFor found a marker the guest never printed")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("WaitFor after exit took %v", d)
	}
}

// TestTimeout: a guest that never finishes is reported, not waited on.
func TestTimeout(t *testing.T) {
	t.Parallel()
	g := Build(t)
	const timeout = 10 * time.Second
	v := Start(t, g, Options{Script: "echo STUCK\nsleep 600", Timeout: timeout})
	res, err := v.Wait()
	if err == nil || !strings.Contains(err.Error(), "did not finish") {
		t.Fatalf("Wait for a guest that never finishes: err = %v", err)
	}
	if res.Console != v.Console() {
		t.Error("the timed-out Result lacks the console")
	}
	if d := time.Since(v.started); d > timeout+5*time.Second {
		t.Errorf("Wait returned %v after start, timeout %v", d, timeout)
	}
}

// TestQEMUErrorReported: when QEMU refuses its arguments, Wait says why
// at once, with QEMU's own message.
func TestQEMUErrorReported(t *testing.T) {
	t.Parallel()
	g := Build(t)
	v := Start(t, g, Options{Netdev: []string{"-netdev", "no-such-backend,id=n0"}})
	_, err := v.Wait()
	if err == nil || !strings.Contains(err.Error(), "no-such-backend") {
		t.Fatalf("Wait after QEMU rejected its arguments: err = %v", err)
	}
}

// TestBuildIsCached: a second build.sh run reuses the cache.
func TestBuildIsCached(t *testing.T) {
	t.Parallel()
	g := Build(t)
	script, err := buildScript()
	if err != nil {
		t.Fatal(err)
	}
	again, err := runBuildScript(script)
	if err != nil {
		t.Fatal(err)
	}
	if again.guest != g {
		t.Errorf("second build gave %+v, first %+v", again.guest, g)
	}
	if again.log != "" {
		t.Errorf("second build did work:\n%s", again.log)
	}
}

// freePort returns a loopback TCP port that was free a moment ago, for
// QEMU's hostfwd, which needs a number up front.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
