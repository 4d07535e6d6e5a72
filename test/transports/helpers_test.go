// Package transports tests every frame transport slipway speaks, end to
// end: the real slipway binary on real sockets, with Go guests
// (test/guestpeer) playing the VMMs that cannot run here and QEMU guests
// where QEMU can.
package transports

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/slipway-net/slipway/test/guestpeer"
	"github.com/slipway-net/slipway/test/testenv"
)

// blobSize is what guests download: large enough for many full frames,
// small enough for the shared test machine.
const blobSize = 8 << 20

// online takes a lease for g and brings its stack up.
func online(t *testing.T, g *guestpeer.Guest) guestpeer.Lease {
	t.Helper()
	l, err := g.Online()
	if err != nil {
		t.Fatal(err)
	}
	if l.Router != netip.MustParseAddr("10.0.2.2") || l.Prefix != 24 {
		t.Errorf("guest %s: lease %+v, want router 10.0.2.2 on a /24", g.MAC, l)
	}
	return l
}

// download fetches the blob from the host's loopback through the gateway
// and checks it arrived whole.
func download(t *testing.T, g *guestpeer.Guest, web netip.AddrPort, sum string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	body, err := g.Get(ctx, fmt.Sprintf("http://10.0.2.2:%d/blob", web.Port()))
	if err != nil {
		t.Fatalf("guest %s: download: %v", g.MAC, err)
	}
	got := sha256.Sum256(body)
	if hex.EncodeToString(got[:]) != sum {
		t.Fatalf("guest %s: downloaded %d bytes with the wrong sha256", g.MAC, len(body))
	}
}

// server is a slipway process started with extra inherited files.
type server struct{ *testenv.Process }

// wait waits for the process to exit and returns its exit code.
func (s server) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-s.Done():
	case <-time.After(timeout):
		t.Fatalf("slipway still running after %v:\n%s", timeout, s.Output())
	}
	if s.Cmd.ProcessState == nil {
		t.Fatalf("slipway did not run: %v", s.Err())
	}
	return s.Cmd.ProcessState.ExitCode()
}

// start runs slipway with args; files become fds 3, 4, ... in the child.
// It is stopped when the test ends.
func start(t *testing.T, files []*os.File, args ...string) server {
	t.Helper()
	cmd := exec.Command(testenv.Slipway(t), testenv.WithSandbox(args)...)
	cmd.ExtraFiles = files
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return server{testenv.StartProcess(t, "slipway", cmd)}
}
