package nsrun

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"slices"
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
	// Addr6 and Gateway6, if valid, are a static IPv6 address (without
	// duplicate address detection) and default route, as pasta sets them.
	Addr6    netip.Prefix `json:"addr6"`
	Gateway6 netip.Addr   `json:"gateway6"`
	// Queues is how many queues the TAP has (0 is 1); more than one makes
	// it a multi-queue device, one descriptor per queue.
	Queues int `json:"queues,omitempty"`
	// ProcNet asks for the namespace's /proc/net/{tcp,tcp6,udp,udp6},
	// opened inside it, so its listening sockets can be watched from
	// outside (pasta's automatic port forwarding).
	ProcNet bool `json:"procnet,omitempty"`
	// ListenTCP are TCP listeners to open inside the namespace (pasta's
	// -T: namespace ports forwarded to the host).
	ListenTCP []netip.AddrPort `json:"listen_tcp,omitempty"`
	// ListenUDP are UDP sockets to bind inside the namespace (pasta's -U).
	ListenUDP []netip.AddrPort `json:"listen_udp,omitempty"`
	// Sockets keeps the helper in the namespace as a socket factory
	// (Attached.Sockets), for connections into it made later (pasta's
	// --host-lo-to-ns-lo).
	Sockets bool `json:"sockets,omitempty"`
}

// ProcNetFiles are the /proc/net tables Attached.ProcNet holds, in order.
var ProcNetFiles = []string{"tcp", "tcp6", "udp", "udp6"}

// Attached is what AttachNS opened in the namespace.
type Attached struct {
	Link *tap.Link
	// ProcNet are the namespace's ProcNetFiles (with AttachSpec.ProcNet).
	ProcNet []*os.File
	// Listeners are AttachSpec.ListenTCP's, then its ListenUDP's, in
	// order.
	Listeners []*os.File
	// Sockets opens sockets in the namespace (with AttachSpec.Sockets).
	Sockets *SocketFactory
}

// Close closes what the namespace gave but the link, and ends the socket
// factory.
func (a *Attached) Close() {
	for _, f := range append(a.ProcNet, a.Listeners...) {
		f.Close()
	}
	if a.Sockets != nil {
		a.Sockets.Close()
	}
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
	a, err := AttachNS(spec)
	if err != nil {
		return nil, err
	}
	a.Close()
	return a.Link, nil
}

// AttachNS is Attach that also returns the other files the spec asks the
// namespace for.
func AttachNS(spec AttachSpec) (*Attached, error) {
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		return nil, fmt.Errorf("attaching to a namespace needs nsenter (util-linux): %w", err)
	}
	h, err := newHelper(attachEnv, spec, "attach-ctl")
	if err != nil {
		return nil, err
	}
	keepCtl := false // the socket factory's from now on
	defer func() {
		if !keepCtl {
			h.parent.Close()
		}
	}()
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
	// The TAP's queues come first: as many as asked, or one when the
	// device was there before without multi-queue (tap.CreateQueues).
	others := len(spec.ListenTCP) + len(spec.ListenUDP)
	if spec.ProcNet {
		others += len(ProcNetFiles)
	}
	fds, name, rerr := recvFDs(h.parent, 1+others, max(spec.Queues, 1)+others)
	var werr error
	if rerr != nil || !spec.Sockets {
		werr = cmd.Wait()
	}
	if rerr != nil {
		if werr != nil {
			return nil, fmt.Errorf("entering %s: %v (%w)", spec.NetNS, rerr, werr)
		}
		return nil, fmt.Errorf("entering %s: %w", spec.NetNS, rerr)
	}
	queues := len(fds) - others
	l, err := tap.FromFDs(fds[:queues], name, true)
	if err != nil {
		closeFDs(fds)
		return nil, err
	}
	a := &Attached{Link: l}
	rest := fds[queues:]
	if spec.ProcNet {
		for i, n := range ProcNetFiles {
			a.ProcNet = append(a.ProcNet, os.NewFile(uintptr(rest[i]), "/proc/net/"+n))
		}
		rest = rest[len(ProcNetFiles):]
	}
	names := append(slices.Clone(spec.ListenTCP), spec.ListenUDP...)
	for i, fd := range rest {
		a.Listeners = append(a.Listeners, os.NewFile(uintptr(fd), "listen:"+names[i].String()))
	}
	if spec.Sockets {
		keepCtl = true
		if a.Sockets, err = newSocketFactory(h.parent, cmd); err != nil {
			cmd.Process.Kill()
			cmd.Wait()
			a.Close()
			l.Close()
			return nil, err
		}
	}
	return a, nil
}

// AttachMain is the attach helper, running inside the namespaces: it
// creates (and maybe configures) the TAP, sends its fd to the parent and
// exits, or stays as the socket factory (AttachSpec.Sockets).
func AttachMain() {
	var spec AttachSpec
	ctl := helperSpec(attachEnv, "attach-ctl", &spec)
	t, err := tap.CreateQueues(spec.IfName, true, max(spec.Queues, 1))
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
		if err := configure6(spec.IfName, spec.Addr6, spec.Gateway6); err != nil {
			fail(ctl, err)
		}
	}
	var fds []int
	for _, q := range t.Files() {
		fds = append(fds, int(q.Fd()))
	}
	files := []io.Closer{t} // what holds an fd of fds, to close it by
	if spec.ProcNet {
		for _, n := range ProcNetFiles {
			f, err := os.Open("/proc/net/" + n)
			if err != nil {
				fail(ctl, err)
			}
			fds = append(fds, int(f.Fd()))
			files = append(files, f)
		}
	}
	rawFrom := len(fds) // the listeners' fds are held by nothing else
	for _, ap := range spec.ListenTCP {
		fd, err := listenIn(ap, unix.SOCK_STREAM)
		if err != nil {
			fail(ctl, fmt.Errorf("listen on %s in the namespace: %w", ap, err))
		}
		fds = append(fds, fd)
	}
	for _, ap := range spec.ListenUDP {
		fd, err := listenIn(ap, unix.SOCK_DGRAM)
		if err != nil {
			fail(ctl, fmt.Errorf("bind udp %s in the namespace: %w", ap, err))
		}
		fds = append(fds, fd)
	}
	sendTAP(ctl, spec.IfName, fds...)
	if !spec.Sockets {
		os.Exit(0)
	}
	// Copies kept here would keep the TAP, the listeners and the tables
	// open after slipway closes them.
	for _, f := range files {
		f.Close()
	}
	closeFDs(fds[rawFrom:])
	serveSockets(ctl)
}

// listenIn opens a listening TCP (SOCK_STREAM) or bound UDP (SOCK_DGRAM)
// socket on ap, IPv6 ones IPv6 only.
func listenIn(ap netip.AddrPort, typ int) (int, error) {
	family := unix.AF_INET
	if ap.Addr().Is6() {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	var sa unix.Sockaddr = &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	if family == unix.AF_INET6 {
		unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1)
		sa = &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
	}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return -1, err
	}
	if typ == unix.SOCK_DGRAM {
		return fd, nil
	}
	if err := unix.Listen(fd, unix.SOMAXCONN); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}
