//go:build !linux

package packet

// pollRDHUP: other systems report a closed peer with POLLHUP alone.
const pollRDHUP = 0
