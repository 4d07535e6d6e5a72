package gvproxy

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// vsockListener accepts AF_VSOCK connections (the host side of a VM's
// virtio-vsock, as podman machine on Hyper-V and gvforwarder use).
type vsockListener struct {
	fd        int
	addr      vsockAddr
	closeOnce sync.Once
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
	fd, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
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
	return &vsockListener{fd: fd, addr: vsockAddr{cid, uint32(port)}}, nil
}

// Accept blocks a thread in accept(2); Close shuts the socket down, which
// wakes it.
func (l *vsockListener) Accept() (net.Conn, error) {
	nfd, sa, err := unix.Accept4(l.fd, unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK)
	if err != nil {
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EBADF) {
			return nil, net.ErrClosed
		}
		return nil, err
	}
	remote := vsockAddr{}
	if vm, ok := sa.(*unix.SockaddrVM); ok {
		remote = vsockAddr{vm.CID, vm.Port}
	}
	return &vsockConn{File: os.NewFile(uintptr(nfd), "vsock"), local: l.addr, remote: remote}, nil
}

func (l *vsockListener) Close() error {
	l.closeOnce.Do(func() {
		unix.Shutdown(l.fd, unix.SHUT_RDWR)
		unix.Close(l.fd)
	})
	return nil
}

func (l *vsockListener) Addr() net.Addr { return l.addr }

// vsockConn is an accepted vsock connection: a pollable file.
type vsockConn struct {
	*os.File
	local, remote vsockAddr
}

func (c *vsockConn) LocalAddr() net.Addr  { return c.local }
func (c *vsockConn) RemoteAddr() net.Addr { return c.remote }
