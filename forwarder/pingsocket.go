package forwarder

import "golang.org/x/sys/unix"

// pingSocket opens an unprivileged ICMP echo socket (Linux ping sockets,
// macOS's SOCK_DGRAM ICMP), non-blocking and close-on-exec.
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
