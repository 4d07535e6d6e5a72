//go:build sandboxprobe

package sandbox

import (
	"fmt"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// probeEnv names what a test build's confined process (slipway's engine,
// libslirp's server) tries once it is confined, before it serves:
// test/e2e's and test/libslirp's sandbox tests run it from outside and
// check that the attempt killed the process (seccomp) or, with seccomp
// only logging, that the layers behind it refused.
const probeEnv = "SLIPWAY_TEST_PROBE"

// probes are escapes a compromised engine or server would try. Each returns the
// error it got; nil means it worked.
var probes = map[string]func() error{
	"open": func() error {
		fd, err := unix.Open("/etc/passwd", unix.O_RDONLY, 0)
		unix.Close(fd)
		return err
	},
	"execve": func() error {
		return unix.Exec("/bin/sh", []string{"sh", "-c", "true"}, nil)
	},
	"packet": func() error { return socket(unix.AF_PACKET, unix.SOCK_RAW, 0) },
	"netlink": func() error {
		return socket(unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_ROUTE)
	},
	"unix":  func() error { return socket(unix.AF_UNIX, unix.SOCK_STREAM, 0) },
	"inet":  func() error { return socket(unix.AF_INET, unix.SOCK_STREAM, 0) },
	"mptcp": func() error { return socket(unix.AF_INET, unix.SOCK_STREAM, 262) },
	"ptrace": func() error {
		return unix.PtraceAttach(os.Getppid())
	},
	// A fork: clone without the thread flags. The child, if any,
	// leaves at once.
	"fork": func() error {
		pid, _, e := syscall.RawSyscall6(unix.SYS_CLONE, uintptr(unix.SIGCHLD), 0, 0, 0, 0, 0)
		if e != 0 {
			return e
		}
		if pid == 0 {
			syscall.RawSyscall(unix.SYS_EXIT_GROUP, 0, 0, 0)
		}
		return nil
	},
	"mount": func() error { return unix.Mount("none", "/", "tmpfs", 0, "") },
	"unshare": func() error {
		return unix.Unshare(unix.CLONE_NEWNET)
	},
	"setns": func() error { return unix.Setns(0, 0) },
	"bpf": func() error {
		_, _, e := unix.Syscall(unix.SYS_BPF, 0, 0, 0)
		return errnoErr(e)
	},
	"io_uring": func() error {
		var params [120]byte
		_, _, e := unix.Syscall(unix.SYS_IO_URING_SETUP, 1, uintptr(unsafe.Pointer(&params[0])), 0)
		return errnoErr(e)
	},
	"keyctl": func() error {
		_, err := unix.KeyctlInt(unix.KEYCTL_GET_KEYRING_ID, unix.KEY_SPEC_SESSION_KEYRING, 0, 0, 0)
		return err
	},
	"perf_event_open": func() error {
		_, err := unix.PerfEventOpen(&unix.PerfEventAttr{Type: unix.PERF_TYPE_SOFTWARE}, 0, -1, -1, 0)
		return err
	},
	// A plain TCP bind (not net.Listen's MPTCP, which Landlock cannot
	// see and seccomp kills): only the launcher binds.
	"bind": func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}})
	},
}

func socket(family, typ, proto int) error {
	fd, err := unix.Socket(family, typ, proto)
	if err == nil {
		unix.Close(fd)
	}
	return err
}

func errnoErr(e syscall.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

// Probe runs the probe probeEnv names, prints "@probe=RESULT" and exits:
// the attempt is all this process is for. Call it right after Enter.
func Probe() {
	name := os.Getenv(probeEnv)
	if name == "" {
		return
	}
	p, ok := probes[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "@probe=unknown\n")
		os.Exit(3)
	}
	res := "ok"
	if err := p(); err != nil {
		res = "refused: " + err.Error()
	}
	fmt.Fprintf(os.Stderr, "@probe=%s\n", res)
	os.Exit(3)
}
