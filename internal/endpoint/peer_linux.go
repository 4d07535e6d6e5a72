package endpoint

import "golang.org/x/sys/unix"

// peerClosedEmpty reports whether a stream socket's peer has closed its
// end and nothing it sent is left to read.
func peerClosedEmpty(fd int) bool {
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLRDHUP}}
	if n, err := unix.Poll(pfd, 0); err != nil || n == 0 || pfd[0].Revents&(unix.POLLHUP|unix.POLLRDHUP) == 0 {
		return false
	}
	queued, err := unix.IoctlGetInt(fd, unix.SIOCINQ)
	return err == nil && queued == 0
}
