package nsrun

import (
	"net"
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"
)

// The factory's helper makes sockets for the namespace's loopback only,
// and starts their connect itself.
func TestMakeSocket(t *testing.T) {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	to := l.Addr().(*net.TCPAddr).AddrPort()
	fd, err := makeSocket(socketRequest(1, unix.SOCK_STREAM, to))
	if err != nil {
		t.Fatalf("a socket to %v: %v", to, err)
	}
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	unix.Close(fd)
	for _, bad := range []netip.AddrPort{
		netip.MustParseAddrPort("192.0.2.1:80"),
		netip.MustParseAddrPort("[2001:db8::1]:80"),
		netip.MustParseAddrPort("127.0.0.1:0"),
	} {
		if fd, err := makeSocket(socketRequest(2, unix.SOCK_DGRAM, bad)); err == nil {
			unix.Close(fd)
			t.Errorf("a socket to %v: made, want refused", bad)
		}
	}
	req := socketRequest(3, unix.SOCK_STREAM, to)
	req[5] = 6 // an IPv4 address said to be IPv6
	if fd, err := makeSocket(req); err == nil {
		unix.Close(fd)
		t.Error("a request whose family and address disagree: made, want refused")
	}
}
