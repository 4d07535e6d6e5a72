package main

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/slipway-net/slipway/internal/endpoint"
	"github.com/slipway-net/slipway/internal/systemd"
)

// Socket activation (slipway@.socket): the service manager binds serve's
// sockets before serve starts and passes them as descriptors. A passed
// socket takes the place of the --listen or --api-socket bound at the same
// address, so that the unit's command line stays the same with or without
// its socket unit; a passed socket no flag names is an error, not silently
// left open. The sockets are the launcher's, handed to the engine like the
// ones it binds itself, and their files are the manager's: serve does not
// remove them when it exits.

// activated is what the service manager passed: each socket with its
// type and address, until a flag claims it.
type activated struct {
	socks []activatedSocket
}

type activatedSocket struct {
	systemd.Socket
	typ  int           // SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET
	addr unix.Sockaddr // where it is bound
	used bool
}

// takeActivated adopts the sockets passed to this process, if any.
func takeActivated() (*activated, error) {
	socks, err := systemd.TakeListeners()
	if err != nil {
		return nil, usageError{err}
	}
	return adoptSockets(socks)
}

// adoptSockets reads each passed socket's type and address.
func adoptSockets(socks []systemd.Socket) (*activated, error) {
	a := &activated{}
	for _, s := range socks {
		fd := int(s.File.Fd())
		typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
		if err != nil {
			a.close()
			closeSockets(socks)
			return nil, usageError{fmt.Errorf("socket activation: descriptor %d (%s) is not a socket: %w", fd, s.Name, err)}
		}
		sa, err := unix.Getsockname(fd)
		if err != nil {
			a.close()
			closeSockets(socks)
			return nil, usageError{fmt.Errorf("socket activation: descriptor %d (%s): %w", fd, s.Name, err)}
		}
		a.socks = append(a.socks, activatedSocket{Socket: s, typ: typ, addr: sa})
	}
	return a, nil
}

func closeSockets(socks []systemd.Socket) {
	for _, s := range socks {
		s.File.Close()
	}
}

// close closes the sockets no flag claimed.
func (a *activated) close() {
	if a == nil {
		return
	}
	for i := range a.socks {
		if !a.socks[i].used {
			a.socks[i].File.Close()
			a.socks[i].used = true
		}
	}
}

// unclaimed is the error for passed sockets no flag names.
func (a *activated) unclaimed() error {
	if a == nil {
		return nil
	}
	var left []string
	for _, s := range a.socks {
		if !s.used {
			left = append(left, fmt.Sprintf("descriptor %d (name %s, %s)", s.File.Fd(), s.Name, describeSockaddr(s.typ, s.addr)))
		}
	}
	if len(left) == 0 {
		return nil
	}
	return usageError{fmt.Errorf("socket activation: %s matches no --listen or --api-socket: give the flag with the socket's address", strings.Join(left, ", "))}
}

// unixSocket returns the passed socket of type typ bound at path.
func (a *activated) unixSocket(typ int, path string) *os.File {
	if a == nil {
		return nil
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil
	}
	for i := range a.socks {
		s := &a.socks[i]
		if sa, ok := s.addr.(*unix.SockaddrUnix); ok && !s.used && s.typ == typ && filepath.Clean(sa.Name) == abs {
			s.used = true
			return s.File
		}
	}
	return nil
}

// tcpSocket returns the passed stream socket bound at ap; an unspecified
// address (0.0.0.0, ::) matches either family's, as systemd binds
// ListenStream=PORT dual-stack on [::].
func (a *activated) tcpSocket(ap netip.AddrPort) *os.File {
	if a == nil {
		return nil
	}
	for i := range a.socks {
		s := &a.socks[i]
		if s.used || s.typ != unix.SOCK_STREAM {
			continue
		}
		var got netip.AddrPort
		switch sa := s.addr.(type) {
		case *unix.SockaddrInet4:
			got = netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
		case *unix.SockaddrInet6:
			got = netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), uint16(sa.Port))
		default:
			continue
		}
		want, have := ap.Addr().Unmap(), got.Addr().Unmap()
		if got.Port() == ap.Port() && (want == have || want.IsUnspecified() && have.IsUnspecified()) {
			s.used = true
			return s.File
		}
	}
	return nil
}

// listen returns a passed socket for a --listen endpoint, if the manager
// passed one at its address (nil otherwise).
func (a *activated) listen(spec endpoint.Spec) (*os.File, error) {
	if a == nil || len(a.socks) == 0 {
		return nil, nil
	}
	if spec.Network == "tcp" {
		addr, err := net.ResolveTCPAddr("tcp", spec.Address)
		if err != nil {
			return nil, err
		}
		ip, _ := netip.AddrFromSlice(addr.IP)
		if addr.IP == nil {
			ip = netip.IPv4Unspecified()
		}
		return a.tcpSocket(netip.AddrPortFrom(ip, uint16(addr.Port))), nil
	}
	typ := unix.SOCK_STREAM
	switch spec.Kind {
	case endpoint.Dgram:
		typ = unix.SOCK_DGRAM
	case endpoint.Seqpacket:
		typ = unix.SOCK_SEQPACKET
	}
	return a.unixSocket(typ, spec.Address), nil
}

func describeSockaddr(typ int, sa unix.Sockaddr) string {
	kind := map[int]string{unix.SOCK_STREAM: "stream", unix.SOCK_DGRAM: "datagram", unix.SOCK_SEQPACKET: "seqpacket"}[typ]
	if kind == "" {
		kind = fmt.Sprintf("type %d", typ)
	}
	switch sa := sa.(type) {
	case *unix.SockaddrUnix:
		return kind + " unix:" + sa.Name
	case *unix.SockaddrInet4:
		return kind + " " + netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port)).String()
	case *unix.SockaddrInet6:
		return kind + " " + netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), uint16(sa.Port)).String()
	}
	return kind
}
