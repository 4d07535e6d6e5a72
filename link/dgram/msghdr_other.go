//go:build !(darwin || dragonfly || freebsd || netbsd || openbsd || solaris)

package dgram

import "golang.org/x/sys/unix"

// setSunLen: these systems' socket addresses have no length field.
func setSunLen(*unix.RawSockaddrUnix, uint32) {}

// truncated reports a message cut short to fit the buffer.
func truncated(h *unix.Msghdr) bool { return h.Flags&unix.MSG_TRUNC != 0 }
