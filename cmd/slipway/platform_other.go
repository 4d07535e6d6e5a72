//go:build !linux

package main

import (
	"fmt"
	"log/slog"
	"runtime"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/slipway-net/slipway/config"
	"github.com/slipway-net/slipway/internal/sandbox"
)

// What differs from Linux (platform_linux.go) on the other systems slipway
// builds for: macOS and FreeBSD, where vfkit, krunkit and bhyve run.

// run, slirp4netns and pasta put a network namespace on slipway's network
// through a TAP device, both of which only Linux has. Here they are
// commands that say so and fail, whatever their arguments, so that a
// script or a runtime (podman looks for pasta and slirp4netns) gets one
// clear line rather than a usage error about some flag.

func newRunCmd() *cobra.Command {
	return linuxOnlyCmd("run", "Run a command in a network namespace networked by slipway")
}

func newSlirp4netnsCmd() *cobra.Command {
	return linuxOnlyCmd("slirp4netns", "Serve an existing network namespace with slirp4netns's command line")
}

func newPastaCmd() *cobra.Command {
	return linuxOnlyCmd("pasta", "Serve a network namespace with pasta's command line")
}

// inProcessEngine: the confined engine process is built from Linux's
// namespaces, Landlock and seccomp, so on this system the engine runs in
// slipway's own process, under what this system allows (resource limits).
// enter, called before any guest or API input is read, logs every layer
// that is missing and why, as the confined engine logs its own. Strict
// mode is refused: without its empty network namespace it would not be
// strict.
func inProcessEngine(spec *engineSpec, log *slog.Logger) (enter func(), here bool, err error) {
	if spec.Config.Sandbox == config.SandboxStrict {
		return nil, false, usageError{fmt.Errorf("invalid value %q for --sandbox: strict needs Linux (an empty network namespace and a seccomp filter); on %s use --sandbox=on, which logs what it lacks", config.SandboxStrict, runtime.GOOS)}
	}
	enter = func() {
		r := sandbox.Enter(sandbox.Options{MaxFiles: maxFiles(spec.Config), KeepRoot: spec.KeepRoot})
		if r.Active() {
			log.Info("sandbox", "layers", r.String())
		} else {
			log.Warn("sandbox weaker than it should be", "layers", r.String())
		}
	}
	return enter, true, nil
}

// dupOntoStderr makes fd the process's stderr (only the confined engine
// does, which is Linux's).
func dupOntoStderr(fd int) error { return unix.Dup2(fd, 2) }
