package flow

import (
	"encoding/binary"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mmsghdr is struct mmsghdr of recvmmsg(2): Go pads it as C does.
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
}

// batchState is recvmmsg's arguments, kept in the reader so that a call
// allocates nothing.
type batchState struct {
	hdrs  [dgramBatch]mmsghdr
	iovs  [dgramBatch]unix.Iovec
	names [dgramBatch]unix.RawSockaddrAny
}

// readBatch takes up to dgramBatch datagrams with one recvmmsg(2). The
// kernel returns the datagrams it has; an error only when it had none.
func (r *DatagramReader) readBatch(fd int) (int, error) {
	st := &r.batch
	for i := range dgramBatch {
		b := r.buf(i)
		st.iovs[i].Base = &b[0]
		st.iovs[i].SetLen(len(b))
		h := &st.hdrs[i].hdr
		h.Iov = &st.iovs[i]
		h.SetIovlen(1)
		h.Name, h.Namelen = nil, 0
		if r.from {
			h.Name = (*byte)(unsafe.Pointer(&st.names[i]))
			h.Namelen = unix.SizeofSockaddrAny
		}
	}
	n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&st.hdrs[0])), dgramBatch, 0, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	if n == 0 { // not for a non-blocking socket; never hand out a stale slot
		return 0, unix.EAGAIN
	}
	for i := range int(n) {
		r.lens[i] = int(st.hdrs[i].n)
		r.addrs[i] = netip.AddrPort{}
		if r.from {
			r.addrs[i] = addrOf(&st.names[i])
		}
	}
	return int(n), nil
}

// addrOf decodes a raw IPv4 or IPv6 socket address.
func addrOf(rsa *unix.RawSockaddrAny) netip.AddrPort {
	switch rsa.Addr.Family {
	case unix.AF_INET:
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(rsa))
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), portOf(sa.Port))
	case unix.AF_INET6:
		sa := (*unix.RawSockaddrInet6)(unsafe.Pointer(rsa))
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), portOf(sa.Port))
	}
	return netip.AddrPort{}
}

// portOf reads a port stored in network byte order.
func portOf(p uint16) uint16 {
	var b [2]byte
	*(*uint16)(unsafe.Pointer(&b[0])) = p
	return binary.BigEndian.Uint16(b[:])
}
