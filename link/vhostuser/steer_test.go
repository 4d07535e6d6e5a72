package vhostuser

import (
	"encoding/binary"
	"testing"

	"github.com/slipway-net/slipway/link"
)

// tcpFrame is an Ethernet+IPv4+TCP frame from port sport with n payload
// bytes; v6 makes it IPv6.
func tcpFrame(sport uint16, n int, v6 bool) []byte {
	var f []byte
	f = append(f, 0x52, 0x54, 0, 0, 0, 1, 0x52, 0x54, 0, 0, 0, 2)
	if v6 {
		f = append(f, 0x86, 0xdd)
		ip := make([]byte, 40)
		ip[0], ip[6] = 0x60, 6
		ip[8+15], ip[24+15] = 2, 15
		f = append(f, ip...)
	} else {
		f = append(f, 0x08, 0x00)
		ip := make([]byte, 20)
		ip[0], ip[9] = 0x45, 6
		copy(ip[12:], []byte{10, 0, 2, 2, 10, 0, 2, 15})
		f = append(f, ip...)
	}
	tcp := make([]byte, 20+n)
	binary.BigEndian.PutUint16(tcp[0:], sport)
	binary.BigEndian.PutUint16(tcp[2:], 80)
	tcp[12] = 5 << 4
	tcp[13] = byte(n) // flags vary with the frame: must not matter
	return append(f, tcp...)
}

// With several queue pairs each flow's frames go to one pair whatever
// their size and flags, flows spread over every pair, and what is not IP
// goes to the first.
func TestSteering(t *testing.T) {
	const pairs = 4
	l := &Link{queues: make([]*queue, 2*pairs)}
	steer := func(b []byte) int {
		f := link.Frame{Hdr: make([]byte, link.VnetHdrLen), Segs: [][]byte{b}}
		return l.steer(&f)
	}
	for _, v6 := range []bool{false, true} {
		used := map[int]bool{}
		for port := uint16(40000); port < 40064; port++ {
			p := steer(tcpFrame(port, 0, v6))
			for _, n := range []int{1, 100, 1400, 60000} {
				if q := steer(tcpFrame(port, n, v6)); q != p {
					t.Fatalf("v6=%v flow from port %d: frames on pairs %d and %d", v6, port, p, q)
				}
			}
			used[p] = true
		}
		if len(used) != pairs {
			t.Errorf("v6=%v: 64 flows used pairs %v of %d", v6, used, pairs)
		}
	}
	arp := append(make([]byte, 12), 0x08, 0x06)
	if q := steer(append(arp, make([]byte, 28)...)); q != 0 {
		t.Errorf("ARP on pair %d, want 0", q)
	}
	if q := steer([]byte{1, 2, 3}); q != 0 {
		t.Errorf("a runt on pair %d, want 0", q)
	}
}
