package slirpabi

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"

	"github.com/slipway-net/slipway/config"
	"github.com/slipway-net/slipway/internal/hostnet"
)

// The listening sockets of host forwards. In the process shape the shim
// binds each one in the host (which keeps the host's privileges: a root
// QEMU's hostfwd below 1024) and hands it over with its request; the
// sandboxed server binds nothing itself once it serves (Landlock lets it
// bind no port, and its filter has no listen). The in-process shape binds
// its own, with MPTCP off (hostnet).

// errOwnBind is a bind the sandboxed server would have to do itself.
var errOwnBind = fmt.Errorf("the host binds the server's listening sockets, and gave none for this one: %w", syscall.EACCES)

// granted is a listening socket the host bound for one forward.
type granted struct {
	tcp *net.TCPListener
	udp *net.UDPConn
}

func (g granted) addr() netip.AddrPort {
	var a net.Addr
	if g.tcp != nil {
		a = g.tcp.Addr()
	} else {
		a = g.udp.LocalAddr()
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

func (g granted) close() {
	if g.tcp != nil {
		g.tcp.Close()
	}
	if g.udp != nil {
		g.udp.Close()
	}
}

// grantFrom takes over f, a socket the host bound for a forward of proto.
func grantFrom(f *os.File, proto config.Proto) (granted, error) {
	defer f.Close()
	if proto == config.UDP {
		u, err := hostnet.FileUDPConn(f)
		if err != nil {
			return granted{}, fmt.Errorf("the host's socket for a UDP forward: %w", err)
		}
		return granted{udp: u}, nil
	}
	t, err := hostnet.FileTCPListener(f)
	if err != nil {
		return granted{}, fmt.Errorf("the host's socket for a TCP forward: %w", err)
	}
	return granted{tcp: t}, nil
}

// take returns the granted socket if it is the one for ap, once.
func (i *Instance) take(ap netip.AddrPort, udp bool) (granted, bool) {
	i.sockMu.Lock()
	defer i.sockMu.Unlock()
	g := i.grant
	if (udp && g.udp == nil) || (!udp && g.tcp == nil) || g.addr() != netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()) {
		return granted{}, false
	}
	i.grant = granted{}
	return g, true
}

func (i *Instance) ownBind() error {
	i.sockMu.Lock()
	defer i.sockMu.Unlock()
	if i.noOwnBinds {
		return errOwnBind
	}
	return nil
}

func (i *Instance) listenTCP(ap netip.AddrPort) (*net.TCPListener, error) {
	if g, ok := i.take(ap, false); ok {
		return g.tcp, nil
	}
	if err := i.ownBind(); err != nil {
		return nil, err
	}
	if i.hostListenTCP != nil {
		return i.hostListenTCP(ap)
	}
	return hostnet.ListenTCP(ap)
}

func (i *Instance) listenUDP(ap netip.AddrPort) (*net.UDPConn, error) {
	if g, ok := i.take(ap, true); ok {
		return g.udp, nil
	}
	if err := i.ownBind(); err != nil {
		return nil, err
	}
	if i.hostListenUDP != nil {
		return i.hostListenUDP(ap)
	}
	return hostnet.ListenUDP(ap)
}

// RefuseOwnBinds makes every listening socket come from the host from now
// on (AddGrantedForward): the sandboxed server calls it once confined.
func (i *Instance) RefuseOwnBinds() {
	i.sockMu.Lock()
	i.noOwnBinds = true
	i.sockMu.Unlock()
}

// AddGrantedForward is AddForward with the forward's listening socket
// bound by the host: sock (taken over and closed here) is a TCP listener
// or a UDP socket on the host address, on its port or, for port 0, on the
// one the kernel picked, which the forward then uses.
func (i *Instance) AddGrantedForward(flags int, host, guest []byte, sock *os.File) error {
	h, err := ParseSockaddr(host)
	if err != nil {
		sock.Close()
		return fmt.Errorf("host address: %w", err)
	}
	proto := config.TCP
	if flags&FwdUDP != 0 {
		proto = config.UDP
	}
	g, err := grantFrom(sock, proto)
	if err != nil {
		return fmt.Errorf("hostfwd: the host's socket: %w", err)
	}
	got := g.addr()
	if got.Addr() != h.Addr().Unmap() || (h.Port() != 0 && got.Port() != h.Port()) {
		g.close()
		return fmt.Errorf("hostfwd: the host's socket is bound to %v, not %v: %w", got, h, syscall.EINVAL)
	}
	i.sockMu.Lock()
	i.grant = g
	i.sockMu.Unlock()
	defer func() {
		// Left over when the forward failed before it listened.
		i.sockMu.Lock()
		i.grant.close()
		i.grant = granted{}
		i.sockMu.Unlock()
	}()
	return i.addForward(flags, netip.AddrPortFrom(h.Addr(), got.Port()), guest)
}
