package flow

import (
	"net/netip"
	"testing"
	"time"

	"github.com/slipway-net/slipway/config"
)

// fakeClock is a clock the test moves by hand.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func guestEnds(guest string, proto config.Proto) Ends {
	return Ends{Proto: proto, Guest: netip.AddrPortFrom(netip.MustParseAddr(guest), 40000), Host: netip.MustParseAddrPort("127.0.0.1:53")}
}

// One guest meets its UDP limit; its TCP flows, the other guests and the
// published ports' flows do not count against it.
func TestGuestUDPLimit(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	tab := NewTable(Limits{Max: 100, UDPPerGuest: 3, NewPerSecond: 1000, Now: clk.now})
	defer tab.Close()
	a := guestEnds("10.0.2.15", config.UDP)
	var first *Flow
	for i := range 3 {
		f := reserve(t, tab, a)
		if i == 0 {
			first = f
		}
	}
	if _, err := tab.Reserve(a); err != ErrGuestUDPLimit {
		t.Fatalf("a 4th UDP flow of a guest limited to 3: %v, want ErrGuestUDPLimit", err)
	}
	reserve(t, tab, guestEnds("10.0.2.15", config.TCP))
	reserve(t, tab, guestEnds("10.0.2.16", config.UDP))
	pub := a
	pub.Forward = 7
	reserve(t, tab, pub)
	if got := tab.Refusals(); got != (Refusals{GuestUDP: 1}) {
		t.Fatalf("Refusals = %+v, want GuestUDP 1", got)
	}
	first.Close()
	reserve(t, tab, a) // a closed flow frees its place in the guest's limit
}

// A guest gets a second's worth of flows at once, then its rate; a guest
// that stays quiet saves up no more than that second.
func TestGuestNewFlowRate(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	tab := NewTable(Limits{Max: 1000, UDPPerGuest: 1000, NewPerSecond: 10, Now: clk.now})
	defer tab.Close()
	a := guestEnds("10.0.2.15", config.TCP)
	open := func() int {
		n := 0
		for {
			f, err := tab.Reserve(a)
			if err == ErrRate {
				return n
			}
			if err != nil {
				t.Fatal(err)
			}
			f.Close() // flows that end at once are still new flows
			n++
		}
	}
	if n := open(); n != 10 {
		t.Fatalf("burst: %d flows, want 10", n)
	}
	clk.advance(300 * time.Millisecond)
	if n := open(); n != 3 {
		t.Fatalf("after 300ms: %d flows, want 3", n)
	}
	clk.advance(time.Hour)
	if n := open(); n != 10 {
		t.Fatalf("after an hour's quiet: %d flows, want the burst of 10", n)
	}
	if got := tab.Refusals().Rate; got != 3 {
		t.Fatalf("Refusals.Rate = %d, want 3", got)
	}
	// Another guest has its own rate; published flows need none.
	reserve(t, tab, guestEnds("10.0.2.16", config.TCP))
	pub := a
	pub.Forward = 1
	reserve(t, tab, pub)
}

// A guest forging source addresses leaves a bounded number of records
// behind once its flows are gone.
func TestGuestRecordsBounded(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	tab := NewTable(Limits{Max: 10, UDPPerGuest: 10, NewPerSecond: 1, Now: clk.now})
	defer tab.Close()
	base := netip.MustParseAddr("10.0.0.0").As4()
	for i := range 5 * maxIdleGuests {
		b := base
		b[2], b[3] = byte(i>>8), byte(i)
		f, err := tab.Reserve(Ends{Proto: config.UDP, Guest: netip.AddrPortFrom(netip.AddrFrom4(b), 1)})
		if err != nil {
			t.Fatalf("guest %d: %v", i, err)
		}
		f.Close()
	}
	tab.mu.Lock()
	n := len(tab.guests.guests)
	tab.mu.Unlock()
	if n > maxIdleGuests {
		t.Fatalf("%d guest records kept for guests with no flow, want at most %d", n, maxIdleGuests)
	}
}
