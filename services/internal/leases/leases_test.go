package leases

import (
	"net/netip"
	"testing"
	"time"
)

func TestDeclinedHoldsUntilAndIsBounded(t *testing.T) {
	now := time.Unix(1000, 0)
	d := NewDeclined(2)
	a, b, c := netip.MustParseAddr("10.0.2.20"), netip.MustParseAddr("10.0.2.21"), netip.MustParseAddr("10.0.2.22")
	d.Hold(a, now.Add(time.Minute))
	d.Hold(b, now.Add(2*time.Minute))
	if !d.Held(a, now) || !d.Held(b, now) || d.Held(c, now) {
		t.Fatal("holds wrong")
	}
	d.Hold(c, now.Add(3*time.Minute)) // full: a, ending first, goes
	if d.Held(a, now) || !d.Held(c, now) || d.Len() != 2 {
		t.Fatalf("bound not kept: a=%v c=%v len=%d", d.Held(a, now), d.Held(c, now), d.Len())
	}
	if d.Held(b, now.Add(2*time.Minute)) || d.Len() != 1 {
		t.Fatal("an expired hold was not dropped")
	}
	d.Release(c)
	if d.Held(c, now) {
		t.Fatal("release did not end the hold")
	}
}

func TestOldestExpired(t *testing.T) {
	type e struct {
		active  bool
		expires int64
	}
	m := map[string]*e{"a": {true, 1}, "b": {false, 5}, "c": {false, 3}}
	got, ok := OldestExpired(m, func(x *e) bool { return x.active }, func(x *e) time.Time { return time.Unix(x.expires, 0) })
	if !ok || got != m["c"] {
		t.Fatalf("got %+v, want c", got)
	}
	if _, ok := OldestExpired(map[string]*e{"a": {true, 1}}, func(x *e) bool { return x.active }, func(x *e) time.Time { return time.Unix(x.expires, 0) }); ok {
		t.Fatal("an active entry was offered for reclaiming")
	}
}

var (
	t0          = time.Unix(1000, 0)
	first, last = netip.MustParseAddr("10.0.2.15"), netip.MustParseAddr("10.0.2.17")
)

// current is Current reporting the entries themselves.
func current(tb *Table[string], now time.Time) []*Entry[string] {
	return Current(tb, now, func(e *Entry[string]) *Entry[string] { return e })
}

func TestAllocatePrefersFreeHintThenLowest(t *testing.T) {
	tb := NewTable[string](first, last, 8, []netip.Addr{netip.MustParseAddr("10.0.2.16")})
	a, ok := tb.Allocate("a", []netip.Addr{netip.MustParseAddr("10.0.2.30"), last}, t0, time.Minute)
	if !ok || a.Addr != last || a.Bound || !a.Expires.Equal(t0.Add(time.Minute)) {
		t.Fatalf("hint: got %+v, %v; want an unbound entry for %v held a minute", a, ok, last)
	}
	// The hint is taken and 10.0.2.16 is reserved: the lowest free one.
	b, ok := tb.Allocate("b", []netip.Addr{last}, t0, time.Minute)
	if !ok || b.Addr != first {
		t.Fatalf("scan: got %+v, %v; want %v", b, ok, first)
	}
	if _, ok := tb.Allocate("c", nil, t0, time.Minute); ok {
		t.Fatal("allocated beyond the range")
	}
	if tb.Get("a") != a || tb.Len() != 2 {
		t.Fatalf("Get(a) = %+v, Len = %d", tb.Get("a"), tb.Len())
	}
}

func TestRangeIsOneFamilyWithoutZones(t *testing.T) {
	tb := NewTable[string](netip.MustParseAddr("fd00::100"), netip.MustParseAddr("fd00::1ff"), 8, nil)
	for _, a := range []string{"fd00::ff", "fd00::200", "fd00::105%eth0", "10.0.2.15", "::ffff:10.0.2.15"} {
		if tb.FreeFor("k", netip.MustParseAddr(a), t0) {
			t.Errorf("%s is free for a client, but is outside the range", a)
		}
	}
	if !tb.FreeFor("k", netip.MustParseAddr("fd00::1ff"), t0) {
		t.Error("the range's last address is not free")
	}
}

