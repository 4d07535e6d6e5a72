package e2e

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/slipway-net/slipway/test/guestpeer"
	"github.com/slipway-net/slipway/test/testenv"
)

// TestServeKeepsServingAfterEMFILE: a VMM endpoint whose accept fails for
// lack of file descriptors must pause, not stop: once descriptors are free
// again, the next VM is served (it used to stop accepting VMs for good on
// the first EMFILE).
func TestServeKeepsServingAfterEMFILE(t *testing.T) {
	testenv.RequireTools(t, "prlimit")
	sock := filepath.Join(t.TempDir(), "vm.sock")
	srv := testenv.Serve(t, "--listen", "stream:unix:"+sock)
	// The sandboxed engine holds the VMs' sockets, not its launcher.
	engine := enginePID(t, srv.Cmd.Process.Pid)
	fds, err := os.ReadDir("/proc/" + strconv.Itoa(engine) + "/fd")
	if err != nil {
		t.Fatal(err)
	}
	// Room for a few more descriptors, then none.
	limit := strconv.Itoa(len(fds) + 4)
	if out, err := exec.Command("prlimit", "--pid", strconv.Itoa(engine), "--nofile="+limit+":"+limit).CombinedOutput(); err != nil {
		t.Fatalf("prlimit: %v %s", err, out)
	}
	var conns []net.Conn
	for i := 0; i < 20; i++ {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		conns = append(conns, c)
	}
	if !srv.WaitOutput("too many open files", 15*time.Second) {
		t.Fatalf("slipway never ran out of descriptors:\n%s", srv.Output())
	}
	for _, c := range conns {
		c.Close()
	}
	// The VMs went away: their descriptors are free, and a new VM gets
	// its lease.
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	g := guestpeer.New(t, guestpeer.NewStream(c), "52:54:00:12:34:56")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := g.DHCP(ctx); err != nil {
		t.Fatalf("a VM after the descriptors ran out got no lease: %v\n%s", err, srv.Output())
	}
}
