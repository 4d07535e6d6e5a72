package statefile

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slipway-net/slipway/config"
	"github.com/slipway-net/slipway/network"
)

func sample() network.State {
	return network.State{Version: network.StateVersion, DHCP4: []network.StateLease4{
		{MAC: "52:54:00:00:40:01", Addr: netip.MustParseAddr("10.0.2.15"), Expires: time.Unix(1900000000, 0).UTC()},
	}}
}

func TestSaveLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	s := New(OS{}, path)
	if _, ok, err := s.Load(); ok || err != nil {
		t.Fatalf("Load of a missing file: %v %v, want nothing and no error", ok, err)
	}
	if err := s.Save(sample()); err != nil {
		t.Fatal(err)
	}
	st, ok, err := s.Load()
	if !ok || err != nil || len(st.DHCP4) != 1 || st.DHCP4[0].MAC != "52:54:00:00:40:01" {
		t.Fatalf("Load: %+v %v %v", st, ok, err)
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("directory holds %d entries after a save, want the file alone", len(ents))
	}
}

// failing is OS with one step failing.
type failing struct {
	OS
	rename error
}

func (f failing) Rename(o, n string) error {
	if f.rename != nil {
		return f.rename
	}
	return f.OS.Rename(o, n)
}

// A save that fails leaves the old file whole and no temporary behind.
func TestSaveFailureKeepsOldFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	if err := New(OS{}, path).Save(sample()); err != nil {
		t.Fatal(err)
	}
	old, _ := os.ReadFile(path)
	st := sample()
	st.DHCP4 = nil
	err := New(failing{rename: errors.New("EXDEV")}, path).Save(st)
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("failed save: %v, want an error naming %s", err, path)
	}
	if now, _ := os.ReadFile(path); string(now) != string(old) {
		t.Error("a failed save changed the file")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("%d entries after a failed save, want 1", len(ents))
	}
}

func TestLoadRefusesBadFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	for _, c := range []struct{ content, want string }{
		{`{"version":1,`, "corrupt state"},
		{`{"version":7}`, "newer slipway"},
		{strings.Repeat(" ", network.MaxStateBytes+1), "larger than"},
	} {
		os.WriteFile(path, []byte(c.content), 0o600)
		_, ok, err := New(OS{}, path).Load()
		if ok || err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Load of %.20q: %v, want an error naming the file and saying %q", c.content, err, c.want)
		}
	}
	os.Remove(path)
	os.Mkdir(path, 0o700) // a directory where the file should be
	if _, _, err := New(OS{}, path).Load(); err == nil {
		t.Error("Load of a directory: no error")
	}
}

// The Saver writes the file when the state changes, not only at Close:
// a slipway killed after a change still has it.
func TestSaverWritesOnChange(t *testing.T) {
	cfg := config.Default()
	cfg.DNSUpstreams = []config.DNSServer{{AddrPort: netip.MustParseAddrPort("127.0.0.1:53")}}
	n, err := network.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	path := filepath.Join(t.TempDir(), "state.json")
	store := New(OS{}, path)
	sv, err := Start(n, store, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer sv.Close()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := uint16(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	if _, err := n.Publish(config.PublishRule{Proto: config.TCP, HostAddr: netip.MustParseAddr("127.0.0.1"), HostPort: port, GuestPort: 80}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the file never showed the forward")
		}
		st, ok, err := store.Load()
		if err != nil {
			t.Fatal(err)
		}
		if ok && len(st.Forwards) == 1 && st.Forwards[0].HostPort == port {
			break
		}
	}
}
