package e2e

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestLibraryCrossBuilds builds every library package for macOS and
// FreeBSD, the other hosts VMMs (vfkit, krunkit, bhyve) run on: Linux-only
// parts must stay behind build tags.
func TestLibraryCrossBuilds(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the tree twice")
	}
	for _, target := range [][2]string{{"darwin", "arm64"}, {"freebsd", "amd64"}} {
		env := append(os.Environ(), "GOOS="+target[0], "GOARCH="+target[1], "CGO_ENABLED=0")
		list := exec.Command("go", "list", "-e", "-f", "{{if and .GoFiles (ne .Name \"main\")}}{{.ImportPath}}{{end}}", "../../...")
		list.Env = env
		out, err := list.Output()
		if err != nil {
			t.Fatalf("%s: go list: %v", target[0], err)
		}
		var pkgs []string
		for _, p := range strings.Fields(string(out)) {
			// Programs (commands, the benchmark) and tests are Linux-only;
			// the library is not.
			if !strings.Contains(p, "/cmd/") && !strings.Contains(p, "/test/") {
				pkgs = append(pkgs, p)
			}
		}
		if len(pkgs) < 10 {
			t.Fatalf("%s: only %d library packages found: %v", target[0], len(pkgs), pkgs)
		}
		build := exec.Command("go", append([]string{"build"}, pkgs...)...)
		build.Env = env
		if out, err := build.CombinedOutput(); err != nil {
			t.Errorf("GOOS=%s GOARCH=%s go build: %v\n%s", target[0], target[1], err, out)
		}
	}
}
