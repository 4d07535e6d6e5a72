package hostnet

import (
	"fmt"
	"net/netip"
	"os"

	"golang.org/x/sys/unix"

	"github.com/slipway-net/slipway/config"
)

// Connect opens a socket for a strict sandbox's engine: TCP with its
// connect started but not waited for (the engine waits on its own
// poller, so that one slow destination holds no other request up), or
// UDP connected. laddr, if valid, is the address to bind first.
func Connect(proto config.Proto, laddr netip.Addr, to netip.AddrPort) (*os.File, error) {
	fam := unix.AF_INET6
	if to.Addr().Unmap().Is4() {
		fam = unix.AF_INET
		to = netip.AddrPortFrom(to.Addr().Unmap(), to.Port())
	}
	typ := unix.SOCK_STREAM
	if proto == config.UDP {
		typ = unix.SOCK_DGRAM
	}
	fd, err := unix.Socket(fam, typ|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	if laddr.IsValid() {
		if err := unix.Bind(fd, sockaddr(netip.AddrPortFrom(laddr, 0))); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("bind %v: %w", laddr, err)
		}
	}
	if err := unix.Connect(fd, sockaddr(to)); err != nil && err != unix.EINPROGRESS {
		unix.Close(fd)
		return nil, fmt.Errorf("connect %v: %w", to, err)
	}
	return os.NewFile(uintptr(fd), "connect "+to.String()), nil
}

func sockaddr(ap netip.AddrPort) unix.Sockaddr {
	if ap.Addr().Is4() {
		return &unix.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())}
	}
	return &unix.SockaddrInet6{Addr: ap.Addr().As16(), Port: int(ap.Port())}
}

// PingSocket opens an unprivileged ICMP echo socket of the family.
func PingSocket(v6 bool) (*os.File, error) {
	fam, proto := unix.AF_INET, unix.IPPROTO_ICMP
	if v6 {
		fam, proto = unix.AF_INET6, unix.IPPROTO_ICMPV6
	}
	fd, err := unix.Socket(fam, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return nil, fmt.Errorf("ping socket: %w", err)
	}
	return os.NewFile(uintptr(fd), "ping"), nil
}
