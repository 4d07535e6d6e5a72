// Package install tests what a user installing slipway gets: the version
// a build reports, and the Debian package of `make package` installed into
// a clean root with dpkg, its files, links and systemd units.
package install

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/slipway-net/slipway/test/testenv"
)

// snapshot is a copy of this checkout's files (committed or not, minus
// what .gitignore ignores) committed to a git repository of its own: a
// fresh clone, as CI has and as a user builds from, whose commit the test
// knows. A git worktree would not do: Go stamps no VCS information where
// .git is a file.
var snapshotOnce = sync.OnceValues(snapshotCopy)

// snapshotDir is the copy, once made (TestMain removes it).
var snapshotDir string

func snapshotCopy() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", err
	}
	src := filepath.Dir(strings.TrimSpace(string(out)))
	dir, err := os.MkdirTemp("", "slipway-install-")
	if err != nil {
		return "", err
	}
	snapshotDir = dir
	ls := exec.Command("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard")
	ls.Dir = src
	files, err := ls.Output()
	if err != nil {
		return "", err
	}
	for _, f := range strings.Split(strings.TrimRight(string(files), "\x00"), "\x00") {
		fi, err := os.Lstat(filepath.Join(src, f))
		if err != nil || !fi.Mode().IsRegular() {
			continue // deleted in the working tree, or a link
		}
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			return "", err
		}
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(f)), 0o755); err != nil {
			return "", err
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, fi.Mode().Perm()); err != nil {
			return "", err
		}
	}
	for _, args := range [][]string{{"init", "-q"}, {"add", "-A"}, {"-c", "user.name=slipway test", "-c", "user.email=test@slipway.invalid", "commit", "-q", "-m", "snapshot"}} {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", &exec.ExitError{Stderr: out}
		}
	}
	return dir, nil
}

// TestMain removes the snapshot once every test is done with it.
func TestMain(m *testing.M) {
	code := m.Run()
	if snapshotDir != "" {
		os.RemoveAll(snapshotDir)
	}
	os.Exit(code)
}

func snapshot(t *testing.T) string {
	t.Helper()
	testenv.RequireTools(t, "git", "make", "go")
	dir, err := snapshotOnce()
	if err != nil {
		t.Fatalf("copy of the checkout: %v", err)
	}
	return dir
}

// run runs a command in dir and returns its standard output.
func run(t *testing.T, dir, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out, stderr.Bytes())
	}
	return string(out)
}

// make builds with the Makefile as a user does; it inherits GOFLAGS, which
// here turns VCS stamping off, to show the Makefile turns it on.
var makeMu sync.Mutex

func mk(t *testing.T, dir string, args ...string) string {
	t.Helper()
	makeMu.Lock()
	defer makeMu.Unlock()
	return run(t, dir, "make", append([]string{"--no-print-directory"}, args...)...)
}

