package pasta

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"strconv"
	"strings"
)

// Socket states in /proc/net/{tcp,udp}[6] (include/net/tcp_states.h).
const (
	stateListen = 0x0a // a listening TCP socket
	stateClose  = 0x07 // an unconnected (bound) UDP socket
)

// BoundPorts adds to ports the local ports of the sockets in a
// /proc/net/{tcp,tcp6,udp,udp6} table that wait for peers: listening TCP
// sockets, or (udp) unconnected UDP sockets. Sockets bound to a loopback
// address are left out unless loopback is set: slipway reaches the
// namespace through its interface, where they cannot be reached, but
// --host-lo-to-ns-lo carries the host's loopback clients to the
// namespace's loopback. Malformed lines are skipped.
func BoundPorts(table []byte, udp, loopback bool, ports map[uint16]bool) {
	want := uint64(stateListen)
	if udp {
		want = stateClose
	}
	sc := bufio.NewScanner(bytes.NewReader(table))
	sc.Buffer(make([]byte, 0, 512), 4096)
	first := true
	for sc.Scan() {
		if first { // the header
			first = false
			continue
		}
		f := strings.Fields(sc.Text())
		if len(f) < 4 {
			continue
		}
		st, err := strconv.ParseUint(f[3], 16, 8)
		if err != nil || st != want {
			continue
		}
		addr, portHex, ok := strings.Cut(f[1], ":")
		if !ok {
			continue
		}
		p, err := strconv.ParseUint(portHex, 16, 16)
		if err != nil || p == 0 {
			continue
		}
		if udp {
			// A connected UDP socket has a peer; only bound ones wait.
			if _, rport, ok := strings.Cut(f[2], ":"); !ok || rport != "0000" {
				continue
			}
		}
		if !loopback && isLoopback(addr) {
			continue
		}
		ports[uint16(p)] = true
	}
}

// isLoopback reports whether a /proc/net address (hexadecimal, each 32-bit
// word printed as a number read in host order: little-endian here) is 127.0.0.0/8 or ::1, or an
// IPv4-mapped loopback address.
func isLoopback(h string) bool {
	b, err := hex.DecodeString(h)
	if err != nil {
		return false
	}
	switch len(b) {
	case 4:
		return b[3] == 127
	case 16:
		// Words: [0 0 0 0] [0 0 0 0] [0 0 0 0] or [0 0 ffff], then the last.
		zero := func(w []byte) bool { return w[0] == 0 && w[1] == 0 && w[2] == 0 && w[3] == 0 }
		if !zero(b[0:4]) || !zero(b[4:8]) {
			return false
		}
		switch {
		case zero(b[8:12]):
			return b[12] == 1 && b[13] == 0 && b[14] == 0 && b[15] == 0
		case b[8] == 0xff && b[9] == 0xff && b[10] == 0 && b[11] == 0:
			return b[15] == 127
		}
	}
	return false
}
