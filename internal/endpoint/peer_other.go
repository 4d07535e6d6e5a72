//go:build !linux

package endpoint

import "golang.org/x/sys/unix"

// fionread is FIONREAD on macOS and the BSDs, _IOR('f', 127, int).
const fionread = 0x4004667f

// peerClosedEmpty reports whether a stream socket's peer has closed its
// end and nothing it sent is left to read (FIONREAD here; no POLLRDHUP).
func peerClosedEmpty(fd int) bool {
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	if n, err := unix.Poll(pfd, 0); err != nil || n == 0 || pfd[0].Revents&unix.POLLHUP == 0 {
		return false
	}
	queued, err := unix.IoctlGetInt(fd, fionread)
	return err == nil && queued == 0
}
