//go:build linux && !amd64

package sandbox

import "gvisor.dev/gvisor/pkg/seccomp"

// archRules: the generic system call table (arm64 and the other newer
// architectures) has none of amd64's older calls.
func archRules() map[uintptr]seccomp.SyscallRule { return nil }
