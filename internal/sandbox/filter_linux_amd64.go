package sandbox

import (
	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/seccomp"
)

// archRules are the allow-list's calls that only some architectures
// have: amd64 keeps epoll_wait, which arm64 (epoll_pwait only) lacks.
func archRules() map[uintptr]seccomp.SyscallRule {
	return map[uintptr]seccomp.SyscallRule{unix.SYS_EPOLL_WAIT: seccomp.MatchAll{}}
}
