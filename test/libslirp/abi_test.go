package libslirp

import (
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/slipway-net/slipway/test/testenv"
)

// shapes are the library's two shapes (SLIPWAY_LIBSLIRP): the core in
// the host's process, and in a slipway-slirp-server process of its own.
var shapes = []string{"inproc", "process"}

// defaultShape is the shape with SLIPWAY_LIBSLIRP unset, outside a
// seccomp sandbox (under one, it is inproc).
const defaultShape = "process"

// TestCABI builds libslirp/test/abi.c and runs it against the library in
// each shape: the ABI's edge cases, the host's signal mask, and a DHCP
// table migrated both ways with Debian's libslirp.
func TestCABI(t *testing.T) {
	dir := libDir(t)
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "abi")
	cc := exec.Command("cc", "-O1", "-g", "-Wall", "-Wextra", "-Werror", "-o", bin,
		filepath.Join(root, "libslirp/test/abi.c"), "-ldl", "-lpthread")
	if out, err := cc.CombinedOutput(); err != nil {
		t.Fatalf("cc abi.c: %v\n%s", err, out)
	}
	for _, shape := range shapes {
		t.Run(shape, func(t *testing.T) {
			cmd := exec.Command(bin, filepath.Join(dir, "libslirp.so.0"), debianLibslirp)
			cmd.Env = append(os.Environ(), "SLIPWAY_LIBSLIRP="+shape)
			out, err := cmd.CombinedOutput()
			t.Logf("abi:\n%s", out)
			if err != nil || !strings.Contains(string(out), "\nPASS\n") {
				t.Fatalf("abi: %v", err)
			}
		})
	}
}

// TestSymbolsMatchDebian: the library defines exactly the functions
// Debian's libslirp0 does, each under the same symbol version.
func TestSymbolsMatchDebian(t *testing.T) {
	dir := libDir(t)
	testenv.RequireTools(t, "readelf")
	ours := definedSymbols(t, filepath.Join(dir, "libslirp.so.0"))
	theirs := definedSymbols(t, debianLibslirp)
	if strings.Join(ours, "\n") != strings.Join(theirs, "\n") {
		t.Fatalf("exports differ:\nslipway: %v\nDebian:  %v", ours, theirs)
	}
	if len(ours) < 20 {
		t.Errorf("only %d functions found: is readelf's layout another?", len(ours))
	}
}

func definedSymbols(t *testing.T, lib string) []string {
	t.Helper()
	out, err := exec.Command("readelf", "--dyn-syms", "-W", lib).Output()
	if err != nil {
		t.Fatalf("readelf %s: %v", lib, err)
	}
	var syms []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		// Num: Value Size Type Bind Vis Ndx Name
		if len(f) == 8 && f[3] == "FUNC" && f[6] != "UND" && strings.HasPrefix(f[7], "slirp_") {
			syms = append(syms, f[7])
		}
	}
	sort.Strings(syms)
	return syms
}
