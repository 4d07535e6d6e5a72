package sandbox

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/abi/linux"
	"gvisor.dev/gvisor/pkg/bpf"
	"gvisor.dev/gvisor/pkg/seccomp"
)

// ActionEnv changes what a call outside the allow-list does, to find
// what a new code path needs: "trap" raises SIGSYS (the Go runtime prints
// the call and a stack, unless signals are blocked, as around clone),
// "log" lets it through and logs it to the kernel's audit log (dmesg:
// "audit: type=1326 ... syscall=N"), how the list was derived from the
// whole test suite. Anything else, or unset: kill the process.
const ActionEnv = "SLIPWAY_SECCOMP"

// Filter is the engine's seccomp allow-list. It was derived from strace
// of the whole test suite (see docs/architecture.md, "The sandbox"): the
// Go runtime's calls, the socket calls of the forwarders, the transports'
// batched I/O. Everything else kills the process (no execve, ptrace,
// mount, setns, unshare, bpf, io_uring, keyctl, perf_event_open, open of
// any file, new processes).
type Filter struct {
	// Action is ActionEnv's value: "trap", "log", or "" (kill).
	Action string
	// Strict leaves socket, connect and bind out: the strict engine's
	// host sockets all come from its launcher.
	Strict bool
}

// Go's runtime starts threads with exactly these flags (runtime/os_linux.go
// cloneFlags); glibc's pthread_create, in a cgo build, adds the TLS and
// thread-id flags. Anything else (a fork, a new namespace) is killed.
const (
	goThreadFlags = unix.CLONE_VM | unix.CLONE_FS | unix.CLONE_FILES | unix.CLONE_SIGHAND |
		unix.CLONE_SYSVSEM | unix.CLONE_THREAD
	// amd64's runtime.clone sets the new thread's TLS too.
	goTLSThreadFlags = goThreadFlags | unix.CLONE_SETTLS
	glibcThreadFlags = goTLSThreadFlags | unix.CLONE_PARENT_SETTID | unix.CLONE_CHILD_CLEARTID
)

// sockType is a socket type as Go's net package and the ping socket ask
// for it: with or without the non-blocking and close-on-exec flags.
func sockTypes(t int) []int {
	return []int{t, t | unix.SOCK_NONBLOCK | unix.SOCK_CLOEXEC, t | unix.SOCK_CLOEXEC}
}

// socketRule allows the sockets of outbound flows only: TCP and UDP over
// IPv4 and IPv6 (protocol 0 or the protocol's own number, never MPTCP's
// 262) and unprivileged ICMP echo sockets. No unix, netlink or packet
// socket.
func socketRule() seccomp.SyscallRule {
	var or seccomp.Or
	add := func(family, typ, proto int) {
		for _, t := range sockTypes(typ) {
			or = append(or, seccomp.PerArg{seccomp.EqualTo(family), seccomp.EqualTo(t), seccomp.EqualTo(proto)})
		}
	}
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		add(fam, unix.SOCK_STREAM, 0)
		add(fam, unix.SOCK_STREAM, unix.IPPROTO_TCP)
		add(fam, unix.SOCK_DGRAM, 0)
		add(fam, unix.SOCK_DGRAM, unix.IPPROTO_UDP)
	}
	add(unix.AF_INET, unix.SOCK_DGRAM, unix.IPPROTO_ICMP)
	add(unix.AF_INET6, unix.SOCK_DGRAM, unix.IPPROTO_ICMPV6)
	return or
}

// argIn allows the call when argument i is one of values.
func argIn(i int, values ...uintptr) seccomp.SyscallRule {
	var or seccomp.Or
	for _, v := range values {
		var pa seccomp.PerArg
		for j := range pa {
			pa[j] = seccomp.AnyValue{}
		}
		pa[i] = seccomp.EqualTo(v)
		or = append(or, pa)
	}
	return or
}

func (f Filter) rules() map[uintptr]seccomp.SyscallRule {
	r := f.allRules()
	for nr, rule := range archRules() {
		r[nr] = rule
	}
	if f.Strict {
		delete(r, unix.SYS_SOCKET)
		delete(r, unix.SYS_CONNECT)
		delete(r, unix.SYS_BIND)
	}
	return r
}

