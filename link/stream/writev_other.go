//go:build !linux

package stream

import "golang.org/x/sys/unix"

// writevFD gathers iov into one send: x/sys/unix has no writev on every
// system, but a stream socket's sendmsg with several buffers is one.
func writevFD(fd int, iov [][]byte) (int, error) {
	return unix.SendmsgBuffers(fd, iov, nil, nil, 0)
}
