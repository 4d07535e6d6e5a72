package ra

import (
	"testing"
	"time"
)

func TestFirstAdvertisementIsDueAtOnce(t *testing.T) {
	a := newAdvertiser(t, nil)
	if got := a.Due(); !got.Equal(t0) {
		t.Fatalf("first advertisement due at %v, want %v (New's time)", got, t0)
	}
}

// TestUnsolicitedSchedule follows RFC 4861 section 6.2.4: a random interval
// in [MinInterval, MaxInterval], capped at 16 s after the first two of
// the three initial advertisements.
func TestUnsolicitedSchedule(t *testing.T) {
	a := newAdvertiser(t, func(c *Config) { c.Rand = seq(0, 1, 0, 0.5, 1) })
	now := t0
	want := []time.Duration{
		16 * time.Second,  // 1st sent, random 200 s capped
		16 * time.Second,  // 2nd sent, random 600 s capped
		200 * time.Second, // 3rd sent: no cap from here on; MinInterval
		400 * time.Second, // halfway
		600 * time.Second, // MaxInterval
	}
	for i, d := range want {
		next := a.Sent(now)
		if next.Sub(now) != d {
			t.Fatalf("after advertisement %d: next in %v, want %v", i+1, next.Sub(now), d)
		}
		if !a.Due().Equal(next) {
			t.Fatalf("Due %v, Sent said %v", a.Due(), next)
		}
		now = next
	}
}

func TestIntervalDefaults(t *testing.T) {
	cases := []struct {
		max, wantMin time.Duration
	}{
		{0, 200 * time.Second},               // the defaults: 200..600 s
		{30 * time.Second, 10 * time.Second}, // a third of MaxInterval
		{4 * time.Second, 3 * time.Second},   // but never under 3 s
	}
	for _, tc := range cases {
		a := newAdvertiser(t, func(c *Config) {
			c.MaxInterval = tc.max
			c.Rand = seq(0)
		})
		a.Sent(t0)
		a.Sent(t0)
		if got := a.Sent(t0).Sub(t0); got != tc.wantMin {
			t.Errorf("MaxInterval %v: shortest interval %v, want %v", tc.max, got, tc.wantMin)
		}
	}
}

// TestSolicitedRateLimit follows RFC 4861 section 6.2.6: an answer after a
// random delay of up to 0.5 s, but no sooner than 3 s after the last
// advertisement, and none extra when one is due sooner anyway.
func TestSolicitedRateLimit(t *testing.T) {
	a := newAdvertiser(t, func(c *Config) { c.Rand = seq(0.5) })

	// Before anything was sent the first advertisement is due now: it
	// answers a solicitation arriving at the same time.
	if at, moved := a.Solicited(t0); moved || !at.Equal(t0) {
		t.Fatalf("solicitation at start: %v moved=%v, want the advertisement due at %v", at, moved, t0)
	}

	a.Sent(t0) // next unsolicited at t0+16s
	at, moved := a.Solicited(t0.Add(time.Second))
	if !moved || !at.Equal(t0.Add(3*time.Second)) {
		t.Fatalf("solicitation 1 s after an advertisement: %v moved=%v, want t0+3s", at, moved)
	}
	// A second solicitation before that is answered by the same one.
	if at2, moved := a.Solicited(t0.Add(2 * time.Second)); moved || !at2.Equal(at) {
		t.Fatalf("second solicitation: %v moved=%v, want %v", at2, moved, at)
	}
	a.Sent(at)

	// Long after the last advertisement: answered after the random delay.
	later := at.Add(10 * time.Second)
	at, moved = a.Solicited(later)
	if !moved || at.Sub(later) != 250*time.Millisecond {
		t.Fatalf("solicitation 10 s after an advertisement: in %v moved=%v, want 250ms", at.Sub(later), moved)
	}
	if !a.Due().Equal(at) {
		t.Fatalf("Due %v, want %v", a.Due(), at)
	}
}

func TestSolicitedRandomDelayBounds(t *testing.T) {
	for _, r := range []float64{0, 0.999999} {
		a := newAdvertiser(t, func(c *Config) { c.Rand = seq(r) })
		a.Sent(t0)
		now := t0.Add(5 * time.Second) // past the rate limit, before the next due
		at, moved := a.Solicited(now)
		if d := at.Sub(now); !moved || d < 0 || d >= 500*time.Millisecond {
			t.Fatalf("rand %v: delay %v (moved=%v) outside [0, 0.5 s)", r, d, moved)
		}
	}
}
