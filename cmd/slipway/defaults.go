package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// configCandidates are the config files tried, in order, when --config is
// not given: the user's ($XDG_CONFIG_HOME, by default ~/.config), then the
// system's. The first that exists is read; none is fine.
func configCandidates(getenv func(string) string) []string {
	var out []string
	if x := getenv("XDG_CONFIG_HOME"); filepath.IsAbs(x) {
		out = append(out, filepath.Join(x, "slipway", "config.yaml"))
	} else if h := getenv("HOME"); filepath.IsAbs(h) {
		out = append(out, filepath.Join(h, ".config", "slipway", "config.yaml"))
	}
	return append(out, "/etc/slipway/config.yaml")
}

// defaultConfigFile is the first of configCandidates that exists, or "".
// One that exists and cannot be read is still returned: loading it then
// says why, rather than slipway running without the file its user wrote.
// One whose directory this user cannot look into (another user's HOME,
// after setpriv or su without a new environment) is not this user's.
func defaultConfigFile() string {
	for _, p := range configCandidates(os.Getenv) {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// errNoDefaultAPI: the default API socket has no place to go.
var errNoDefaultAPI = errors.New("no runtime directory: XDG_RUNTIME_DIR is not set")

// defaultAPIDir is where serve puts its API socket when --api-socket is
// not given: /run/slipway for root (where slipway@.service's are), else
// $XDG_RUNTIME_DIR/slipway, the user's own runtime directory.
func defaultAPIDir(euid int, getenv func(string) string) (string, error) {
	if euid == 0 {
		return "/run/slipway", nil
	}
	rt := getenv("XDG_RUNTIME_DIR")
	if rt == "" || !filepath.IsAbs(rt) {
		return "", errNoDefaultAPI
	}
	return filepath.Join(rt, "slipway"), nil
}

// defaultAPISocket makes the default API socket's directory and returns a
// path in it of this process's own, serve-PID.sock: several serves may run
// at once (one per group of VMs, or per test), and each prints its path
// at start. Sockets of serves that died without removing theirs
// (nothing answers on them) are removed.
func defaultAPISocket() (string, error) {
	dir, err := defaultAPIDir(os.Geteuid(), os.Getenv)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	sweepStaleSockets(dir)
	return filepath.Join(dir, fmt.Sprintf("serve-%d.sock", os.Getpid())), nil
}

// maxSweep bounds the sockets one start looks at, and sweepTimeout how
// long it waits on one (a live serve whose backlog is full).
const (
	maxSweep     = 64
	sweepTimeout = time.Second
)

// sweepStaleSockets removes serve-*.sock sockets in dir that refuse
// connections: their serve is gone.
func sweepStaleSockets(dir string) {
	names, _ := filepath.Glob(filepath.Join(dir, "serve-*.sock"))
	if len(names) > maxSweep {
		names = names[:maxSweep]
	}
	for _, p := range names {
		if fi, err := os.Lstat(p); err != nil || fi.Mode()&os.ModeSocket == 0 {
			continue
		}
		c, err := net.DialTimeout("unix", p, sweepTimeout)
		if err == nil {
			c.Close()
			continue
		}
		if errors.Is(err, unix.ECONNREFUSED) {
			os.Remove(p)
		}
	}
}
