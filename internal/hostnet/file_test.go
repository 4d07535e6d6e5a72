package hostnet

import (
	"errors"
	"net/netip"
	"syscall"
	"testing"
)

// A handed-over socket comes back as what it is, and one of the other
// kind is refused with EINVAL, its own copy closed.
func TestFileSockets(t *testing.T) {
	lo := netip.MustParseAddrPort("127.0.0.1:0")
	l, err := ListenTCP(lo)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	u, err := ListenUDP(lo)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	lf, _ := l.File()
	defer lf.Close()
	uf, _ := u.File()
	defer uf.Close()
	if got, err := FileTCPListener(lf); err != nil || got.Addr().String() != l.Addr().String() {
		t.Errorf("FileTCPListener = %v, %v; want the listener on %v", got, err, l.Addr())
	} else {
		got.Close()
	}
	if got, err := FileUDPConn(uf); err != nil || got.LocalAddr().String() != u.LocalAddr().String() {
		t.Errorf("FileUDPConn = %v, %v; want the socket on %v", got, err, u.LocalAddr())
	} else {
		got.Close()
	}
	if _, err := FileTCPListener(uf); !errors.Is(err, syscall.EINVAL) {
		t.Errorf("FileTCPListener of a UDP socket: %v, want EINVAL", err)
	}
	if _, err := FileUDPConn(lf); err == nil {
		t.Error("FileUDPConn of a TCP listener succeeded")
	}
}
