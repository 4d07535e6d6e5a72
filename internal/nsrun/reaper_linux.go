package nsrun

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"
)

// forwarded are the signals the init passes on to the command: those a
// user or a supervisor sends to end or steer it. Job-control stops stay
// the terminal's business.
var forwarded = []os.Signal{
	syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT,
	syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGWINCH, syscall.SIGALRM,
}

// superviseCommand is the init's life as PID 1 of the command's PID
// namespace: it starts the command, passes signals on to it, reaps every
// process reparented to it, and exits with the command's status once the
// command has ended. Its exit ends the namespace: the kernel kills
// whatever the command left running, so nothing it started outlives it.
//
// State: one goroutine; the command's pid is fixed once started; every
// child (the command and orphans) is reaped here by wait4(-1), never by
// os.Process.Wait, so no exit status is lost to a second waiter.
func superviseCommand(path string, argv []string) {
	if err := mountProc(); err != nil {
		fmt.Fprintf(os.Stderr, "slipway: warning: /proc still shows the host's processes: %v\n", err)
	}
	sigs := make(chan os.Signal, 16)
	// Notify before the command starts, so no SIGCHLD is missed.
	signal.Notify(sigs, append([]os.Signal{syscall.SIGCHLD}, forwarded...)...)
	p, err := os.StartProcess(path, argv, &os.ProcAttr{
		Env:   os.Environ(),
		Files: []*os.File{os.Stdin, os.Stdout, os.Stderr},
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "slipway: start %s: %v\n", path, err)
		if errors.Is(err, os.ErrNotExist) {
			os.Exit(127)
		}
		os.Exit(126)
	}
	cmd := p.Pid
	for sig := range sigs {
		if sig != syscall.SIGCHLD {
			// The command may be gone already (its status is next).
			unix.Kill(cmd, sig.(syscall.Signal))
			continue
		}
		if code, done := reap(cmd); done {
			os.Exit(code)
		}
	}
}

// reap collects every child that has exited; done reports that cmd was
// one of them, with its status as a shell gives it (128+N for signal N).
func reap(cmd int) (code int, done bool) {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || pid <= 0 {
			return code, done
		}
		if pid != cmd {
			continue // an orphan the command left: reaped, forgotten
		}
		done = true
		if ws.Signaled() {
			code = 128 + int(ws.Signal())
		} else {
			code = ws.ExitStatus()
		}
	}
}

// mountProc mounts a procfs of the new PID namespace over /proc, so ps and
// /proc/PID inside see the namespace's processes (the mount namespace is
// the command's own).
func mountProc() error {
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount proc: %w", err)
	}
	return nil
}
