package nsrun

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/slipway-net/slipway/link/tap"
)

// attachEnv carries an AttachSpec to the re-executed attach helper.
const attachEnv = "_SLIPWAY_ATTACH_SPEC"

// AttachSpec describes an existing network namespace (someone else's, as
// slirp4netns is given one) to put a TAP into.
type AttachSpec struct {
	// NetNS is the namespace's path (/proc/PID/ns/net, /run/netns/NAME).
	NetNS string `json:"netns"`
	// UserNS, if set, is joined first: the namespace belongs to an
	// unprivileged user namespace (rootlesskit, podman).
	UserNS string `json:"userns,omitempty"`
	IfName string `json:"ifname"`
	// Configure brings the TAP up with MAC, Addr, the default route via
	// Gateway, and MTU; otherwise it is left down, unaddressed.
	Configure bool         `json:"configure"`
	MAC       string       `json:"mac"`
	Addr      netip.Prefix `json:"addr"`
	Gateway   netip.Addr   `json:"gateway"`
	MTU       int          `json:"mtu"`
}

// IsAttachHelper reports whether this process is the attach helper.
func IsAttachHelper() bool { return os.Getenv(attachEnv) != "" }

// SameUserNS reports whether path names the user namespace this process
// is in (joining it again would fail).
func SameUserNS(path string) bool {
	var a, b unix.Stat_t
	return unix.Stat(path, &a) == nil && unix.Stat("/proc/self/ns/user", &b) == nil && a.Ino == b.Ino && a.Dev == b.Dev
}

// Attach creates the TAP inside the namespace and returns it. A Go
// process, being multi-threaded, cannot join a user namespace itself, so
// the work is done by this binary re-executed under nsenter(1), which
// joins the namespaces before exec and hands the TAP fd back over a socket.
func Attach(spec AttachSpec) (*tap.Link, error) {
	blob, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find own executable: %w", err)
	}
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		return nil, fmt.Errorf("attaching to a namespace needs nsenter (util-linux): %w", err)
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	parent, child := os.NewFile(uintptr(fds[0]), "attach-ctl"), os.NewFile(uintptr(fds[1]), "attach-ctl-child")
	defer parent.Close()
	args := []string{"--net=" + spec.NetNS}
	if spec.UserNS != "" {
		args = append([]string{"--user=" + spec.UserNS, "--preserve-credentials"}, args...)
	}
	cmd := exec.Command(nsenter, append(args, "--", self)...)
	cmd.Env = append(os.Environ(), attachEnv+"="+string(blob))
	cmd.Stderr = os.Stderr
	cmd.ExtraFiles = []*os.File{child}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		child.Close()
		return nil, fmt.Errorf("start nsenter: %w", err)
	}
	child.Close()
	fd, name, rerr := recvTAP(parent)
	werr := cmd.Wait()
	if rerr != nil {
		if werr != nil {
			return nil, fmt.Errorf("entering %s: %v (%w)", spec.NetNS, rerr, werr)
		}
		return nil, fmt.Errorf("entering %s: %w", spec.NetNS, rerr)
	}
	return tap.FromFD(fd, name, true)
}

// AttachMain is the attach helper, running inside the namespaces: it
// creates (and maybe configures) the TAP, sends its fd to the parent and
// exits.
func AttachMain() {
	ctl := os.NewFile(ctlFD, "attach-ctl")
	var spec AttachSpec
	if err := json.Unmarshal([]byte(os.Getenv(attachEnv)), &spec); err != nil {
		fail(ctl, fmt.Errorf("bad spec: %w", err))
	}
	t, err := tap.Create(spec.IfName, true)
	if errors.Is(err, unix.EBUSY) {
		fail(ctl, fmt.Errorf("%w (is another slirp4netns or slipway serving %s?)", err, spec.IfName))
	}
	if err != nil {
		fail(ctl, err)
	}
	if spec.Configure {
		if err := configure(Spec{IfName: spec.IfName, MAC: spec.MAC, Addr: spec.Addr, Gateway: spec.Gateway, MTU: spec.MTU}); err != nil {
			fail(ctl, err)
		}
	}
	if err := unix.Sendmsg(ctlFD, []byte(spec.IfName), unix.UnixRights(int(t.File().Fd())), nil, 0); err != nil {
		fail(ctl, fmt.Errorf("send TAP fd: %w", err))
	}
	os.Exit(0)
}
