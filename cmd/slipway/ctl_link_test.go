package main

import (
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/slipway-net/slipway/config"
	"github.com/slipway-net/slipway/control"
	"github.com/slipway-net/slipway/network"
)

func TestCtlLinkCommandLine(t *testing.T) {
	const sock = "/nonexistent/slipway.sock"
	wantUsage(t, []string{"ctl", "--api-socket", sock, "link", "add", "--kind", "stream"}, "--fd is required")
	wantUsage(t, []string{"ctl", "--api-socket", sock, "link", "add", "--fd", "999", "--kind", "stream"}, "invalid value 999 for --fd", "not an open file descriptor")
	wantUsage(t, []string{"ctl", "--api-socket", sock, "link", "add", "--fd", "0", "--kind", "tap"}, `invalid value "tap" for --kind`)
	wantUsage(t, []string{"ctl", "--api-socket", sock, "link", "rm", "x"}, `invalid link port "x"`)
	wantUsage(t, []string{"ctl", "--api-socket", sock, "link", "down"}, "accepts 1 arg")
}

// apiServer runs a real network and its API for ctl to talk to.
func apiServer(t *testing.T) (*network.Network, *control.Server, string) {
	t.Helper()
	n, err := network.New(config.Default(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	sock := filepath.Join(t.TempDir(), "api.sock")
	srv, err := control.Listen(sock, n, nil)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	t.Cleanup(func() { srv.Close() })
	return n, srv, sock
}

// ctl link add hands a real socket to a real slipway; rm takes it away.
func TestCtlLinkAddRemove(t *testing.T) {
	n, _, sock := apiServer(t)
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	code, out, stderr := cli(t, "ctl", "--api-socket", sock, "-o", "json", "link", "add", "--fd", strconv.Itoa(fds[1]), "--kind", "seqpacket", "--name", "uml0")
	if code != 0 {
		t.Fatalf("link add: exit %d: %s", code, stderr)
	}
	var l control.Link
	if err := json.Unmarshal([]byte(out), &l); err != nil || l.Name != "uml0" || l.Port == 0 {
		t.Fatalf("link add printed %q (%v)", out, err)
	}
	if ls := n.Links(); len(ls) != 1 || ls[0].Name != "uml0" {
		t.Fatalf("links %+v", ls)
	}
	p := strconv.Itoa(l.Port)
	if code, out, _ := cli(t, "ctl", "--api-socket", sock, "link", "down", p); code != 0 || !strings.Contains(out, "uml0") {
		t.Errorf("link down: %d %q", code, out)
	}
	if n.Links()[0].Up {
		t.Error("link not down")
	}
	if code, _, _ := cli(t, "ctl", "--api-socket", sock, "link", "up", p); code != 0 || !n.Links()[0].Up {
		t.Errorf("link up: exit %d", code)
	}
	if code, _, stderr := cli(t, "ctl", "--api-socket", sock, "link", "rm", p); code != 0 {
		t.Fatalf("link rm: %d %s", code, stderr)
	}
	if len(n.Links()) != 0 {
		t.Error("link still attached after rm")
	}
	// The API's refusal is printed with its status, exit 1.
	code, _, stderr = cli(t, "ctl", "--api-socket", sock, "link", "rm", p)
	if code != 1 || !strings.Contains(stderr, "no such link (HTTP 404)") {
		t.Errorf("second rm: %d %q", code, stderr)
	}
	code, _, stderr = cli(t, "ctl", "--api-socket", sock, "link", "add", "--fd", "0", "--kind", "stream")
	if code != 1 || !strings.Contains(stderr, "HTTP 400") {
		t.Errorf("add of stdin: %d %q", code, stderr)
	}
}

// ctl state from one slipway, ctl state import into another; ctl config;
// ctl shutdown.
func TestCtlStateConfigShutdown(t *testing.T) {
	a, _, sockA := apiServer(t)
	if err := a.AddDNSRecord("db.internal", netip.MustParseAddr("10.0.2.50")); err != nil {
		t.Fatal(err)
	}
	code, out, stderr := cli(t, "ctl", "--api-socket", sockA, "state")
	if code != 0 {
		t.Fatalf("state: %d %s", code, stderr)
	}
	file := filepath.Join(t.TempDir(), "state.json")
	os.WriteFile(file, []byte(out), 0o600)
	b, srvB, sockB := apiServer(t)
	if code, _, stderr := cli(t, "ctl", "--api-socket", sockB, "state", "import", file); code != 0 {
		t.Fatalf("state import: %d %s", code, stderr)
	}
	if st := b.State(); len(st.DNSRecords) != 1 || st.DNSRecords[0].Name != "db.internal" {
		t.Errorf("state after import: %+v", st)
	}
	os.WriteFile(file, []byte(`{"version":9}`), 0o600)
	wantUsage(t, []string{"ctl", "--api-socket", sockB, "state", "import", file}, file, "newer slipway")
	wantUsage(t, []string{"ctl", "--api-socket", sockB, "state", "import", "/nonexistent/s.json"}, "/nonexistent/s.json")
	code, out, _ = cli(t, "ctl", "--api-socket", sockB, "config")
	if code != 0 || !strings.Contains(out, `"cidr": "10.0.2.0/24"`) {
		t.Errorf("config: %d %s", code, out)
	}
	wantUsage(t, []string{"ctl", "--api-socket", sockB, "shutdown", "--timeout", "-1s"}, "--timeout")
	done := make(chan struct{})
	srvB.OnShutdown(func() { close(done) })
	if code, out, stderr := cli(t, "ctl", "--api-socket", sockB, "shutdown", "--timeout", "2s"); code != 0 || !strings.Contains(out, "shutting down") {
		t.Fatalf("shutdown: %d %q %s", code, out, stderr)
	}
	<-done
}
