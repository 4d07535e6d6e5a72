//go:build !linux

package dgram

// pollRDHUP: other systems report a closed peer with POLLHUP alone.
const pollRDHUP = 0
