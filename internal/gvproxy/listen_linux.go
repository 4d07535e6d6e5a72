package gvproxy

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// vsockListener accepts AF_VSOCK connections (the host side of a VM's
// virtio-vsock, as podman machine on Hyper-V and gvforwarder use). Its
// socket is non-blocking, on the runtime's poller: Close wakes a waiting
// Accept (shutdown(2) does not wake an accept(2) on a vsock socket).
type vsockListener struct {
	f      *os.File
	rc     syscall.RawConn
	addr   vsockAddr
	closed atomic.Bool
}

type vsockAddr struct{ cid, port uint32 }

func (a vsockAddr) Network() string { return "vsock" }
func (a vsockAddr) String() string  { return fmt.Sprintf("vsock://%d:%d", a.cid, a.port) }

func listenVsock(u *url.URL) (net.Listener, error) {
	port, err := strconv.ParseUint(u.Port(), 10, 32)
	if err != nil {
		return nil, fmt.Errorf("vsock port %q: %w", u.Port(), err)
	}
	cid := uint32(unix.VMADDR_CID_ANY)
	if h := u.Hostname(); h != "" {
		c, err := strconv.ParseUint(h, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("vsock CID %q: %w", h, err)
		}
		cid = uint32(c)
	}
	fd, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("vsock: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrVM{CID: cid, Port: uint32(port)}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("vsock bind %d:%d: %w", cid, port, err)
	}
	if err := unix.Listen(fd, unix.SOMAXCONN); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("vsock listen: %w", err)
	}
	return newVsockListener(fd, vsockAddr{cid, uint32(port)})
}

// newVsockListener takes over fd, a non-blocking listening vsock socket.
func newVsockListener(fd int, addr vsockAddr) (*vsockListener, error) {
	f := os.NewFile(uintptr(fd), addr.String())
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("vsock: %w", err)
	}
	return &vsockListener{f: f, rc: rc, addr: addr}, nil
}

// vsockFromFile is the listener of an AF_VSOCK socket handed over as f
// (which stays the caller's to close): the engine binds none itself.
func vsockFromFile(f *os.File) (net.Listener, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("vsock: %w", err)
	}
	fd := -1
	if cerr := rc.Control(func(s uintptr) { fd, err = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); cerr != nil {
		return nil, fmt.Errorf("vsock: %w", cerr)
	}
	if err != nil {
		return nil, fmt.Errorf("vsock: %w", err)
	}
	sa, err := unix.Getsockname(fd)
	vm, ok := sa.(*unix.SockaddrVM)
	if err != nil || !ok {
		unix.Close(fd)
		return nil, fmt.Errorf("vsock: not an AF_VSOCK socket (%v)", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("vsock: %w", err)
	}
	return newVsockListener(fd, vsockAddr{vm.CID, vm.Port})
}

// vsockFile is a vsock listener's socket as a file, to hand over.
func vsockFile(ln net.Listener) (*os.File, error) {
	l, ok := ln.(*vsockListener)
	if !ok {
		return nil, fmt.Errorf("cannot hand over a %T", ln)
	}
	fd := -1
	var err error
	if cerr := l.rc.Control(func(s uintptr) { fd, err = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); cerr != nil {
		return nil, fmt.Errorf("vsock: %w", cerr)
	}
	if err != nil {
		return nil, fmt.Errorf("vsock: %w", err)
	}
	return os.NewFile(uintptr(fd), l.addr.String()), nil
}

// Accept waits on the poller for a connection.
func (l *vsockListener) Accept() (net.Conn, error) {
	var nfd int
	var sa unix.Sockaddr
	var aerr error
	err := l.rc.Read(func(fd uintptr) bool {
		nfd, sa, aerr = unix.Accept4(int(fd), unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK)
		return aerr != unix.EAGAIN
	})
	if err != nil {
		if l.closed.Load() {
			return nil, net.ErrClosed
		}
		return nil, err
	}
	if aerr != nil {
		return nil, aerr
	}
	remote := vsockAddr{}
	if vm, ok := sa.(*unix.SockaddrVM); ok {
		remote = vsockAddr{vm.CID, vm.Port}
	}
	return &vsockConn{File: os.NewFile(uintptr(nfd), "vsock"), local: l.addr, remote: remote}, nil
}

func (l *vsockListener) Close() error {
	l.closed.Store(true)
	return l.f.Close()
}

func (l *vsockListener) Addr() net.Addr { return l.addr }

// vsockConn is an accepted vsock connection: a pollable file.
type vsockConn struct {
	*os.File
	local, remote vsockAddr
}

func (c *vsockConn) LocalAddr() net.Addr  { return c.local }
func (c *vsockConn) RemoteAddr() net.Addr { return c.remote }
