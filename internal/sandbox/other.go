//go:build !linux

package sandbox

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"

	"golang.org/x/sys/unix"
)

// Every layer but the resource limits is built from Linux's namespaces,
// capabilities, prctl, Landlock and seccomp. On other systems there is no
// separate engine: it runs in the launcher's process, and Enter says so,
// layer by layer, so the start-up log names everything missing rather
// than look confined.

// ActionEnv is SLIPWAY_SECCOMP, which only Linux's seccomp filter reads.
const ActionEnv = "SLIPWAY_SECCOMP"

// Options are the Linux sandbox's; here only MaxFiles and KeepRoot are
// used, the first as a limit, the second in the report.
type Options struct {
	MaxFiles   uint64
	KeepRoot   string
	Filter     Filter
	HostUID    int
	HostUIDWhy string
	BindTCP    []uint16
}

// Filter is the Linux seccomp allow-list's configuration; nothing
// installs it here.
type Filter struct {
	Action string
	Strict bool
}

// IsEngine is false: no engine process is started on this system.
func IsEngine() bool { return false }

// ActionFromEnv is ActionEnv's value.
func ActionFromEnv() string { return os.Getenv(ActionEnv) }

// errLinuxOnly is why a layer is missing here.
var errLinuxOnly = fmt.Errorf("only on Linux (this is %s)", runtime.GOOS)

// Command fails: the confined engine process is Linux-only. Callers run
// the engine in their own process instead, under Enter's report.
func Command(files []*os.File, namespaces, strict bool, keepUID string) (*exec.Cmd, error) {
	return nil, fmt.Errorf("sandbox: a confined engine process exists %w: %w", errLinuxOnly, errors.ErrUnsupported)
}

// HostUID is the uid the engine runs as: this process's.
func HostUID(string) (int, string) { return os.Geteuid(), "the launcher's" }

// NamespacesRefused is false: Command never gets as far as namespaces.
func NamespacesRefused(error) bool { return false }

// Enter applies what this system allows to the calling process (which
// is the launcher too: resource limits) and reports every other layer as
// missing, with why.
func Enter(o Options) Report {
	var r Report
	r.add("engine process", fmt.Errorf("%w: the engine runs in the launcher's process", errLinuxOnly), "")
	if o.KeepRoot != "" {
		r.add("empty root", errors.New(o.KeepRoot), "")
	} else {
		r.add("empty root", errLinuxOnly, "")
	}
	var uidErr error
	if os.Geteuid() == 0 {
		uidErr = errors.New("running as root: only Linux's engine process runs as nobody")
	}
	r.add("not root", uidErr, fmt.Sprintf("uid %d", os.Geteuid()))
	r.add("no capabilities", errLinuxOnly, "")
	r.add("no_new_privs", errLinuxOnly, "")
	r.add("not dumpable", errLinuxOnly, "")
	n, err := limits(o.MaxFiles)
	r.add("rlimits", err, fmt.Sprintf("RLIMIT_CORE 0, RLIMIT_NOFILE %d hard", n))
	r.add("landlock", errLinuxOnly, "")
	r.add("seccomp", errLinuxOnly, "")
	return r
}

// limits: no core dumps, and no more descriptors than the flow limits
// need (the launcher's few are within the room they leave). macOS refuses
// a limit above kern.maxfilesperproc; the soft limit Go set at start is
// within it, so that is the fallback. It returns the limit set.
func limits(maxFiles uint64) (uint64, error) {
	if err := unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{}); err != nil {
		return 0, fmt.Errorf("RLIMIT_CORE: %w", err)
	}
	var cur unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &cur); err != nil {
		return 0, fmt.Errorf("RLIMIT_NOFILE: %w", err)
	}
	set := func(n uint64) error {
		var lim unix.Rlimit
		setRlim(&lim.Cur, n)
		setRlim(&lim.Max, n)
		return unix.Setrlimit(unix.RLIMIT_NOFILE, &lim)
	}
	n := min(maxFiles, rlim(cur.Max))
	err := set(n)
	if err != nil && rlim(cur.Cur) < n {
		n = rlim(cur.Cur)
		err = set(n)
	}
	if err != nil {
		return 0, fmt.Errorf("RLIMIT_NOFILE %d: %w", n, err)
	}
	return n, nil
}

// rlim and setRlim bridge the systems' limit types: uint64 on macOS,
// int64 on FreeBSD.
func rlim[T ~int64 | ~uint64](v T) uint64 {
	if v < 0 {
		return 1<<64 - 1
	}
	return uint64(v)
}

func setRlim[T ~int64 | ~uint64](p *T, n uint64) { *p = T(n) }
