package slirpabi

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"github.com/slipway-net/slipway/config"
	"github.com/slipway-net/slipway/internal/hostnet"
	"github.com/slipway-net/slipway/network"
)

// Flags of slirp_add_hostxfwd.
const (
	FwdUDP    = 1
	FwdV6Only = 2
)

// Address families as Linux numbers them in a struct sockaddr.
const (
	afUnix  = 1
	afInet  = 2
	afInet6 = 10
)

// ErrFamily is a socket address of a family slipway cannot forward (a
// unix socket).
var ErrFamily = errors.New("address family not supported")

// ParseSockaddr reads a Linux struct sockaddr_in or sockaddr_in6 as the
// host passed it (family in host byte order, port in network order).
func ParseSockaddr(b []byte) (netip.AddrPort, error) {
	if len(b) < 2 {
		return netip.AddrPort{}, fmt.Errorf("socket address of %d bytes: %w", len(b), syscall.EINVAL)
	}
	switch fam := binary.NativeEndian.Uint16(b); fam {
	case afInet:
		if len(b) < 8 {
			return netip.AddrPort{}, fmt.Errorf("sockaddr_in of %d bytes: %w", len(b), syscall.EINVAL)
		}
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[4:8])), binary.BigEndian.Uint16(b[2:])), nil
	case afInet6:
		if len(b) < 24 {
			return netip.AddrPort{}, fmt.Errorf("sockaddr_in6 of %d bytes: %w", len(b), syscall.EINVAL)
		}
		a := netip.AddrFrom16([16]byte(b[8:24]))
		return netip.AddrPortFrom(a, binary.BigEndian.Uint16(b[2:])), nil
	case afUnix:
		return netip.AddrPort{}, fmt.Errorf("unix socket forwards: %w", ErrFamily)
	default:
		return netip.AddrPort{}, fmt.Errorf("family %d: %w", fam, ErrFamily)
	}
}

// forwardRule is the publish rule of a host forward: host address and
// port to a guest address and port, the guest's zero address meaning the
// first guest (libslirp's vdhcp_start).
func forwardRule(flags int, host, guest netip.AddrPort) (config.PublishRule, error) {
	r := config.PublishRule{Proto: config.TCP, HostAddr: host.Addr().Unmap(), HostPort: host.Port(),
		GuestPort: guest.Port()}
	if flags&FwdUDP != 0 {
		r.Proto = config.UDP
	}
	if g := guest.Addr().Unmap(); !g.IsUnspecified() {
		r.GuestAddr = g
	}
	return r, nil
}

// AddForward publishes a host port into the guest (slirp_add_hostfwd and
// slirp_add_hostxfwd): host and guest are the raw socket addresses.
func (i *Instance) AddForward(flags int, host, guest []byte) error {
	h, err := ParseSockaddr(host)
	if err != nil {
		return fmt.Errorf("host address: %w", err)
	}
	return i.addForward(flags, h, guest)
}

func (i *Instance) addForward(flags int, h netip.AddrPort, guest []byte) error {
	g, err := ParseSockaddr(guest)
	if err != nil {
		return fmt.Errorf("guest address: %w", err)
	}
	r, err := forwardRule(flags, h, g)
	if err != nil {
		return err
	}
	if r.HostPort != 0 {
		if _, err := i.net.Publish(r); err != nil {
			return fmt.Errorf("hostfwd %s: %w", r, err)
		}
		return nil
	}
	if err := i.ownBind(); err != nil {
		return fmt.Errorf("hostfwd to an ephemeral port: %w", err)
	}
	// Host port 0: a port the kernel picks, as libslirp's bind does (the
	// host learns it from info usernet). The port is found by binding
	// one and published at once; another program may take it in
	// between, so a few are tried.
	for range ephemeralTries {
		r.HostPort, err = ephemeralPort(r.Proto, r.HostAddr)
		if err != nil {
			return fmt.Errorf("hostfwd to an ephemeral port: %w", err)
		}
		if _, err = i.net.Publish(r); err == nil || !errors.Is(err, syscall.EADDRINUSE) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("hostfwd %s: %w", r, err)
	}
	return nil
}

// ephemeralTries bounds the ports tried for a host port 0.
const ephemeralTries = 8

// ephemeralPort is a port of proto on addr the kernel has just handed out.
func ephemeralPort(proto config.Proto, addr netip.Addr) (uint16, error) {
	ap := netip.AddrPortFrom(addr, 0)
	if proto == config.UDP {
		c, err := hostnet.ListenUDP(ap)
		if err != nil {
			return 0, err
		}
		defer c.Close()
		return uint16(c.LocalAddr().(*net.UDPAddr).Port), nil
	}
	l, err := hostnet.ListenTCP(ap)
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return uint16(l.Addr().(*net.TCPAddr).Port), nil
}

// RemoveForward removes the forward of a host address and port.
func (i *Instance) RemoveForward(flags int, host []byte) error {
	h, err := ParseSockaddr(host)
	if err != nil {
		return fmt.Errorf("host address: %w", err)
	}
	proto := config.TCP
	if flags&FwdUDP != 0 {
		proto = config.UDP
	}
	for _, f := range i.net.Forwards() {
		if f.Proto == proto && f.HostAddr.Unmap() == h.Addr().Unmap() && f.HostPort == h.Port() {
			if _, err := i.net.Unpublish(f.ID); err != nil {
				return fmt.Errorf("remove hostfwd %s: %w", f.PublishRule, err)
			}
			return nil
		}
	}
	return fmt.Errorf("no %s forward of %v: %w", proto, h, network.ErrNotFound)
}

// Errno is the errno a C caller gets for err: the system call's own when
// there is one (a port in use), else one that fits the kind of failure.
func Errno(err error) syscall.Errno {
	var e syscall.Errno
	var fe *config.FieldError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &e):
		return e
	case errors.Is(err, ErrFamily):
		return syscall.EAFNOSUPPORT
	case errors.Is(err, network.ErrConflict):
		return syscall.EADDRINUSE
	case errors.Is(err, network.ErrNotFound):
		return syscall.ENOENT
	case errors.Is(err, network.ErrLimit):
		return syscall.ENOSPC
	case errors.Is(err, network.ErrNotInNetwork):
		return syscall.EINVAL
	case errors.Is(err, network.ErrClosed):
		return syscall.EBADF
	case errors.As(err, &fe):
		return syscall.EINVAL
	default:
		return syscall.EIO
	}
}
