package dgram

import (
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Senders' and peers' addresses are kept as the kernel's raw unix socket
// address, on every system: converting them to x/sys's Sockaddr would
// cost an allocation per datagram. The layout differs (Linux: a 2-byte
// family and 108 path bytes; the BSDs and macOS: a length byte, a family
// byte and 104 path bytes); the code below only uses what both have.

// abstractNames: only Linux has the abstract namespace, names that start
// with a NUL and whose length is part of the name. Elsewhere a leading NUL
// means no name (FreeBSD reports an unnamed sender as an all-zero path).
const abstractNames = runtime.GOOS == "linux"

// addrFromRaw keeps the path bytes of a sender's address. A pathname is
// cut at its NUL (the kernel may or may not count one); an abstract name
// (leading NUL) is kept whole, as its length is part of the name.
func addrFromRaw(sa *unix.RawSockaddrUnix, namelen uint32) addr {
	var a addr
	const pathOff = uint32(unsafe.Offsetof(sa.Path))
	if namelen <= pathOff || sa.Family != unix.AF_UNIX {
		return a // unnamed: an unbound socket sent this
	}
	n := int(min(namelen-pathOff, uint32(len(sa.Path))))
	for i := 0; i < n; i++ {
		a.path[i] = byte(sa.Path[i])
	}
	if a.path[0] != 0 || !abstractNames {
		for i := 0; i < n; i++ {
			if a.path[i] == 0 {
				n = i
				break
			}
		}
	}
	a.n = uint8(n)
	return a
}

// sockname is a peer's address ready for sendmsg or sendmmsg.
type sockname struct {
	raw unix.RawSockaddrUnix
	len uint32
}

func newSockname(a addr) *sockname {
	s := &sockname{}
	s.raw.Family = unix.AF_UNIX
	// An address comes from this system's kernel, so it fits; the bound
	// only matters if it did not.
	n := min(int(a.n), len(s.raw.Path))
	for i := 0; i < n; i++ {
		s.raw.Path[i] = int8(a.path[i])
	}
	s.len = uint32(unsafe.Offsetof(s.raw.Path)) + uint32(n)
	if n > 0 && a.path[0] != 0 && n < len(s.raw.Path) {
		s.len++ // a pathname carries its terminating NUL
	}
	setSunLen(&s.raw, s.len)
	return s
}
