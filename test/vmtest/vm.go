package vmtest

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Marker lines the guest prints on its console.
const (
	// MarkerReady: networking is configured (or failed to be) and the
	// test script is about to run.
	MarkerReady = "SLIPWAY-GUEST-READY"
	// MarkerDone precedes the test script's exit code; the guest powers
	// off right after it.
	MarkerDone = "SLIPWAY-GUEST-DONE rc="
	// MarkerLease precedes the DHCP lease as space-separated key=value
	// pairs (lists joined with commas).
	MarkerLease = "SLIPWAY-LEASE "
	// MarkerDHCPFailed: udhcpc got no lease; the test script still runs.
	MarkerDHCPFailed = "SLIPWAY-DHCP-FAILED"
)

const (
	defaultMemory  = "256M"
	defaultTimeout = 120 * time.Second
	// poweroffGrace is how long QEMU may take to exit after the guest
	// printed its done marker and called poweroff -f.
	poweroffGrace = 10 * time.Second
	// ioGrace bounds how long Wait keeps reading QEMU's output after it
	// exited, in case a helper it spawned still holds the pipe.
	ioGrace = 2 * time.Second
)

// kernelArgs: console on the first serial port (our stdout); quiet, since
// every console byte is a trapped port write under TCG; panic=-1 with
// -no-reboot makes a crashed guest end QEMU instead of hanging until the
// timeout; no_timer_check, because on a loaded host the emulated CPU is
// too slow for the kernel's IO-APIC timer check, which then panics ("IO-APIC
// + timer doesn't work!"); mitigations and crypto self-tests only slow an
// emulated test guest down.
const kernelArgs = "console=ttyS0 quiet panic=-1 no_timer_check mitigations=off cryptomgr.notests"

// Options describes one guest run.
type Options struct {
	// Netdev holds the QEMU network arguments, e.g.
	// {"-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0"}.
	// The guest configures eth0; without a NIC it skips networking.
	Netdev []string
	// Script is run as /test.sh by busybox sh; its exit code becomes
	// Result.RC.
	Script string
	// Files are placed in the guest (absolute path -> content), mode 0755.
	Files map[string][]byte
	// NoDHCP leaves eth0 up but unconfigured.
	NoDHCP bool
	// Memory is QEMU's -m (default 256M).
	Memory string
	// Timeout bounds the whole run from QEMU's start (default 120s).
	Timeout time.Duration
	// KernelArgs are appended to the kernel command line.
	KernelArgs []string
	// ExtraQEMUArgs are appended to QEMU's command line.
	ExtraQEMUArgs []string
	// ExtraFiles are inherited by QEMU as fds 3, 4, ... (for
	// -netdev socket,fd=3).
	ExtraFiles []*os.File
	// Env is added to QEMU's environment (LD_LIBRARY_PATH=... to run it
	// on another libslirp.so.0).
	Env []string
}

// Result is what a finished guest reported.
type Result struct {
	// Console is the guest's serial console, lines joined with "\n".
	Console string
	// RC is the test script's exit code (0 without a script).
	RC int
	// Lease holds the DHCP lease's fields, nil without a lease: ip, mask
	// (dotted), prefix, router, dns, mtu, domain, search, hostname, lease,
	// serverid. Fields the server did not send are absent.
	Lease map[string]string
	// Elapsed runs from QEMU's start to the done marker.
	Elapsed time.Duration
}

// VM is a running guest. Its methods are safe for concurrent use.
type VM struct {
	cmd      *exec.Cmd
	started  time.Time
	deadline time.Time
	timeout  time.Duration
	exited   chan struct{} // closed once QEMU is gone and its output read

	mu       sync.Mutex
	changed  chan struct{} // closed and replaced on every console line or exit
	lines    []string
	partial  []byte // console bytes after the last newline
	cursor   int    // WaitFor looks at lines from here on
	done     bool
	rc       int
	doneAt   time.Duration
	qemuErr  error
	stderr   bytes.Buffer
	reported bool // the console was already printed in a failure
}

