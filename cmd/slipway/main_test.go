package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/slipway-net/slipway/config"
)

// Installed or linked as bhyve's helper or as slirp4netns, slipway runs
// that command with the whole command line.
func TestProgramArgs(t *testing.T) {
	for _, c := range []struct {
		argv, want []string
	}{
		{nil, nil},
		{[]string{"slipway"}, []string{}},
		{[]string{"/usr/bin/slipway", "serve", "--mtu", "9000"}, []string{"serve", "--mtu", "9000"}},
		{[]string{"/usr/libexec/bhyve-slirp-helper", "-S", "3"}, []string{"bhyve-helper", "-S", "3"}},
		{[]string{"slirp4netns", "--configure", "1234", "tap0"}, []string{"slirp4netns", "--configure", "1234", "tap0"}},
		// Only the base name counts, and only an exact one.
		{[]string{"/opt/slirp4netns/slipway", "run"}, []string{"run"}},
		{[]string{"/usr/bin/slirp4netns-old", "1234"}, []string{"1234"}},
	} {
		if got := programArgs(c.argv); !reflect.DeepEqual(got, c.want) {
			t.Errorf("programArgs(%q) = %q, want %q", c.argv, got, c.want)
		}
	}
}

// What the user got wrong exits 2, naming the flag; a clean run exits 0.
func TestExitStatus(t *testing.T) {
	wantUsage(t, []string{"serve", "--no-such-flag"}, "unknown flag", "--no-such-flag")
	wantUsage(t, []string{"frobnicate"}, "unknown command", "frobnicate")
	wantUsage(t, []string{"run", "--mtu"}, "flag needs an argument", "--mtu")
	wantUsage(t, []string{"run"}, "requires at least 1 arg")
	wantUsage(t, []string{"version", "extra"}, "unknown command", "extra")
	// Validation after parsing: a config.FieldError, still exit 2.
	wantUsage(t, []string{"serve", "--cidr", "10.0.0.0/30", "--listen", "stream:unix:/nonexistent/s"}, "--cidr", "/29")
	wantUsage(t, []string{"serve", "--mtu", "100", "--listen", "stream:unix:/nonexistent/s"}, "--mtu", `"100"`)

	code, stdout, _ := cli(t, "version")
	if code != 0 || !strings.HasPrefix(stdout, "slipway "+version+"\ncommit:   ") || !strings.Contains(stdout, "\ngo:       go1.") {
		t.Errorf("slipway version: exit %d, %q", code, stdout)
	}
	// --version prints the same.
	if code, flag, _ := cli(t, "--version"); code != 0 || flag != stdout {
		t.Errorf("slipway --version: exit %d, %q, want %q", code, flag, stdout)
	}
}

func TestIsFlagError(t *testing.T) {
	for msg, want := range map[string]bool{
		"unknown flag: --x":                       true,
		`invalid argument "q" for "--mtu" flag`:   true,
		"accepts at most 2 arg(s), received 3":    true,
		"listen unix /run/x.sock: address in use": false,
		"exit status 3":                           false,
	} {
		if got := isFlagError(errors.New(msg)); got != want {
			t.Errorf("isFlagError(%q) = %v, want %v", msg, got, want)
		}
	}
}

// The config file lies under the flags: a flag given on the command line
// wins, one left out keeps the file's value, and defaults derive from the
// result.
func TestResolveConfigFileUnderFlags(t *testing.T) {
	file := filepath.Join(t.TempDir(), "slipway.yaml")
	yaml := "cidr: 10.9.0.0/24\nmtu: 9000\nhostname: fromfile\nlog-level: debug\n" +
		"dns-upstream: [\"1.1.1.1\"]\nlimits:\n  max-flows: 77\n"
	if err := os.WriteFile(file, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	nf, fs, err := parseNetFlags("--config", file, "--mtu", "4000", "--dns-upstream", "9.9.9.9", "--max-pending-connects", "5")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := nf.resolve(fs)
	if err != nil {
		t.Fatal(err)
	}
	want := config.Config{
		CIDR: netip.MustParsePrefix("10.9.0.0/24"), MTU: 4000, Hostname: "fromfile", LogLevel: "debug",
		DNSUpstreams: []config.DNSServer{{AddrPort: netip.MustParseAddrPort("9.9.9.9:53")}},
		Limits:       config.Limits{MaxFlows: 77, MaxPendingConnects: 5},
	}
	if err := want.Complete(); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("resolved\n%+v\nwant\n%+v", cfg, want)
	}
	if cfg.Gateway != netip.MustParseAddr("10.9.0.2") {
		t.Errorf("gateway %v not derived from the file's --cidr", cfg.Gateway)
	}
}

func TestResolveErrors(t *testing.T) {
	nf, fs, err := parseNetFlags("--config", filepath.Join(t.TempDir(), "missing.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = nf.resolve(fs)
	var ue usageError
	if !errors.As(err, &ue) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing config file: %v, want a usage error wrapping ErrNotExist", err)
	}

	nf, fs, err = parseNetFlags("--cidr", "10.0.2.0/24", "--gateway", "10.0.3.2")
	if err != nil {
		t.Fatal(err)
	}
	_, err = nf.resolve(fs)
	var fe *config.FieldError
	if !errors.As(err, &fe) || fe.Flag != "gateway" || fe.Value != "10.0.3.2" {
		t.Errorf("gateway outside --cidr: %v, want a FieldError for --gateway", err)
	}
}

func TestNewLoggerLevel(t *testing.T) {
	for level, want := range map[string]slog.Level{"debug": slog.LevelDebug, "warn": slog.LevelWarn, "error": slog.LevelError, "info": slog.LevelInfo} {
		l := newLogger(level, new(strings.Builder))
		if !l.Enabled(context.Background(), want) || l.Enabled(context.Background(), want-1) {
			t.Errorf("newLogger(%q) does not log from %v up exactly", level, want)
		}
	}
}

func TestSignalReady(t *testing.T) {
	if err := signalReady(-1); err != nil {
		t.Errorf("no --ready-fd: %v", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// signalReady closes the fd it wrote to, as the parent expects; it
	// gets a duplicate so that w's own close stays w's.
	fd, err := unix.Dup(int(w.Fd()))
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	if err := signalReady(fd); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	if err != nil || string(got) != "1" {
		t.Errorf("ready fd got %q (%v), want \"1\" and then end of file", got, err)
	}
	// A number that is no open file is the user's mistake, named.
	err = signalReady(1 << 20)
	if !errors.As(err, new(usageError)) || !strings.Contains(err.Error(), "--ready-fd") {
		t.Errorf("closed --ready-fd: %v", err)
	}
}
