//go:build !linux

package flow

import (
	"net/netip"

	"golang.org/x/sys/unix"
)

// batchState is empty: off Linux a read takes one datagram.
type batchState struct{}

// readBatch reads one datagram into the first slot.
func (r *DatagramReader) readBatch(fd int) (int, error) {
	b := r.buf(0)
	var n int
	var from netip.AddrPort
	var err error
	if r.from {
		n, from, err = recvFrom(fd, b)
	} else {
		n, err = unix.Read(fd, b)
	}
	if err != nil {
		return 0, err
	}
	r.lens[0], r.addrs[0] = n, from
	return 1, nil
}

// recvFrom is recvfrom(2); off Linux it allocates the sender's Sockaddr.
func recvFrom(fd int, b []byte) (int, netip.AddrPort, error) {
	n, sa, err := unix.Recvfrom(fd, b, 0)
	if err != nil {
		return 0, netip.AddrPort{}, err
	}
	var from netip.AddrPort
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		from = netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
	case *unix.SockaddrInet6:
		from = netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), uint16(sa.Port))
	}
	return n, from, nil
}
