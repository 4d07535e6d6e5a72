package vmtest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// tree makes files (empty, or executable scripts for .sh) under a
// temporary root and returns the root.
func tree(t *testing.T, files ...string) string {
	t.Helper()
	root := t.TempDir()
	for _, f := range files {
		p := filepath.Join(root, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// TestBuildScriptFromNestedModule: the benchmark runs in bench/, a module
// of its own inside slipway's tree, and still finds slipway's build.sh.
func TestBuildScriptFromNestedModule(t *testing.T) {
	root := tree(t, "go.mod", "test/guest/build.sh", "test/vmtest/a_test.go", "bench/go.mod", "bench/internal/x/x.go")
	for _, wd := range []string{".", "test/vmtest", "bench", "bench/internal/x"} {
		t.Chdir(filepath.Join(root, wd))
		got, err := buildScript()
		if err != nil {
			t.Fatalf("from %s: %v", wd, err)
		}
		// TempDir may sit behind a symlink; compare what both resolve to.
		want, _ := filepath.EvalSymlinks(filepath.Join(root, "test/guest/build.sh"))
		if got, _ = filepath.EvalSymlinks(got); got != want {
			t.Errorf("from %s: %s, want %s", wd, got, want)
		}
	}
}

func TestBuildScriptMissing(t *testing.T) {
	for _, c := range []struct {
		files []string
		want  string
	}{
		{[]string{"src/a.go"}, "no go.mod above"},
		{[]string{"go.mod", "src/a.go"}, "no test/guest/build.sh beside any go.mod"},
	} {
		root := tree(t, c.files...)
		t.Chdir(filepath.Join(root, "src"))
		_, err := buildScript()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("tree %v: err = %v, want one saying %q", c.files, err, c.want)
		}
	}
}