func TestBoundReclaimsTheOldestExpired(t *testing.T) {
	tb := NewTable[string](first, last, 2, nil)
	a, _ := tb.Allocate("a", nil, t0, time.Minute)
	b, _ := tb.Allocate("b", nil, t0, 2*time.Minute)
	if _, ok := tb.Allocate("c", nil, t0, time.Minute); ok {
		t.Fatal("allocated beyond the bound while every entry was active")
	}
	// Both have expired; a first, so c gets its room (and address).
	c, ok := tb.Allocate("c", nil, t0.Add(3*time.Minute), time.Minute)
	if !ok || c.Addr != a.Addr || tb.Get("a") != nil || tb.Get("b") != b {
		t.Fatalf("got %+v, %v; a=%v b=%v", c, ok, tb.Get("a"), tb.Get("b"))
	}
}

func TestGrantReofferRelease(t *testing.T) {
	tb := NewTable[string](first, last, 2, nil)
	e, _ := tb.Allocate("a", nil, t0, time.Minute)
	if e.Grant(t0, time.Hour) || !e.Bound {
		t.Fatal("a first grant counted as a renewal")
	}
	if !e.Grant(t0.Add(time.Minute), time.Hour) {
		t.Fatal("a grant of a current binding is a renewal")
	}
	e.Reoffer(t0.Add(2*time.Minute), time.Minute)
	if !e.Bound {
		t.Fatal("reoffering a current binding unbound it")
	}
	if got := current(tb, t0.Add(2*time.Minute)); len(got) != 1 || got[0] != e {
		t.Fatalf("current %+v", got)
	}
	e.Release(t0.Add(2 * time.Minute))
	if e.Bound || e.Active(t0.Add(2*time.Minute)) || len(current(tb, t0.Add(2*time.Minute))) != 0 {
		t.Fatalf("released entry %+v still a lease", e)
	}
	e.Reoffer(t0.Add(3*time.Minute), time.Minute)
	if !e.Expires.Equal(t0.Add(4*time.Minute)) || e.Bound {
		t.Fatalf("reoffered entry %+v", e)
	}
}

func TestDeclineHoldsTheAddressBack(t *testing.T) {
	tb := NewTable[string](first, first, 2, nil)
	e, _ := tb.Allocate("a", nil, t0, time.Minute)
	tb.Decline(e, t0.Add(time.Minute))
	if tb.Get("a") != nil {
		t.Fatal("declined entry kept")
	}
	if _, ok := tb.Allocate("b", nil, t0, time.Minute); ok {
		t.Fatal("declined address handed out during its hold")
	}
	if e, ok := tb.Allocate("b", nil, t0.Add(time.Minute), time.Minute); !ok || e.Addr != first {
		t.Fatal("declined address not handed out after its hold")
	}
}

func TestPin(t *testing.T) {
	tb := NewTable[string](first, last, 1, nil)
	a, _ := tb.Allocate("a", nil, t0, time.Minute)
	if h := tb.Pin("b", a.Addr, t0); h != a {
		t.Fatalf("pinned over an active entry: holder %v", h)
	}
	if h := tb.Pin("a", netip.MustParseAddr("10.0.2.40"), t0); h != nil {
		t.Fatalf("pin refused: holder %v", h)
	}
	// a moved to its static address; static entries do not count against
	// the bound, and are leases without being bound.
	if tb.Get("a").Addr != netip.MustParseAddr("10.0.2.40") || !tb.Get("a").Static {
		t.Fatalf("a is %+v", tb.Get("a"))
	}
	if _, ok := tb.Allocate("b", nil, t0, time.Minute); !ok {
		t.Fatal("a static entry counted against the bound")
	}
	if got := current(tb, t0.Add(time.Hour)); len(got) != 1 || got[0].Key != "a" {
		t.Fatalf("current %+v", got)
	}
}
