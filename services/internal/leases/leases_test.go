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
