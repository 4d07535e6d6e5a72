package forwarder

import "golang.org/x/sys/unix"

// ioctlInQueue asks how many bytes a socket holds unread.
const ioctlInQueue = unix.SIOCINQ

// pingSocket opens an unprivileged ICMP echo socket.
func pingSocket() (int, error) {
	return unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.IPPROTO_ICMP)
}
