package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// process is a long-running helper (a backend, a server). Its output
// goes to a log file in the work directory: the file is there to read
// after a failed run, and the kernel appends to it without a copying
// goroutine.
type process struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{} // closed when the process has been waited for
	err  error         // Wait's result, valid after done
}

// processOpts adjusts how a helper starts.
type processOpts struct {
	// stdout, if set, receives the process's stdout (its stderr still
	// goes to the log). Files, not io.Writers: the child writes to them
	// itself, and Wait never waits on a copying goroutine.
	stdout *os.File
	// stdin, if set, is the process's standard input.
	stdin *os.File
	// readyFD gives the process a pipe as fd 3 and waits until it
	// writes a byte there (slipway and slirp4netns --ready-fd).
	readyFD bool
}

// readyTimeout bounds how long a helper may take to come up.
const readyTimeout = 30 * time.Second

// startProcess starts argv, logging to logDir/name.log. The process
// dies with the benchmark (parent death signal) so an interrupted run
// leaves nothing behind.
func startProcess(logDir, name string, argv []string, o processOpts) (*process, error) {
	p := &process{name: name, log: filepath.Join(logDir, name+".log"), done: make(chan struct{})}
	logf, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	defer logf.Close() // the child has its own copy
	fmt.Fprintf(logf, "### %s %s\n", time.Now().Format(time.TimeOnly), strings.Join(argv, " "))
	p.cmd = exec.Command(argv[0], argv[1:]...)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if o.stdout != nil {
		p.cmd.Stdout = o.stdout
	}
	if o.stdin != nil {
		p.cmd.Stdin = o.stdin
	}
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var ready *os.File
	if o.readyFD {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, fmt.Errorf("%s: ready pipe: %w", name, err)
		}
		defer r.Close()
		defer w.Close()
		p.cmd.ExtraFiles = []*os.File{w}
		ready = r
	}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	if ready != nil {
		// Only the child may hold the write end now, so a child that
		// dies before it is ready ends the read with EOF.
		p.cmd.ExtraFiles[0].Close()
		if err := waitReadyByte(ready); err != nil {
			p.stop()
			return nil, fmt.Errorf("%s did not become ready: %w; output: %s", name, err, p.output())
		}
	}
	return p, nil
}

func waitReadyByte(r *os.File) error {
	r.SetReadDeadline(time.Now().Add(readyTimeout))
	b := make([]byte, 1)
	if _, err := r.Read(b); err != nil {
		return err
	}
	return nil
}

// pid is the process's id.
func (p *process) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has ended.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, then SIGKILL if the process lingers, and waits.
func (p *process) stop() {
	if p.exited() {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// output is the end of what the process printed, for error messages.
func (p *process) output() string {
	b, err := os.ReadFile(p.log)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	return tailText(string(b))
}

// waitFor polls cond every 50 ms until it holds, the process exits or
// the timeout passes.
func (p *process) waitFor(what string, timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if p.exited() {
			return fmt.Errorf("%s exited before %s: %v; output: %s", p.name, what, p.err, p.output())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: no %s after %v; output: %s", p.name, what, timeout, p.output())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

// runCommand runs argv to completion within timeout and returns its
// stdout and stderr together.
func runCommand(ctx context.Context, timeout time.Duration, argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// A killed command's children may still hold the pipe.
	cmd.WaitDelay = 2 * time.Second
	err := cmd.Run()
	if ctx.Err() != nil && !errors.Is(context.Cause(ctx), context.Canceled) {
		return out.String(), fmt.Errorf("%s: timed out after %v", argv[0], timeout)
	}
	if err != nil {
		return out.String(), fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, tailText(out.String()))
	}
	return out.String(), nil
}

// tailText keeps the end of long command output for error messages.
func tailText(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 400 {
		return "..." + s[len(s)-400:]
	}
	return s
}

// lineWaiter reads lines from a pipe and hands them out one at a time.
type lineWaiter struct {
	lines chan string
}

func newLineWaiter(r io.Reader) *lineWaiter {
	lw := &lineWaiter{lines: make(chan string, 64)}
	go func() {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			lw.lines <- sc.Text()
		}
		close(lw.lines)
	}()
	return lw
}

// next returns the next line that contains substr.
func (lw *lineWaiter) next(substr string, timeout time.Duration) (string, error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case line, ok := <-lw.lines:
			if !ok {
				return "", fmt.Errorf("output ended before a line with %q", substr)
			}
			if strings.Contains(line, substr) {
				return line, nil
			}
		case <-timer.C:
			return "", fmt.Errorf("no line with %q within %v", substr, timeout)
		}
	}
}
