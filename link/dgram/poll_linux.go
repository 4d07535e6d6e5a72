package dgram

import "golang.org/x/sys/unix"

// pollRDHUP reports a peer's hang-up on a socket that is still readable.
const pollRDHUP = unix.POLLRDHUP