// Start boots a guest and returns while it runs. QEMU is killed when the
// test ends.
func Start(t testing.TB, g Guest, o Options) *VM {
	t.Helper()
	v, err := Boot(g, o, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		v.Kill()
		if t.Failed() && !v.reportedConsole() {
			t.Logf("guest console:\n%s\nqemu stderr:\n%s", v.Console(), v.qemuStderr())
		}
	})
	return v
}

// Boot is Start for programs that are not tests (the benchmark): it boots
// a guest, keeping the run's initramfs in dir, and returns while it runs.
// The caller must Kill (or Wait for) the VM.
func Boot(g Guest, o Options, dir string) (*VM, error) {
	qemu := os.Getenv("SLIPWAY_QEMU")
	if qemu == "" {
		qemu = "qemu-system-x86_64"
	}
	if _, err := exec.LookPath(qemu); err != nil {
		return nil, fmt.Errorf("QEMU not found (apt-get install qemu-system-x86): %w", err)
	}
	initrd, err := runInitrd(dir, g.Initrd, o)
	if err != nil {
		return nil, fmt.Errorf("preparing the guest's initramfs: %w", err)
	}
	if o.Timeout <= 0 {
		o.Timeout = defaultTimeout
	}

	v := &VM{timeout: o.Timeout, exited: make(chan struct{}), changed: make(chan struct{})}
	v.cmd = exec.Command(qemu, qemuArgs(g.Kernel, initrd, o)...)
	// QEMU's stdio chardev is the guest's serial console; stdin stays
	// /dev/null so nothing is typed into the guest.
	v.cmd.Stdout = consoleWriter{v}
	v.cmd.Stderr = stderrWriter{v}
	v.cmd.ExtraFiles = o.ExtraFiles
	if len(o.Env) > 0 {
		v.cmd.Env = append(os.Environ(), o.Env...)
	}
	v.cmd.WaitDelay = ioGrace
	// If the test binary dies (a panic, go test's -timeout), QEMU must
	// not outlive it.
	v.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	v.started = time.Now()
	v.deadline = v.started.Add(o.Timeout)
	if err := v.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting QEMU: %w", err)
	}
	go v.reap()
	return v, nil
}

// Run boots a guest, waits for it to finish and returns its result. It
// fails the test, printing the console, if the guest does not finish in
// time or QEMU fails. A nonzero script exit code is not a failure here:
// the caller checks Result.RC.
func Run(t testing.TB, g Guest, o Options) Result {
	t.Helper()
	v := Start(t, g, o)
	res, err := v.Wait()
	if err != nil {
		v.mu.Lock()
		v.reported = true
		v.mu.Unlock()
		t.Fatalf("%v\n--- guest console ---\n%s\n--- end of console ---", err, res.Console)
	}
	return res
}

func qemuArgs(kernel, initrd string, o Options) []string {
	mem := o.Memory
	if mem == "" {
		mem = defaultMemory
	}
	cmdline := kernelArgs
	if o.NoDHCP {
		cmdline += " slipway.dhcp=0"
	}
	if len(o.KernelArgs) > 0 {
		cmdline += " " + strings.Join(o.KernelArgs, " ")
	}
	args := []string{
		// KVM guests hang on these machines; TCG is slow but works.
		"-accel", "tcg",
		// No default NIC, VGA, monitor or config file: the guest has
		// exactly what the test asked for.
		"-nodefaults", "-no-user-config", "-display", "none",
		"-no-reboot",
		"-m", mem,
		"-kernel", kernel,
		"-initrd", initrd,
		"-append", cmdline,
		"-chardev", "stdio,id=con0,signal=off",
		"-serial", "chardev:con0",
	}
	args = append(args, o.Netdev...)
	return append(args, o.ExtraQEMUArgs...)
}

