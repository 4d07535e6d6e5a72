package outbound

import "golang.org/x/sys/unix"

// pingSocket opens an unprivileged ICMP echo socket (Linux ping sockets,
// macOS's SOCK_DGRAM ICMP) of the family, non-blocking and close-on-exec.
func pingSocket(v6 bool) (int, error) {
	family, proto := unix.AF_INET, unix.IPPROTO_ICMP
	if v6 {
		family, proto = unix.AF_INET6, unix.IPPROTO_ICMPV6
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM, proto)
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
