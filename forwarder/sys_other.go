//go:build !linux

package forwarder

import "golang.org/x/sys/unix"

// ioctlInQueue asks how many bytes a socket holds unread: FIONREAD, which
// is _IOR('f', 127, int) on macOS and the BSDs; x/sys/unix does not name it.
const ioctlInQueue = 0x4004667f

// pingSocket opens an unprivileged ICMP echo socket; these systems have no
// atomic close-on-exec and non-blocking flags at creation.
func pingSocket() (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, unix.IPPROTO_ICMP)
	if err != nil {
		return -1, err
	}
	unix.CloseOnExec(fd)
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}
