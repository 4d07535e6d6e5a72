package transports

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slipway-net/slipway/control"
	"github.com/slipway-net/slipway/test/testenv"
)

// POST /v1/shutdown on a serve with a guest holding a TCP flow open: no
// new VM is taken from then on, the flow is waited for until the timeout,
// then slipway exits 0, its API socket gone and its state file written.
func TestShutdownDrainsThenExits(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "vm.sock")
	api := filepath.Join(dir, "api.sock")
	state := filepath.Join(dir, "state.json")
	srv := testenv.Serve(t, "--listen", "stream:unix:"+sock, "--api-socket", api, "--state-file", state)
	// A host server that keeps its connections open.
	held := testenv.TCPServer(t, func(c net.Conn) { time.Sleep(time.Hour) })
	g, _ := connectGuest(t, sock, "52:54:00:00:26:01")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := g.Dial(ctx, netip.AddrPortFrom(netip.MustParseAddr("10.0.2.2"), held.Port()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var ans control.ShutdownAnswer
	secs := 2.0
	if err := control.NewClient(api).Do(ctx, "POST", "/v1/shutdown", control.ShutdownRequest{TimeoutSeconds: &secs}, &ans); err != nil {
		t.Fatal(err)
	}
	if ans.Status != "shutting down" || ans.Flows != 1 {
		t.Errorf("answer %+v, want shutting down with the guest's 1 flow", ans)
	}
	// A VM that comes now is not taken: its connection is closed.
	if c, err := net.Dial("unix", sock); err == nil {
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
			t.Errorf("a VM connecting during the shutdown: %v, want its connection closed", err)
		}
		c.Close()
	}
	select {
	case <-srv.Done():
	case <-time.After(60 * time.Second):
		t.Fatalf("slipway did not exit after the shutdown:\n%s", srv.Output())
	}
	if err := srv.Err(); err != nil {
		t.Errorf("exit: %v\n%s", err, srv.Output())
	}
	if !strings.Contains(srv.Output(), "flows still open at the timeout") {
		t.Errorf("the drain did not wait for the open flow:\n%s", srv.Output())
	}
	if _, err := os.Stat(api); !os.IsNotExist(err) {
		t.Errorf("API socket after exit: %v", err)
	}
	if b, err := os.ReadFile(state); err != nil || !strings.Contains(string(b), "52:54:00:00:26:01") {
		t.Errorf("state file after exit: %v %s", err, b)
	}
}
