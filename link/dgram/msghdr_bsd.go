//go:build darwin || dragonfly || freebsd || netbsd || openbsd

package dgram

import "golang.org/x/sys/unix"

// setSunLen fills sun_len, which BSD socket addresses carry in front of
// their family. The kernels set it from the length passed anyway; it is
// filled so the address is whole as written, as x/sys writes its own.
func setSunLen(sa *unix.RawSockaddrUnix, n uint32) { sa.Len = uint8(n) }

// truncated reports a message cut short to fit the buffer.
func truncated(h *unix.Msghdr) bool { return h.Flags&unix.MSG_TRUNC != 0 }
