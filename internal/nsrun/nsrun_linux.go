// Package nsrun runs a command in new network, mount and PID namespaces
// (and a new user namespace when not root) whose only interface is a TAP
// device served by slipway. The parent re-executes its own binary as a
// small init that builds the namespace side, hands the TAP fd back over a
// socket, and then starts the command and stays as the PID namespace's
// init until the command ends (or, with KeepChildren, becomes the
// command).
package nsrun

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/slipway-net/slipway/link/tap"
)

// childEnv carries the Spec to the re-executed init; its presence is how
// the binary knows to run ChildMain.
const childEnv = "_SLIPWAY_NSRUN_SPEC"

// ctlFD is where the init finds its end of the control socket.
const ctlFD = 3

// Spec describes the namespace to build.
type Spec struct {
	Command  []string     `json:"command"`
	IfName   string       `json:"ifname"`
	MAC      string       `json:"mac"`
	Addr     netip.Prefix `json:"addr"`
	Gateway  netip.Addr   `json:"gateway"`
	MTU      int          `json:"mtu"`
	Addr6    netip.Prefix `json:"addr6,omitempty"`
	Gateway6 netip.Addr   `json:"gateway6,omitempty"`
	// ResolvConf is a file bind-mounted over /etc/resolv.conf inside.
	ResolvConf string `json:"resolv_conf"`
	// IPv6 makes the init wait (briefly) for the interface's SLAAC
	// address before starting the command.
	IPv6 bool `json:"ipv6"`
	// Queues is how many queues the TAP has (0 is 1); more than one makes
	// it a multi-queue device, one descriptor per queue.
	Queues int `json:"queues,omitempty"`
	// KeepChildren runs the command without a PID namespace of its own:
	// what it starts in the background outlives it (reparented to the
	// host's init, in a namespace whose network has gone). By default the
	// init stays as the namespace's PID 1, and everything ends with the
	// command.
	KeepChildren bool `json:"keep_children,omitempty"`
}

// Child is the command running in its namespaces.
type Child struct {
	cmd  *exec.Cmd
	ctl  *os.File
	Link *tap.Link
}

// IsChild reports whether this process is the re-executed init.
func IsChild() bool { return os.Getenv(childEnv) != "" }

// Start creates the namespaces and the TAP device and returns once the TAP
// is in hand; the command runs only after Release.
func Start(spec Spec) (*Child, error) {
	if len(spec.Command) == 0 {
		return nil, errors.New("no command to run")
	}
	if _, err := exec.LookPath(spec.Command[0]); err != nil {
		return nil, fmt.Errorf("command %q: %w", spec.Command[0], err)
	}
	h, err := newHelper(childEnv, spec, "nsrun-ctl")
	if err != nil {
		return nil, err
	}
	parent := h.parent
	defer h.child.Close()

	cmd := exec.Command(h.self)
	cmd.Args = []string{"slipway-nsinit"}
	h.pass(cmd)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	attr := &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWNET | syscall.CLONE_NEWNS,
		// If slipway dies the command goes with it.
		Pdeathsig: syscall.SIGKILL,
	}
	if !spec.KeepChildren {
		attr.Cloneflags |= syscall.CLONE_NEWPID
	}
	if os.Geteuid() != 0 {
		attr.Cloneflags |= syscall.CLONE_NEWUSER
		attr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Geteuid(), Size: 1}}
		attr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getegid(), Size: 1}}
		attr.GidMappingsEnableSetgroups = false
	}
	cmd.SysProcAttr = attr
	// Pdeathsig follows the thread that forked: keep this one alive.
	runtime.LockOSThread()
	if err := cmd.Start(); err != nil {
		parent.Close()
		return nil, fmt.Errorf("start namespace: %w", err)
	}
	c := &Child{cmd: cmd, ctl: parent}
	if c.Link, err = recvLink(parent, max(spec.Queues, 1)); err != nil {
		c.kill()
		return nil, fmt.Errorf("namespace setup: %w", err)
	}
	return c, nil
}

func (c *Child) kill() {
	c.cmd.Process.Kill()
	c.cmd.Wait()
	c.ctl.Close()
}

// Release lets the command start.
func (c *Child) Release() error {
	defer c.ctl.Close()
	if _, err := c.ctl.Write([]byte{'g'}); err != nil {
		return fmt.Errorf("release command: %w", err)
	}
	return nil
}