// runInitrd returns the initramfs for one run: the base one when the run
// adds nothing, else a copy in dir with a second gzip'd newc archive
// appended holding the script and files. The kernel unpacks both, so the
// cached guest never has to be rebuilt per test.
func runInitrd(dir, base string, o Options) (string, error) {
	files := map[string][]byte{}
	for name, data := range o.Files {
		files[name] = data
	}
	if o.Script != "" {
		if _, ok := files["/test.sh"]; ok {
			return "", errors.New("both Script and Files[\"/test.sh\"] are set")
		}
		files["/test.sh"] = []byte(o.Script)
	}
	if len(files) == 0 {
		return base, nil
	}
	src, err := os.Open(base)
	if err != nil {
		return "", fmt.Errorf("opening base initramfs: %w", err)
	}
	defer src.Close()
	path := filepath.Join(dir, "initrd.gz")
	dst, err := os.Create(path)
	if err != nil {
		return "", fmt.Errorf("creating run initramfs: %w", err)
	}
	defer dst.Close()
	if _, err := io.Copy(dst, src); err != nil {
		return "", fmt.Errorf("copying base initramfs: %w", err)
	}
	zw := gzip.NewWriter(dst)
	if err := writeNewc(zw, files, time.Now().Unix()); err != nil {
		return "", err
	}
	if err := zw.Close(); err != nil {
		return "", fmt.Errorf("compressing run archive: %w", err)
	}
	if err := dst.Close(); err != nil {
		return "", fmt.Errorf("writing run initramfs: %w", err)
	}
	return path, nil
}

// reap waits for QEMU and wakes every waiter.
func (v *VM) reap() {
	err := v.cmd.Wait()
	v.mu.Lock()
	if len(v.partial) > 0 {
		v.addLineLocked(string(v.partial))
		v.partial = nil
	}
	v.qemuErr = err
	// Close under the lock, before waking waiters, so a woken waiter
	// that checks exited cannot miss it and sleep forever.
	close(v.exited)
	v.notifyLocked()
	v.mu.Unlock()
}

// consoleWriter splits QEMU's stdout into console lines.
type consoleWriter struct{ v *VM }

func (w consoleWriter) Write(p []byte) (int, error) {
	v := w.v
	v.mu.Lock()
	defer v.mu.Unlock()
	v.partial = append(v.partial, p...)
	for {
		i := bytes.IndexByte(v.partial, '\n')
		if i < 0 {
			break
		}
		v.addLineLocked(string(v.partial[:i]))
		v.partial = v.partial[i+1:]
	}
	// Copy the unfinished line so the consumed bytes can be freed.
	v.partial = append([]byte(nil), v.partial...)
	return len(p), nil
}

// stderrWriter keeps QEMU's own messages for error reports.
type stderrWriter struct{ v *VM }

func (w stderrWriter) Write(p []byte) (int, error) {
	w.v.mu.Lock()
	defer w.v.mu.Unlock()
	return w.v.stderr.Write(p)
}

func (v *VM) addLineLocked(line string) {
	// The guest's tty turns "\n" into "\r\n".
	line = strings.TrimRight(line, "\r")
	v.lines = append(v.lines, line)
	if !v.done {
		if _, rest, ok := strings.Cut(line, MarkerDone); ok {
			if rc, err := strconv.Atoi(strings.TrimSpace(rest)); err == nil {
				v.done, v.rc, v.doneAt = true, rc, time.Since(v.started)
			}
		}
	}
	v.notifyLocked()
}

func (v *VM) notifyLocked() {
	close(v.changed)
	v.changed = make(chan struct{})
}

// watch calls check, with v.mu held, now and whenever the console grows or
// QEMU exits, until check returns true (watch returns true) or the
// deadline passes (false).
func (v *VM) watch(deadline time.Time, check func() bool) bool {
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	for {
		v.mu.Lock()
		ok := check()
		changed := v.changed
		v.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-changed:
		case <-timer.C:
			return false
		}
	}
}

