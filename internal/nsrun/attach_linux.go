package nsrun

import (
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
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		return nil, fmt.Errorf("attaching to a namespace needs nsenter (util-linux): %w", err)
	}
	h, err := newHelper(attachEnv, spec, "attach-ctl")
	if err != nil {
		return nil, err
	}
	defer h.parent.Close()
	args := []string{"--net=" + spec.NetNS}
	if spec.UserNS != "" {
		args = append([]string{"--user=" + spec.UserNS, "--preserve-credentials"}, args...)
	}
	cmd := exec.Command(nsenter, append(args, "--", h.self)...)
	h.pass(cmd)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	err = cmd.Start()
	h.child.Close()
	if err != nil {
		return nil, fmt.Errorf("start nsenter: %w", err)
	}
	l, rerr := recvLink(h.parent)
	werr := cmd.Wait()
	if rerr != nil {
		if werr != nil {
			return nil, fmt.Errorf("entering %s: %v (%w)", spec.NetNS, rerr, werr)
		}
		return nil, fmt.Errorf("entering %s: %w", spec.NetNS, rerr)
	}
	return l, nil
}

// AttachMain is the attach helper, running inside the namespaces: it
// creates (and maybe configures) the TAP, sends its fd to the parent and
// exits.
func AttachMain() {
	var spec AttachSpec
	ctl := helperSpec(attachEnv, "attach-ctl", &spec)
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
	sendTAP(ctl, spec.IfName, int(t.File().Fd()))
	os.Exit(0)
}