func (f Filter) allRules() map[uintptr]seccomp.SyscallRule {
	all := seccomp.MatchAll{}
	return map[uintptr]seccomp.SyscallRule{
		// The Go runtime: memory, threads, scheduling, signals, time.
		unix.SYS_MMAP:              all,
		unix.SYS_MUNMAP:            all,
		unix.SYS_MPROTECT:          all,
		unix.SYS_MADVISE:           all,
		unix.SYS_MREMAP:            all,
		unix.SYS_BRK:               all,
		unix.SYS_FUTEX:             all,
		unix.SYS_CLONE:             argIn(0, goThreadFlags, goTLSThreadFlags, glibcThreadFlags),
		unix.SYS_SET_ROBUST_LIST:   all,
		unix.SYS_RSEQ:              all,
		unix.SYS_GETTID:            all,
		unix.SYS_GETPID:            all,
		unix.SYS_TGKILL:            all,
		unix.SYS_SCHED_YIELD:       all,
		unix.SYS_SCHED_GETAFFINITY: all,
		unix.SYS_NANOSLEEP:         all,
		unix.SYS_CLOCK_NANOSLEEP:   all,
		unix.SYS_CLOCK_GETTIME:     all,
		unix.SYS_GETTIMEOFDAY:      all,
		unix.SYS_RT_SIGACTION:      all,
		unix.SYS_RT_SIGPROCMASK:    all,
		unix.SYS_RT_SIGRETURN:      all,
		unix.SYS_SIGALTSTACK:       all,
		unix.SYS_RESTART_SYSCALL:   all,
		unix.SYS_EXIT:              all,
		unix.SYS_EXIT_GROUP:        all,
		unix.SYS_GETRANDOM:         all,
		unix.SYS_UNAME:             all,
		unix.SYS_GETRLIMIT:         all,
		unix.SYS_PRLIMIT64:         argIn(0, 0),
		// The poller and descriptors the engine holds.
		unix.SYS_EPOLL_CREATE1: all,
		unix.SYS_EPOLL_CTL:     all,
		unix.SYS_EPOLL_PWAIT:   all,
		unix.SYS_EPOLL_PWAIT2:  all,
		unix.SYS_PPOLL:         all, // unix.Poll: a UDP flow's pending check
		unix.SYS_EVENTFD2:      all,
		unix.SYS_PIPE2:         all,
		unix.SYS_SPLICE:        all, // socket to socket through a pipe, in the kernel
		unix.SYS_READ:          all,
		unix.SYS_WRITE:         all,
		unix.SYS_READV:         all,
		unix.SYS_WRITEV:        all,
		unix.SYS_PREAD64:       all,
		unix.SYS_CLOSE:         all,
		// Only onto stderr: a --log-file the launcher opened again.
		unix.SYS_DUP3:  argIn(1, 2),
		unix.SYS_FSTAT: all,
		// F_SETPIPE_SZ: the pipe Go's net package splices TCP to TCP
		// through (pasta's -T relays).
		unix.SYS_FCNTL: argIn(1, unix.F_GETFD, unix.F_SETFD, unix.F_GETFL, unix.F_SETFL,
			unix.F_DUPFD_CLOEXEC, unix.F_SETPIPE_SZ),
		unix.SYS_IOCTL: argIn(1, unix.SIOCINQ),
		// Sockets: outbound flows, DNS upstreams, accepted VM and API
		// connections, the TAP and datagram links.
		unix.SYS_SOCKET:      socketRule(),
		unix.SYS_CONNECT:     all,
		unix.SYS_BIND:        all, // --outbound-addr; Landlock limits the ports
		unix.SYS_ACCEPT4:     all,
		unix.SYS_SHUTDOWN:    all,
		unix.SYS_GETSOCKOPT:  all,
		unix.SYS_SETSOCKOPT:  all,
		unix.SYS_GETSOCKNAME: all,
		unix.SYS_GETPEERNAME: all,
		unix.SYS_SENDTO:      all,
		unix.SYS_RECVFROM:    all,
		unix.SYS_SENDMSG:     all,
		unix.SYS_RECVMSG:     all,
		unix.SYS_SENDMMSG:    all,
		unix.SYS_RECVMMSG:    all,
	}
}

// retLog is SECCOMP_RET_LOG (Linux 4.14).
const retLog = 0x7ffc0000

// Install installs the filter on every thread (TSYNC) and returns how
// many system calls it allows.
func (f Filter) Install() (int, error) {
	rules := f.rules()
	deflt := seccomp.KillProcess
	switch f.Action {
	case "trap":
		deflt = seccomp.Trap
	case "log":
		deflt = seccomp.Trap // turned into a log below
	}
	prog := seccomp.Program{
		RuleSets: []seccomp.RuleSet{
			{Rules: seccomp.MakeSyscallRules(rules), Action: seccomp.Allow},
			// glibc (a cgo build) tries clone3 first and falls back to
			// clone on ENOSYS; clone3's flags sit in memory the filter
			// cannot read.
			{Rules: seccomp.MakeSyscallRules(map[uintptr]seccomp.SyscallRule{unix.SYS_CLONE3: seccomp.MatchAll{}}),
				Action: seccomp.ReturnError.Code(uint16(unix.ENOSYS))},
		},
		Options: seccomp.ProgramOptions{DefaultAction: deflt, BadArchAction: seccomp.KillProcess},
	}
	instrs, _, err := prog.Build()
	if err != nil {
		return 0, fmt.Errorf("build filter: %w", err)
	}
	if f.Action == "log" {
		// gVisor's package knows no RET_LOG: the default action's
		// returns become one.
		for i, in := range instrs {
			if in.OpCode == bpf.Ret|bpf.K && in.K == uint32(linux.SECCOMP_RET_TRAP) {
				instrs[i].K = retLog
			}
		}
	}
	if err := seccomp.SetFilter(instrs); err != nil {
		return 0, err
	}
	return len(rules), nil
}

// ActionFromEnv reads ActionEnv.
func ActionFromEnv() string { return os.Getenv(ActionEnv) }
