package e2e

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// crossTargets are the systems slipway is built for besides linux/amd64:
// macOS and FreeBSD, where vfkit, krunkit and bhyve run, and Linux on
// arm64.
var crossTargets = [][2]string{
	{"darwin", "arm64"}, {"darwin", "amd64"},
	{"freebsd", "amd64"}, {"freebsd", "arm64"},
	{"linux", "arm64"},
}

// TestCrossBuilds builds, without cgo, every library package and the
// slipway command for each cross target, linking the command (the
// datagram links reach x/sys's recvmsg and sendmsg by linkname, which
// only the linker checks). Linux-only parts must stay behind build tags
// with a stand-in elsewhere: a command that says it is Linux-only, not a
// build failure. Each target is built once, one after the other.
func TestCrossBuilds(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the tree once per target")
	}
	out := t.TempDir()
	for _, target := range crossTargets {
		name := target[0] + "/" + target[1]
		env := append(os.Environ(), "GOOS="+target[0], "GOARCH="+target[1], "CGO_ENABLED=0")
		list := exec.Command("go", "list", "-e", "-f", "{{if and .GoFiles (ne .Name \"main\")}}{{.ImportPath}}{{end}}", "../../...")
		list.Env = env
		listed, err := list.Output()
		if err != nil {
			t.Fatalf("%s: go list: %v", name, err)
		}
		var pkgs []string
		for _, p := range strings.Fields(string(listed)) {
			// Tests' helpers are Linux-only; the library is not.
			if !strings.Contains(p, "/test/") {
				pkgs = append(pkgs, p)
			}
		}
		if len(pkgs) < 10 {
			t.Fatalf("%s: only %d library packages found: %v", name, len(pkgs), pkgs)
		}
		// With -o a directory the command is linked (into it) and the
		// library packages compiled.
		dir := out + "/" + target[0] + "-" + target[1] + "/"
		build := exec.Command("go", append([]string{"build", "-o", dir}, append(pkgs, "../../cmd/slipway")...)...)
		build.Env = env
		if msg, err := build.CombinedOutput(); err != nil {
			t.Errorf("GOOS=%s GOARCH=%s CGO_ENABLED=0 go build: %v\n%s", target[0], target[1], err, msg)
			continue
		}
		if fi, err := os.Stat(dir + "slipway"); err != nil || fi.Size() == 0 {
			t.Errorf("%s: no slipway binary was linked: %v", name, err)
		}
	}
}
