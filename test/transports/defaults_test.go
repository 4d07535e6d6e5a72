package transports

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slipway-net/slipway/control"
	"github.com/slipway-net/slipway/test/testenv"
)

// Without --api-socket, serve's API still listens, at a path of its own
// under /run/slipway/ for root and $XDG_RUNTIME_DIR/slipway/ for a user,
// printed at start and removed at the end; --api-socket "" turns it off.
func TestServeDefaultAPISocket(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "setpriv")
	check := func(t *testing.T, p *testenv.Process, want string) {
		t.Helper()
		line := "msg=\"control API listening\" socket=" + want
		if !p.WaitOutput(line, 30*time.Second) {
			t.Fatalf("no %q at start:\n%s", line, p.Output())
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var h control.Health
		if err := control.NewClient(want).Do(ctx, "GET", "/v1/health", nil, &h); err != nil || h.Status != "ok" {
			t.Errorf("GET /v1/health on %s: %v %+v", want, err, h)
		}
		p.Stop()
		if _, err := os.Lstat(want); !os.IsNotExist(err) {
			t.Errorf("%s still there after serve ended (%v)", want, err)
		}
	}
	// Not t.TempDir(): its parent is root's alone, and nobody's serve
	// below needs a way in.
	dir, err := os.MkdirTemp("", "slipway-default-api-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o777)

	t.Run("root", func(t *testing.T) {
		cmd := exec.Command(testenv.Slipway(t), testenv.WithSandbox([]string{"serve", "--listen", "stream:unix:" + filepath.Join(dir, "root.sock")})...)
		p := testenv.StartProcess(t, "slipway serve", cmd)
		check(t, p, fmt.Sprintf("/run/slipway/serve-%d.sock", cmd.Process.Pid))
	})
	t.Run("user", func(t *testing.T) {
		runtime := filepath.Join(dir, "run-user")
		if err := os.Mkdir(runtime, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(runtime, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("setpriv", append([]string{"--reuid=65534", "--regid=65534", "--clear-groups", testenv.Slipway(t)},
			testenv.WithSandbox([]string{"serve", "--listen", "stream:unix:" + filepath.Join(dir, "user.sock")})...)...)
		cmd.Env = append(os.Environ(), "XDG_RUNTIME_DIR="+runtime)
		p := testenv.StartProcess(t, "slipway serve as nobody", cmd)
		// setpriv execs slipway: the pid is slipway's.
		check(t, p, fmt.Sprintf("%s/slipway/serve-%d.sock", runtime, cmd.Process.Pid))
	})
	t.Run("off", func(t *testing.T) {
		sock := filepath.Join(dir, "off.sock")
		p := testenv.Serve(t, "--listen", "stream:unix:"+sock, "--api-socket", "")
		if !p.WaitOutput("msg=serving", 30*time.Second) {
			t.Fatalf("not serving:\n%s", p.Output())
		}
		if strings.Contains(p.Output(), "control API") {
			t.Errorf("--api-socket \"\": the API listens:\n%s", p.Output())
		}
	})
}