// slipway version tells which commit a binary was built from, and whether
// the checkout had changes, without any -ldflags; -ldflags override it.
func TestVersionFromTheCheckout(t *testing.T) {
	dir := snapshot(t)
	head := strings.TrimSpace(run(t, dir, "git", "rev-parse", "HEAD"))
	bin := filepath.Join(dir, "bin", "slipway")

	mk(t, dir, "build")
	out := run(t, dir, bin, "version")
	lines := strings.Split(out, "\n")
	if len(lines) < 3 || !strings.HasPrefix(lines[0], "slipway v0.0.0-") || !strings.HasSuffix(lines[0], head[:12]) ||
		!strings.HasPrefix(lines[1], "commit:   "+head+", ") || strings.Contains(lines[1], "modified") || !strings.HasPrefix(lines[2], "go:       go1.") {
		t.Errorf("clean checkout at %s: slipway version printed\n%s", head, out)
	}
	if flag := run(t, dir, bin, "--version"); flag != out {
		t.Errorf("--version printed\n%s\nnot what version printed", flag)
	}

	// A change not committed: the same commit, marked modified.
	f, err := os.OpenFile(filepath.Join(dir, "README.md"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("\nA local change.\n")
	f.Close()
	defer run(t, dir, "git", "checkout", "--", "README.md")
	mk(t, dir, "build")
	out = run(t, dir, bin, "version")
	if lines := strings.Split(out, "\n"); !strings.HasSuffix(lines[0], "+dirty") || !strings.HasPrefix(lines[1], "commit:   "+head+" (modified)") {
		t.Errorf("modified checkout: slipway version printed\n%s", out)
	}

	mk(t, dir, "build", "VERSION=1.2.3", "COMMIT=0123456789abcdef")
	out = run(t, dir, bin, "version")
	if lines := strings.Split(out, "\n"); lines[0] != "slipway 1.2.3" || lines[1] != "commit:   0123456789abcdef" {
		t.Errorf("VERSION=1.2.3 COMMIT=0123456789abcdef: slipway version printed\n%s", out)
	}
}

// The package installs into an empty root with dpkg, holds what a user
// looks for where Debian puts it, its units pass systemd-analyze verify,
// and it removes cleanly.
func TestPackageInstallsIntoACleanRoot(t *testing.T) {
	testenv.RequireTools(t, "dpkg", "dpkg-deb", "systemd-analyze")
	dir := snapshot(t)
	debs := t.TempDir()
	out := mk(t, dir, "package", "DEB_DIR="+debs)
	matches, _ := filepath.Glob(filepath.Join(debs, "slipway_*_*.deb"))
	if len(matches) != 1 {
		t.Fatalf("make package made %q in %s:\n%s", matches, debs, out)
	}
	deb := matches[0]
	head := strings.TrimSpace(run(t, dir, "git", "rev-parse", "HEAD"))
	fields := run(t, dir, "dpkg-deb", "--field", deb, "Package", "Version", "Architecture")
	goarch := strings.TrimSpace(run(t, dir, "go", "env", "GOARCH"))
	if !strings.Contains(fields, "Package: slipway\n") || !strings.Contains(fields, "Version: 0.0.0~") || !strings.Contains(fields, head[:12]) ||
		!strings.Contains(fields, "Architecture: "+goarch+"\n") {
		t.Errorf("%s: control fields\n%s", deb, fields)
	}

	// An empty root with dpkg's database, and systemd's own targets
	// (every system that runs the units has them) for verify to resolve
	// the units' default dependencies against.
	root := t.TempDir()
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates", "usr/lib/systemd/system"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "var/lib/dpkg/status"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, dir, "dpkg", "--root", root, "--force-not-root", "--force-depends", "-i", deb)
	if st := run(t, dir, "dpkg", "--root", root, "-s", "slipway"); !strings.Contains(st, "Status: install ok installed") {
		t.Errorf("dpkg -s slipway:\n%s", st)
	}

	// The binary, and the drop-in names leading to it.
	bin := filepath.Join(root, "usr/bin/slipway")
	if v := run(t, dir, bin, "version"); !strings.Contains(v, "commit:   "+head) {
		t.Errorf("installed slipway version:\n%s", v)
	}
	for name, want := range map[string]string{
		"slirp4netns": "slirp4netns version ", "pasta": "pasta (slipway ", "gvproxy": "gvproxy version slipway-",
		"bhyve-slirp-helper": "",
	} {
		link := filepath.Join(root, "usr/libexec/slipway", name)
		if target, err := os.Readlink(link); err != nil || target != "../../bin/slipway" {
			t.Errorf("%s: link to %q (%v), want ../../bin/slipway", link, target, err)
			continue
		}
		if want != "" {
			if v := run(t, dir, link, "--version"); !strings.HasPrefix(v, want) {
				t.Errorf("%s --version: %q, want %q...", link, v, want)
			}
		}
	}

	// A man page per command, each a man page.
	for _, page := range []string{"slipway", "slipway-serve", "slipway-run", "slipway-ctl", "slipway-ctl-forward-add", "slipway-version", "slipway-slirp4netns", "slipway-pasta", "slipway-gvproxy", "slipway-bhyve-helper"} {
		text := gunzip(t, filepath.Join(root, "usr/share/man/man1", page+".1.gz"))
		if !strings.HasPrefix(text, ".nh\n.TH \""+strings.ToUpper(page)+"\" \"1\"") || !strings.Contains(text, ".SH NAME\n") {
			t.Errorf("%s.1.gz is no man page:\n%.200s", page, text)
		}
	}
	if serve := gunzip(t, filepath.Join(root, "usr/share/man/man1/slipway-serve.1.gz")); !strings.Contains(serve, `\fB--listen\fP=`) {
		t.Error("slipway-serve(1) does not describe --listen")
	}
	// Completions where bash-completion, zsh and fish look.
	for path, want := range map[string]string{
		"usr/share/bash-completion/completions/slipway":    "__start_slipway",
		"usr/share/zsh/vendor-completions/_slipway":        "#compdef slipway",
		"usr/share/fish/vendor_completions.d/slipway.fish": "complete -c slipway",
	} {
		b, err := os.ReadFile(filepath.Join(root, path))
		if err != nil || !bytes.Contains(b, []byte(want)) {
			t.Errorf("/%s: %v, want a script with %q", path, err, want)
		}
	}

	// The units, and every man page their Documentation= names.
	for _, unit := range []string{"slipway@.service", "slipway@.socket"} {
		b, err := os.ReadFile(filepath.Join(root, "usr/lib/systemd/system", unit))
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			if doc, ok := strings.CutPrefix(sc.Text(), "Documentation="); ok {
				for _, ref := range strings.Fields(doc) {
					page := strings.TrimSuffix(strings.TrimPrefix(ref, "man:"), "(1)")
					if _, err := os.Stat(filepath.Join(root, "usr/share/man/man1", page+".1.gz")); err != nil {
						t.Errorf("%s: Documentation=%s: %v", unit, ref, err)
					}
				}
			}
		}
	}
	for _, target := range []string{"sysinit.target", "basic.target", "shutdown.target", "sockets.target", "multi-user.target", "network.target"} {
		if b, err := os.ReadFile(filepath.Join("/usr/lib/systemd/system", target)); err == nil {
			os.WriteFile(filepath.Join(root, "usr/lib/systemd/system", target), b, 0o644)
		}
	}
	// verify prints what it finds wrong (an unknown key, a bad value)
	// and exits 0 for most of it: both count. --man=no: it would look
	// for the pages on this machine, not in root (checked above).
	verify := exec.Command("systemd-analyze", "verify", "--man=no", "--root="+root, "slipway@net0.service", "slipway@net0.socket")
	if out, err := verify.CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}

	// Every file is the package's: removing it leaves only what the test
	// made.
	listed := strings.Fields(run(t, dir, "dpkg", "--root", root, "-L", "slipway"))
	for _, want := range []string{"/usr/bin/slipway", "/usr/libexec/slipway/pasta", "/usr/lib/systemd/system/slipway@.socket", "/usr/share/doc/slipway/copyright"} {
		if !slices.Contains(listed, want) {
			t.Errorf("dpkg -L slipway does not list %s", want)
		}
	}
	run(t, dir, "dpkg", "--root", root, "--force-not-root", "--force-depends", "-r", "slipway")
	for _, p := range []string{"usr/bin/slipway", "usr/libexec/slipway", "usr/share/man/man1/slipway.1.gz", "usr/lib/systemd/system/slipway@.service"} {
		if _, err := os.Lstat(filepath.Join(root, p)); !os.IsNotExist(err) {
			t.Errorf("/%s still there after dpkg -r (%v)", p, err)
		}
	}
}

func gunzip(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Error(err)
		return ""
	}
	defer f.Close()
	z, err := gzip.NewReader(f)
	if err != nil {
		t.Errorf("%s: %v", path, err)
		return ""
	}
	b, err := io.ReadAll(z)
	if err != nil {
		t.Errorf("%s: %v", path, err)
	}
	return string(b)
}
