package stream

import "golang.org/x/sys/unix"

// writevFD is one writev(2).
func writevFD(fd int, iov [][]byte) (int, error) { return unix.Writev(fd, iov) }