// awaitExit waits in Go's poller, on a pidfd, until the command has
// exited, so that the wait that reaps it returns at once. A goroutine
// blocked in waitid(2) holds a P until sysmon takes it back (10-20 ms in
// an idle process); with the table's poller in epoll_wait holding the
// other, no P was left on a two-CPU host to read the guest's frames, and
// they sat in the TAP that long. Where pidfds are missing the blocking
// wait is all there is.
func (c *Child) awaitExit() {
	fd, err := unix.PidfdOpen(c.cmd.Process.Pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		return
	}
	f := os.NewFile(uintptr(fd), "pidfd")
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	rc.Read(func(fd uintptr) bool {
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(pfd, 0)
		return err != nil || n > 0
	})
}

// Signal forwards a signal to the command.
func (c *Child) Signal(sig os.Signal) error { return c.cmd.Process.Signal(sig) }

// Wait waits for the command and returns its exit status, 128+N for a
// command killed by signal N, as a shell reports it.
func (c *Child) Wait() (int, error) {
	c.awaitExit()
	err := c.cmd.Wait()
	st := c.cmd.ProcessState
	if st == nil {
		return 1, err
	}
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal()), nil
	}
	return st.ExitCode(), nil
}

// recvLink reads a helper's report, the fds of the TAP's queues and its
// name or an error, and makes the link of them.
func recvLink(ctl *os.File, queues int) (*tap.Link, error) {
	fds, name, err := recvFDs(ctl, 1, queues)
	if err != nil {
		return nil, err
	}
	l, err := tap.FromFDs(fds, name, true)
	if err != nil {
		closeFDs(fds)
		return nil, err
	}
	return l, nil
}

// recvFDs reads a helper's report: least to most fds (the TAP's queues
// first, as many as it has) and the TAP's name, or an error.
func recvFDs(ctl *os.File, least, most int) ([]int, string, error) {
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4*most))
	n, oobn, _, _, err := unix.Recvmsg(int(ctl.Fd()), buf, oob, 0)
	if err != nil {
		return nil, "", err
	}
	if n == 0 {
		return nil, "", errors.New("namespace init exited before reporting")
	}
	msg := string(buf[:n])
	if oobn == 0 {
		return nil, "", errors.New(msg)
	}
	scms, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(scms) != 1 {
		return nil, "", fmt.Errorf("bad control message from namespace init: %w", err)
	}
	fds, err := unix.ParseUnixRights(&scms[0])
	if err != nil || len(fds) < least || len(fds) > most {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return nil, "", fmt.Errorf("bad fds from namespace init (%d, want %d to %d): %w", len(fds), least, most, err)
	}
	return fds, msg, nil
}

// ChildMain is the re-executed init. It never returns: it runs the
// command as the PID namespace's init (or execs it, with KeepChildren),
// or exits 125 after reporting what failed to the parent.
func ChildMain() {
	var spec Spec
	ctl := helperSpec(childEnv, "nsrun-ctl", &spec)
	os.Unsetenv(childEnv)
	runtime.LockOSThread()
	fds, err := setup(spec)
	if err != nil {
		fail(ctl, err)
	}
	sendTAP(ctl, spec.IfName, fds...)
	closeFDs(fds)
	var b [1]byte
	if n, _ := ctl.Read(b[:]); n != 1 {
		os.Exit(125) // slipway went away before the network was ready
	}
	ctl.Close()
	if spec.IPv6 {
		waitForIPv6(spec.IfName, ipv6Wait)
	}
	path, err := exec.LookPath(spec.Command[0])
	if err != nil {
		fmt.Fprintf(os.Stderr, "slipway: %v\n", err)
		os.Exit(127)
	}
	if !spec.KeepChildren {
		superviseCommand(path, spec.Command) // never returns
	}
	err = syscall.Exec(path, spec.Command, os.Environ())
	fmt.Fprintf(os.Stderr, "slipway: exec %s: %v\n", path, err)
	os.Exit(126)
}

// newHelper prepares to re-execute this binary as a helper that reads
// spec (as JSON) from its environment variable env and reports over a
// control socket, named name in fd listings.
func newHelper(env string, spec any, name string) (*helper, error) {
	blob, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find own executable: %w", err)
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	return &helper{
		self:   self,
		env:    env + "=" + string(blob),
		parent: os.NewFile(uintptr(fds[0]), name),
		child:  os.NewFile(uintptr(fds[1]), name+"-child"),
	}, nil
}

