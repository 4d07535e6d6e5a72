package endpoint

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	good := map[string]Spec{
		"stream:unix:/run/vm.sock":   {Kind: Stream, Network: "unix", Address: "/run/vm.sock"},
		"stream:tcp:127.0.0.1:5555":  {Kind: Stream, Network: "tcp", Address: "127.0.0.1:5555"},
		"stream:tcp:[::1]:5555":      {Kind: Stream, Network: "tcp", Address: "[::1]:5555"},
		"dgram:unix:/tmp/a:b.sock":   {Kind: Dgram, Network: "unix", Address: "/tmp/a:b.sock"},
		"seqpacket:unix:/tmp/uml.sk": {Kind: Seqpacket, Network: "unix", Address: "/tmp/uml.sk"},
		"vhost-user:/run/vm1.sock":   {Kind: VhostUser, Network: "unix", Address: "/run/vm1.sock"},
		"vhost-user:rel/a:b.sock":    {Kind: VhostUser, Network: "unix", Address: "rel/a:b.sock"},
	}
	for in, want := range good {
		got, err := Parse(in)
		if err != nil || got != want {
			t.Errorf("Parse(%q) = %+v, %v; want %+v", in, got, err, want)
		}
		if err == nil && got.String() != in {
			t.Errorf("String() = %q, want %q", got.String(), in)
		}
	}
	if got, err := Parse("vhost-user:unix:/run/vm.sock"); err != nil || got != (Spec{Kind: VhostUser, Network: "unix", Address: "/run/vm.sock"}) {
		t.Errorf("Parse(vhost-user:unix:...) = %+v, %v", got, err)
	}
	for in, wantMsg := range map[string]string{
		"":                        "KIND:NETWORK:ADDRESS",
		"stream:unix:":            "KIND:NETWORK:ADDRESS",
		"/tmp/vm.sock":            "KIND:NETWORK:ADDRESS",
		"vhost:unix:/tmp/x":       "unknown kind",
		"stream:udp:1.2.3.4:5":    "does not run over",
		"dgram:tcp:127.0.0.1:999": "does not run over",
		"vhost-user:":             "vhost-user:PATH",
		"vhost-user:unix:":        "vhost-user:PATH",
	} {
		if _, err := Parse(in); err == nil || !strings.Contains(err.Error(), wantMsg) {
			t.Errorf("Parse(%q) error %v, want one mentioning %q", in, err, wantMsg)
		}
	}
}

func TestListenClaimsSocketPath(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "vm.sock")
	// A stale socket file (its listener gone) is replaced.
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	ln, err := Listen(Spec{Kind: Stream, Network: "unix", Address: path})
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	defer ln.Close()
	// A live one is refused.
	if _, err := Listen(Spec{Kind: Stream, Network: "unix", Address: path}); !errors.Is(err, ErrSocketInUse) {
		t.Fatalf("second listener on a live socket: %v, want ErrSocketInUse", err)
	}
	// A regular file is never removed.
	file := filepath.Join(dir, "file")
	os.WriteFile(file, []byte("keep"), 0o600)
	if _, err := Listen(Spec{Kind: Stream, Network: "unix", Address: file}); err == nil {
		t.Fatal("listening over a regular file succeeded")
	}
	if b, _ := os.ReadFile(file); string(b) != "keep" {
		t.Fatal("a regular file was clobbered")
	}
}
