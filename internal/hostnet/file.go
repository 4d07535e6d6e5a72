package hostnet

import (
	"fmt"
	"net"
	"os"
	"syscall"
)

// The sockets a launcher, broker or host opened and handed over arrive as
// files; these make them the socket types slipway serves. f stays the
// caller's (net dups it).

// FileTCPListener is the TCP listener f holds.
func FileTCPListener(f *os.File) (*net.TCPListener, error) {
	l, err := net.FileListener(f)
	if err != nil {
		return nil, err
	}
	t, ok := l.(*net.TCPListener)
	if !ok {
		l.Close()
		return nil, fmt.Errorf("%s is a %T, not a TCP listener: %w", f.Name(), l, syscall.EINVAL)
	}
	return t, nil
}

// FileUDPConn is the UDP socket f holds.
func FileUDPConn(f *os.File) (*net.UDPConn, error) {
	c, err := net.FilePacketConn(f)
	if err != nil {
		return nil, err
	}
	u, ok := c.(*net.UDPConn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("%s is a %T, not a UDP socket: %w", f.Name(), c, syscall.EINVAL)
	}
	return u, nil
}
