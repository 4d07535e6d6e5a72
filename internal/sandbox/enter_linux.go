package sandbox

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Options say what the engine still needs once it is confined.
type Options struct {
	// MaxFiles is the hard limit on open descriptors: the engine's flow
	// limits plus its own, so that a guest can never make it hold more
	// host sockets than the limits say.
	MaxFiles uint64
	// KeepRoot leaves the host's file system in view (read-only in effect:
	// no system call that opens, creates or changes a file is allowed),
	// for a datagram endpoint that sends to its VMs at their socket paths.
	KeepRoot string
	// Filter is the seccomp allow-list to install last.
	Filter Filter
	// HostUID is the host uid the engine runs as (Command chose it), and
	// why: the report says whether that is root.
	HostUID    int
	HostUIDWhy string
	// Landlock rules: TCP ports the engine may bind (none: every bind is
	// the launcher's; port 0 for --outbound-addr).
	BindTCP []uint16
}

// Enter confines the calling process, which Command started, layer by
// layer; a layer that cannot hold is reported, not fatal, so the caller
// says in one line what protects it. Seccomp comes last: after it, only
// the allow-listed system calls work.
func Enter(o Options) Report {
	var r Report
	// Loaded now: time.Local reads /etc/localtime on first use, which
	// would be a file access the filter kills.
	_, _ = time.Now().Local().Zone()
	// Read while /proc is still there.
	last := lastCap()
	if o.KeepRoot != "" {
		r.add("empty root", errors.New(o.KeepRoot), "")
	} else {
		r.add("empty root", emptyRoot(), "pivot_root into an empty read-only tmpfs")
	}
	var uidErr error
	if o.HostUID == 0 {
		uidErr = errors.New(o.HostUIDWhy)
	}
	r.add("not root", uidErr, fmt.Sprintf("host uid %d, %s", o.HostUID, o.HostUIDWhy))
	r.add("no capabilities", dropCapabilities(last), "effective, permitted, inheritable, ambient and bounding sets empty")
	r.add("no_new_privs", allThreads(unix.PR_SET_NO_NEW_PRIVS, 1), "set")
	r.add("not dumpable", unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0), "no ptrace, no core")
	r.add("rlimits", limits(o.MaxFiles), fmt.Sprintf("RLIMIT_CORE 0, RLIMIT_NOFILE %d hard", o.MaxFiles))
	abi, lerr := landlockRestrict(o.BindTCP)
	r.add("landlock", lerr, fmt.Sprintf("ABI %d: no file access, abstract unix sockets and signals scoped, TCP bind %s", abi, bindWords(o.BindTCP)))
	if o.Filter.Strict {
		r.add("strict", nil, "an empty network namespace; no socket, connect or bind: the launcher opens each host socket, checking the policy")
	}
	n, err := o.Filter.Install()
	r.add("seccomp", err, fmt.Sprintf("allow-list of %d system calls with argument checks, kill the rest, every thread", n))
	return r
}

func bindWords(ports []uint16) string {
	if len(ports) == 0 {
		return "to no port"
	}
	return fmt.Sprintf("only to %v", ports)
}

// emptyRoot makes the root an empty, read-only tmpfs (two inodes, no
// blocks) and forgets the old one, so that no path leads anywhere.
func emptyRoot() error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	dir := os.TempDir()
	if err := unix.Mount("slipway", dir, "tmpfs", unix.MS_NODEV|unix.MS_NOEXEC|unix.MS_NOSUID|unix.MS_RDONLY, "nr_inodes=2,nr_blocks=0,mode=0500"); err != nil {
		return fmt.Errorf("mount tmpfs: %w", err)
	}
	if err := unix.Chdir(dir); err != nil {
		return err
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach the old root: %w", err)
	}
	return unix.Chdir("/")
}

// errCgo is why a cgo build lacks the per-thread layers.
var errCgo = errors.New("a cgo build cannot change every thread (syscall.AllThreadsSyscall); build with CGO_ENABLED=0")

// allThreadsSyscall runs one system call on every thread of the process:
// no_new_privs, the capability sets and securebits are per thread.
func allThreadsSyscall(trap, a1, a2, a3 uintptr) error {
	if cgoBuild {
		return errCgo
	}
	if _, _, e := syscall.AllThreadsSyscall(trap, a1, a2, a3); e != 0 {
		return e
	}
	return nil
}

func allThreads(option, arg uintptr) error {
	return allThreadsSyscall(unix.SYS_PRCTL, option, arg, 0)
}

// dropCapabilities empties every capability set of every thread, and
// locks the securebits so that none comes back (not even for uid 0).
func dropCapabilities(last uintptr) error {
	if err := allThreads(unix.PR_SET_SECUREBITS, secureBits); err != nil {
		return fmt.Errorf("securebits: %w", err)
	}
	if err := allThreadsSyscall(unix.SYS_PRCTL, unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0); err != nil {
		return fmt.Errorf("ambient set: %w", err)
	}
	for c := uintptr(0); c <= last; c++ {
		if err := allThreads(unix.PR_CAPBSET_DROP, c); err != nil {
			return fmt.Errorf("bounding set, capability %d: %w", c, err)
		}
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := allThreadsSyscall(unix.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0); err != nil {
		return fmt.Errorf("capset: %w", err)
	}
	return nil
}

// secureBits: no special treatment of uid 0 (NOROOT), no capability fixed
// up across uid changes (NO_SETUID_FIXUP) or kept (KEEP_CAPS clear), no
// ambient raise; each locked.
const secureBits = 1<<0 | 1<<1 | 1<<2 | 1<<3 | 1<<5 | 1<<6 | 1<<7

// lastCap is the highest capability this kernel knows.
func lastCap() uintptr {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err == nil {
		var n int
		if _, err := fmt.Sscanf(string(b), "%d", &n); err == nil && n > 0 && n < 64 {
			return uintptr(n)
		}
	}
	return 40 // CAP_CHECKPOINT_RESTORE, the last one as of Linux 6.x
}

func limits(maxFiles uint64) error {
	if err := unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{}); err != nil {
		return fmt.Errorf("RLIMIT_CORE: %w", err)
	}
	var cur unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &cur); err != nil {
		return err
	}
	n := min(maxFiles, cur.Max)
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: n, Max: n}); err != nil {
		return fmt.Errorf("RLIMIT_NOFILE: %w", err)
	}
	return nil
}
