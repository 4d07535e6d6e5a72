package vmtest

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestNewcRoundTrip checks the archive with GNU cpio, an independent
// reader of the format: every file comes back with its content and mode,
// parents included.
func TestNewcRoundTrip(t *testing.T) {
	if _, err := exec.LookPath("cpio"); err != nil {
		t.Skip("cpio not installed")
	}
	files := map[string][]byte{
		"/test.sh":              []byte("echo hi\n"),
		"/etc/slipway/a.conf":   []byte("odd length"),
		"/srv/www/deep/x.bin":   bytes.Repeat([]byte{0, 1, 2}, 1001),
		"/srv/www/empty":        nil,
		"/usr/local/bin/helper": []byte("#!/bin/sh\nexit 0\n"),
	}
	var archive bytes.Buffer
	if err := writeNewc(&archive, files, 1700000000); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cmd := exec.Command("cpio", "-i", "-d", "--quiet", "--no-absolute-filenames")
	cmd.Dir = dir
	cmd.Stdin = &archive
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cpio -i: %v\n%s", err, out)
	}
	for name, want := range files {
		p := filepath.Join(dir, name)
		got, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("reading %s back: %v", name, err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: got %d bytes, want %d", name, len(got), len(want))
		}
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o755 {
			t.Errorf("%s: mode %v, want 0755", name, st.Mode().Perm())
		}
	}
}

func TestNewcRejectsBadPaths(t *testing.T) {
	for _, name := range []string{"relative", "/", "/a/../b", "/a//b", "/a/"} {
		err := writeNewc(&bytes.Buffer{}, map[string][]byte{name: nil}, 0)
		if err == nil {
			t.Errorf("path %q was accepted", name)
		}
	}
	err := writeNewc(&bytes.Buffer{}, map[string][]byte{"/a": nil, "/a/b": nil}, 0)
	if err == nil {
		t.Error("a path that is both file and directory was accepted")
	}
}

func TestParseLease(t *testing.T) {
	lines := []string{
		"[    1.0] some kernel line",
		"SLIPWAY-LEASE ip=10.0.2.15 mask=255.255.255.0 prefix=24 router=10.0.2.2 dns=10.0.2.3,10.0.2.4 mtu= domain=",
		"SLIPWAY-LEASE ip=10.0.2.16 mask=255.255.255.0 prefix=24 router=10.0.2.2 dns=10.0.2.3 mtu=1500 search=a.example,b.example",
		"SLIPWAY-GUEST-READY",
	}
	lease := parseLease(lines)
	want := map[string]string{
		"ip": "10.0.2.16", "mask": "255.255.255.0", "prefix": "24", "router": "10.0.2.2",
		"dns": "10.0.2.3", "mtu": "1500", "search": "a.example,b.example",
	}
	if len(lease) != len(want) {
		t.Errorf("lease = %v, want %v", lease, want)
	}
	for k, v := range want {
		if lease[k] != v {
			t.Errorf("lease[%q] = %q, want %q", k, lease[k], v)
		}
	}
	if got := parseLease(lines[3:]); got != nil {
		t.Errorf("no lease line, got %v", got)
	}
}
