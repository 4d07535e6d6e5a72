package control

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The C example of docs/api.md (docs/examples/addlink.c), compiled and run
// against a real server: what a VMM author copies works.
func TestCExampleAddsALink(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles C")
	}
	cc, err := exec.LookPath("cc")
	if err != nil {
		t.Skip("no C compiler")
	}
	bin := filepath.Join(t.TempDir(), "addlink")
	if out, err := exec.Command(cc, "-Wall", "-Werror", "-o", bin, "../docs/examples/addlink.c").CombinedOutput(); err != nil {
		t.Fatalf("cc: %v\n%s", err, out)
	}
	f := newFixture(t)
	out, err := exec.Command(bin, f.sock).CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "201\n") {
		t.Fatalf("addlink: %v\n%s", err, out)
	}
	// The program exits and its VM end with it, so the link is gone by
	// now; the answer shows it was attached.
	if !strings.Contains(string(out), `"name": "vm1-net1"`) || !strings.Contains(string(out), `"port": 1`) {
		t.Errorf("addlink printed:\n%s", out)
	}
}
