package broker

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// macOS has no SOCK_CLOEXEC or pipe2: the descriptors are marked
// close-on-exec under the fork lock, as Go's own packages do there. The
// broker only serves Linux's confined engine, so none of this runs on
// macOS (which has no SOCK_SEQPACKET unix sockets either); it keeps the
// package building there.

func seqpacketPair() ([2]int, error) {
	syscall.ForkLock.RLock()
	defer syscall.ForkLock.RUnlock()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET, 0)
	if err == nil {
		unix.CloseOnExec(fds[0])
		unix.CloseOnExec(fds[1])
	}
	return fds, err
}

func cloexecPipe() ([2]int, error) {
	syscall.ForkLock.RLock()
	defer syscall.ForkLock.RUnlock()
	var p [2]int
	err := unix.Pipe(p[:])
	if err == nil {
		unix.CloseOnExec(p[0])
		unix.CloseOnExec(p[1])
	}
	return p, err
}
