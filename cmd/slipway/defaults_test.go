package main

import (
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// Without --config the user's file comes first, then the system's.
func TestConfigCandidates(t *testing.T) {
	for _, c := range []struct {
		env  map[string]string
		want []string
	}{
		{map[string]string{"XDG_CONFIG_HOME": "/x/cfg", "HOME": "/home/u"}, []string{"/x/cfg/slipway/config.yaml", "/etc/slipway/config.yaml"}},
		{map[string]string{"HOME": "/home/u"}, []string{"/home/u/.config/slipway/config.yaml", "/etc/slipway/config.yaml"}},
		// A relative XDG_CONFIG_HOME is invalid by the XDG spec: ignored.
		{map[string]string{"XDG_CONFIG_HOME": "rel", "HOME": "/home/u"}, []string{"/home/u/.config/slipway/config.yaml", "/etc/slipway/config.yaml"}},
		{map[string]string{}, []string{"/etc/slipway/config.yaml"}},
	} {
		if got := configCandidates(env(c.env)); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%v: %q, want %q", c.env, got, c.want)
		}
	}
}

// The user's config file is read when --config is not given; --config
// names another instead; a broken default file is an error naming it.
func TestDefaultConfigFile(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", dir)
	if err := os.MkdirAll(filepath.Join(dir, "slipway"), 0o755); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "slipway", "config.yaml")
	if err := os.WriteFile(file, []byte("mtu: 9000\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	nf, fs, err := parseNetFlags()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := nf.resolve(fs)
	if err != nil || cfg.MTU != 9000 {
		t.Errorf("default config file: MTU %d (%v), want 9000 from %s", cfg.MTU, err, file)
	}
	other := filepath.Join(dir, "other.yaml")
	if err := os.WriteFile(other, []byte("mtu: 4000\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	nf, fs, _ = parseNetFlags("--config", other)
	if cfg, err := nf.resolve(fs); err != nil || cfg.MTU != 4000 {
		t.Errorf("--config %s: MTU %d (%v), want 4000", other, cfg.MTU, err)
	}
	if err := os.WriteFile(file, []byte("mtu: [\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	nf, fs, _ = parseNetFlags()
	if _, err := nf.resolve(fs); err == nil || !strings.Contains(err.Error(), file) {
		t.Errorf("broken default config file: %v, want an error naming %s", err, file)
	}
}

func TestDefaultAPIDir(t *testing.T) {
	if d, err := defaultAPIDir(0, env(map[string]string{"XDG_RUNTIME_DIR": "/run/user/0"})); d != "/run/slipway" || err != nil {
		t.Errorf("root: %q %v", d, err)
	}
	if d, err := defaultAPIDir(1000, env(map[string]string{"XDG_RUNTIME_DIR": "/run/user/1000"})); d != "/run/user/1000/slipway" || err != nil {
		t.Errorf("user: %q %v", d, err)
	}
	if d, err := defaultAPIDir(1000, env(nil)); err == nil {
		t.Errorf("user without XDG_RUNTIME_DIR: %q, want an error", d)
	}
}

// A serve that died left its socket; the next start removes it, and
// leaves a live serve's and other files alone.
func TestSweepStaleSockets(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, "serve-1.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	live := filepath.Join(dir, "serve-2.sock")
	ll, err := net.Listen("unix", live)
	if err != nil {
		t.Fatal(err)
	}
	defer ll.Close()
	other := filepath.Join(dir, "vm.sock")
	lo, err := net.ListenUnix("unix", &net.UnixAddr{Name: other, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	lo.SetUnlinkOnClose(false)
	lo.Close()
	sweepStaleSockets(dir)
	if _, err := os.Lstat(stale); !os.IsNotExist(err) {
		t.Errorf("stale %s still there (%v)", stale, err)
	}
	for _, p := range []string{live, other} {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("%s removed: %v", p, err)
		}
	}
}
