package netstack

import (
	"net/netip"
	"sync"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/slipway-net/slipway/internal/framebuild"
	"github.com/slipway-net/slipway/link"
)

// The stack answers ARP only for its own addresses: another guest's
// address is that guest's to answer, or guest-to-guest traffic would go
// to the stack.
func TestARPOnlyForOwnAddresses(t *testing.T) {
	var mu sync.Mutex
	var replies []netip.Addr
	st, err := New(Options{
		MTU:       1500,
		MAC:       gwMAC,
		Addresses: []netip.Prefix{netip.MustParsePrefix("10.0.2.2/24"), netip.MustParsePrefix("10.0.2.3/24")},
		Output: func(frames [][]byte) {
			mu.Lock()
			defer mu.Unlock()
			for _, f := range frames {
				eth := header.Ethernet(f[link.VnetHdrLen:])
				if eth.Type() == header.ARPProtocolNumber {
					a := header.ARP(f[link.VnetHdrLen+link.EthHdrLen:])
					replies = append(replies, netip.AddrFrom4([4]byte(a.ProtocolAddressSender())))
				}
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, target := range []string{"10.0.2.16", "10.0.2.2", "10.0.2.99", "10.0.2.3"} {
		st.Deliver([][]byte{framebuild.ARPRequest(guestMAC, guest.Addr(), netip.MustParseAddr(target))})
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(replies)
		mu.Unlock()
		if n >= 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []netip.Addr{netip.MustParseAddr("10.0.2.2"), netip.MustParseAddr("10.0.2.3")}
	if len(replies) != 2 || replies[0] != want[0] || replies[1] != want[1] {
		t.Fatalf("ARP replies for %v, want only %v", replies, want)
	}
	if n := st.Drops().ARPNotOurs.Load(); n != 2 {
		t.Errorf("ARPNotOurs = %d, want 2", n)
	}
}