func (v *VM) qemuExited() bool {
	select {
	case <-v.exited:
		return true
	default:
		return false
	}
}

// WaitFor waits until a console line containing marker appears and
// returns that line. It looks only at lines after the one its previous
// successful call returned, so waiting twice for the same marker waits for
// its second appearance. It fails early when QEMU exits first.
func (v *VM) WaitFor(marker string, timeout time.Duration) (string, error) {
	var line string
	var gone bool
	found := v.watch(time.Now().Add(timeout), func() bool {
		for i := v.cursor; i < len(v.lines); i++ {
			if strings.Contains(v.lines[i], marker) {
				line, v.cursor = v.lines[i], i+1
				return true
			}
		}
		// reap adds the last console line before it closes exited,
		// so nothing more can come.
		gone = v.qemuExited()
		return gone
	})
	switch {
	case found && !gone:
		return line, nil
	case gone:
		return "", fmt.Errorf("guest exited without printing %q: %s", marker, v.exitReason())
	default:
		return "", fmt.Errorf("no %q on the guest console within %v", marker, timeout)
	}
}

// Wait waits until the guest reports that its script finished, QEMU exits
// or the run's timeout passes. It kills QEMU on timeout. The Result holds
// the console even when Wait fails.
func (v *VM) Wait() (Result, error) {
	v.watch(v.deadline, func() bool { return v.done || v.qemuExited() })
	v.mu.Lock()
	done := v.done
	v.mu.Unlock()

	var err error
	if done {
		// The guest powers off right after the marker; give QEMU a
		// moment to notice before forcing it.
		select {
		case <-v.exited:
		case <-time.After(poweroffGrace):
		}
	} else if v.qemuExited() {
		err = fmt.Errorf("guest exited before its script finished: %s", v.exitReason())
	} else {
		err = fmt.Errorf("guest did not finish within %v", v.timeout)
	}
	v.Kill()

	v.mu.Lock()
	defer v.mu.Unlock()
	return Result{
		Console: strings.Join(v.lines, "\n"),
		RC:      v.rc,
		Lease:   parseLease(v.lines),
		Elapsed: v.doneAt,
	}, err
}

// Kill stops QEMU (if it still runs) and waits until it is gone.
func (v *VM) Kill() {
	// Kill fails only when the process already finished, which is fine.
	_ = v.cmd.Process.Kill()
	<-v.exited
}

// Pid is QEMU's process ID.
func (v *VM) Pid() int { return v.cmd.Process.Pid }

// Console returns the console so far, lines joined with "\n".
func (v *VM) Console() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return strings.Join(v.lines, "\n")
}

func (v *VM) qemuStderr() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.stderr.String()
}

func (v *VM) reportedConsole() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.reported
}

// exitReason describes how QEMU ended, with its stderr, which is where
// QEMU explains a bad -netdev or an unreachable socket.
func (v *VM) exitReason() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	reason := "qemu exited"
	if v.qemuErr != nil {
		reason = fmt.Sprintf("qemu: %v", v.qemuErr)
	}
	// A guest kernel panic also ends QEMU cleanly (panic=-1, -no-reboot).
	for _, line := range v.lines {
		if _, msg, ok := strings.Cut(line, "Kernel panic - "); ok {
			reason += "; guest kernel panic: " + msg
			break
		}
	}
	if s := strings.TrimSpace(v.stderr.String()); s != "" {
		reason += "; stderr: " + s
	}
	return reason
}

// parseLease reads the last lease line; a renewal replaces the first.
func parseLease(lines []string) map[string]string {
	for i := len(lines) - 1; i >= 0; i-- {
		_, rest, ok := strings.Cut(lines[i], MarkerLease)
		if !ok {
			continue
		}
		lease := map[string]string{}
		for _, field := range strings.Fields(rest) {
			if k, val, ok := strings.Cut(field, "="); ok && val != "" {
				lease[k] = val
			}
		}
		return lease
	}
	return nil
}
