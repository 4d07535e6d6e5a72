package main

import (
	"log/slog"

	"golang.org/x/sys/unix"
)

// What differs between Linux and the other systems slipway builds for
// (platform_other.go).

// inProcessEngine: Linux always starts the engine as a process of its
// own, confined by internal/sandbox.
func inProcessEngine(*engineSpec, *slog.Logger) (enter func(), here bool, err error) {
	return nil, false, nil
}

// dupOntoStderr makes fd the process's stderr: dup3, which the engine's
// seccomp filter allows onto fd 2 only.
func dupOntoStderr(fd int) error { return unix.Dup3(fd, 2, 0) }
