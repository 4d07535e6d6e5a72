//go:build !darwin

package broker

import "golang.org/x/sys/unix"

// seqpacketPair is a SOCK_SEQPACKET socket pair, close-on-exec from the
// start.
func seqpacketPair() ([2]int, error) {
	return unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
}

// cloexecPipe is a pipe, close-on-exec from the start.
func cloexecPipe() ([2]int, error) {
	var p [2]int
	err := unix.Pipe2(p[:], unix.O_CLOEXEC)
	return p, err
}
