package endpoint

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/slipway-net/slipway/link"
	"github.com/slipway-net/slipway/link/dgram"
	"github.com/slipway-net/slipway/link/stream"
	"github.com/slipway-net/slipway/link/vhostuser"
)

// FDSpec names an inherited, connected socket: "3:stream" (QEMU
// -netdev socket,fd= with a stream socket, a socketpair end from a VMM),
// "3:dgram", "3:seqpacket", "3:vhost-user" (the back-end end of a
// vhost-user socket, as a VMM or libvirt hands one to its back-end).
type FDSpec struct {
	FD   int
	Kind Kind
	// Queues and MTU are Spec's, for a vhost-user fd.
	Queues, MTU int
}

func (f FDSpec) String() string { return fmt.Sprintf("fd:%d:%s", f.FD, f.Kind) }

// ParseFD reads N:KIND.
func ParseFD(s string) (FDSpec, error) {
	num, kind, ok := strings.Cut(s, ":")
	if !ok {
		return FDSpec{}, fmt.Errorf("want N:KIND, e.g. 3:stream, not %q", s)
	}
	fd, err := strconv.Atoi(num)
	if err != nil || fd < 0 {
		return FDSpec{}, fmt.Errorf("%q is not a file descriptor number", num)
	}
	k := Kind(kind)
	if _, ok := kindNetworks[k]; !ok {
		return FDSpec{}, fmt.Errorf("unknown kind %q (want stream, dgram, seqpacket or vhost-user)", kind)
	}
	return FDSpec{FD: fd, Kind: k}, nil
}

// socketTypes maps a kind to the socket type its fd must have.
var socketTypes = map[Kind]int{
	Stream:    unix.SOCK_STREAM,
	Dgram:     unix.SOCK_DGRAM,
	Seqpacket: unix.SOCK_SEQPACKET,
	VhostUser: unix.SOCK_STREAM,
}

// ErrBadFD reports an inherited fd that cannot carry the kind asked for.
var ErrBadFD = errors.New("unusable file descriptor")

// AdoptFD takes over an inherited connected socket as a link. The fd is
// checked first, so a wrong number or kind is one clear error, not a
// link that fails later.
func AdoptFD(f FDSpec) (link.Link, error) {
	c, err := OpenFD(f)
	if err != nil {
		return nil, err
	}
	return adopt(c, f.Kind, f.String(), VhostOptions{Queues: f.Queues, MTU: f.MTU})
}

// AdoptFDNamed is AdoptFD for a link shown as name (a socket received at
// run time is known by the name its VMM gave it, not by a number). It owns
// the fd: the fd is closed whether or not the link is made.
func AdoptFDNamed(f FDSpec, name string) (link.Link, error) {
	if err := checkFD(f); err != nil {
		unix.Close(f.FD)
		return nil, err
	}
	// From here on every path closes the fd (OpenFD works on a dup).
	c, err := OpenFD(f)
	if err != nil {
		return nil, err
	}
	return adopt(c, f.Kind, name, VhostOptions{Queues: f.Queues, MTU: f.MTU})
}

// VhostOptions are a vhost-user link's: its queue pairs, MTU and logger.
type VhostOptions struct {
	Queues, MTU int
	Log         *slog.Logger
}

// adopt makes the link of a connected socket of kind, named name.
func adopt(c net.Conn, kind Kind, name string, vo VhostOptions) (link.Link, error) {
	switch kind {
	case Stream:
		return stream.New(c, name), nil
	case VhostUser:
		uc, ok := c.(*net.UnixConn)
		if !ok {
			c.Close()
			return nil, fmt.Errorf("%w: %s sockets must be unix sockets", ErrBadFD, kind)
		}
		return vhostuser.New(uc, vhostuser.Options{Name: name, Logger: vo.Log, Queues: vo.Queues, MTU: vo.MTU}), nil
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("%w: %s sockets must be unix sockets", ErrBadFD, kind)
	}
	l, err := dgram.NewConn(uc, dgram.Options{
		Name: name,
		// A datagram fd may come from krunkit (type=unixgram,fd=N)
		// with offloading on: partial checksums without a header.
		TrustChecksums: kind == Dgram,
	})
	if err != nil {
		c.Close()
		return nil, err
	}
	return l, nil
}

// OpenFD checks an inherited socket as AdoptFD does and returns it as a
// connection (a *net.UnixConn for datagram and seqpacket kinds), for a
// caller that talks on it before it becomes a link.
func OpenFD(f FDSpec) (net.Conn, error) {
	if err := checkFD(f); err != nil {
		return nil, err
	}
	file := os.NewFile(uintptr(f.FD), f.String())
	c, err := net.FileConn(file)
	// FileConn works on a duplicate; the inherited number is not needed.
	file.Close()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f, err)
	}
	if _, ok := c.(*net.UnixConn); !ok && f.Kind != Stream {
		c.Close()
		return nil, fmt.Errorf("%w: %s sockets must be unix sockets", ErrBadFD, f.Kind)
	}
	return c, nil
}

func checkFD(f FDSpec) error {
	typ, err := unix.GetsockoptInt(f.FD, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil {
		if errors.Is(err, unix.EBADF) {
			return fmt.Errorf("%w: fd %d is not open", ErrBadFD, f.FD)
		}
		return fmt.Errorf("%w: fd %d is not a socket (%v)", ErrBadFD, f.FD, err)
	}
	if typ != socketTypes[f.Kind] {
		return fmt.Errorf("%w: fd %d is a %s socket, not %s", ErrBadFD, f.FD, typeName(typ), f.Kind)
	}
	if listening, err := unix.GetsockoptInt(f.FD, unix.SOL_SOCKET, unix.SO_ACCEPTCONN); err == nil && listening != 0 {
		return fmt.Errorf("%w: fd %d is a listening socket; --fd takes a connected one (use --listen to accept VMs)", ErrBadFD, f.FD)
	}
	if _, err := unix.Getpeername(f.FD); err != nil {
		return fmt.Errorf("%w: fd %d is not connected to a peer (%v)", ErrBadFD, f.FD, err)
	}
	if f.Kind != Dgram {
		// A connected stream whose peer closed its end still has a peer
		// name; only poll tells. What the peer sent before it left is
		// still to be read (bhyve's configuration), so only an empty
		// socket is refused. A datagram peer's death shows on send.
		if peerClosedEmpty(f.FD) {
			return fmt.Errorf("%w: fd %d: its peer has closed its end", ErrBadFD, f.FD)
		}
	}
	return nil
}

// typeName names a socket type (not a kind: vhost-user rides on stream
// sockets too).
func typeName(typ int) string {
	switch typ {
	case unix.SOCK_STREAM:
		return "stream"
	case unix.SOCK_DGRAM:
		return "dgram"
	case unix.SOCK_SEQPACKET:
		return "seqpacket"
	}
	return "type-" + strconv.Itoa(typ)
}