// helper is a re-execution of this binary to do namespace work, and the
// control socket to it.
type helper struct {
	self string // this binary
	env  string // the spec, as NAME=JSON
	// parent is our end of the control socket; child the helper's, which
	// it finds as ctlFD.
	parent, child *os.File
}

// pass gives cmd, which runs the helper, its spec and control socket.
func (h *helper) pass(cmd *exec.Cmd) {
	cmd.Env = append(os.Environ(), h.env)
	cmd.ExtraFiles = []*os.File{h.child}
}

// helperSpec is the helper's side of newHelper: it decodes the spec from
// env into spec and returns the control socket, or reports failure and
// exits.
func helperSpec(env, name string, spec any) *os.File {
	ctl := os.NewFile(ctlFD, name)
	if err := json.Unmarshal([]byte(os.Getenv(env)), spec); err != nil {
		fail(ctl, fmt.Errorf("bad spec: %w", err))
	}
	return ctl
}

// sendTAP reports success to the parent: the TAP's name and fd. On failure
// it reports that and exits.
func sendTAP(ctl *os.File, name string, fd ...int) {
	if err := unix.Sendmsg(int(ctl.Fd()), []byte(name), unix.UnixRights(fd...), nil, 0); err != nil {
		fail(ctl, fmt.Errorf("send TAP fd: %w", err))
	}
}

// fail reports err to the parent and exits 125.
func fail(ctl *os.File, err error) {
	unix.Sendmsg(int(ctl.Fd()), []byte(err.Error()), nil, nil, 0)
	fmt.Fprintf(os.Stderr, "slipway: namespace setup: %v\n", err)
	os.Exit(125)
}

// setup builds the namespace side: resolv.conf, lo, the TAP as IfName with
// its address, MTU and default route. It returns the fds of the TAP's
// queues.
func setup(spec Spec) ([]int, error) {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return nil, fmt.Errorf("make mounts private: %w", err)
	}
	if err := remountSys(); err != nil {
		fmt.Fprintf(os.Stderr, "slipway: warning: /sys still shows the host's interfaces: %v\n", err)
	}
	if spec.ResolvConf != "" {
		if err := unix.Mount(spec.ResolvConf, "/etc/resolv.conf", "", unix.MS_BIND, ""); err != nil {
			// A dangling /etc/resolv.conf symlink leaves nothing to
			// mount over; the network still works by address.
			fmt.Fprintf(os.Stderr, "slipway: warning: cannot bind-mount /etc/resolv.conf: %v\n", err)
		}
	}
	t, err := tap.CreateQueues(spec.IfName, true, max(spec.Queues, 1))
	if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) {
		return nil, fmt.Errorf("%w (without root, /dev/net/tun must be open to all users: mode 0666, as Debian ships it)", err)
	}
	if err != nil {
		return nil, err
	}
	fds, err := dupFiles(t.Files())
	t.Close()
	if err != nil {
		return nil, fmt.Errorf("dup TAP fd: %w", err)
	}
	if err := configure(spec); err != nil {
		closeFDs(fds)
		return nil, err
	}
	return fds, nil
}

// dupFiles duplicates the descriptors of files, for fds that outlive them.
func dupFiles(files []*os.File) ([]int, error) {
	var fds []int
	for _, f := range files {
		fd, err := unix.Dup(int(f.Fd()))
		if err != nil {
			closeFDs(fds)
			return nil, err
		}
		fds = append(fds, fd)
	}
	return fds, nil
}

// remountSys mounts a sysfs of the new network namespace over /sys, so
// /sys/class/net lists the namespace's interfaces, and carries the host's
// cgroup mounts over to it.
func remountSys() error {
	tmp, err := os.MkdirTemp("", "slipway-cgroup-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	haveCgroup := unix.Mount("/sys/fs/cgroup", tmp, "", unix.MS_BIND|unix.MS_REC, "") == nil
	if err := unix.Mount("sysfs", "/sys", "sysfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		if haveCgroup {
			unix.Unmount(tmp, unix.MNT_DETACH)
		}
		return fmt.Errorf("mount sysfs: %w", err)
	}
	if haveCgroup {
		if err := unix.Mount(tmp, "/sys/fs/cgroup", "", unix.MS_MOVE, ""); err != nil {
			unix.Unmount(tmp, unix.MNT_DETACH)
			return fmt.Errorf("keep cgroups: %w", err)
		}
	}
	return nil
}
