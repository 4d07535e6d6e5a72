package stream

import "golang.org/x/sys/unix"

func writevOnce(fd int, iov [][]byte) (int, error) { return unix.Writev(fd, iov) }
