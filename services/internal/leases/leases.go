// Package leases is the lease table the DHCPv4 and DHCPv6 servers share:
// clients bound to addresses of a range, addresses held back after a
// client declined them, and the lease to reclaim when the table is full.
// What a client is (a MAC address, a DUID and IAID) is the servers' to
// say; the table only keys on it.
package leases

import (
	"net/netip"
	"time"
)

// Declined is a bounded set of addresses held out of the pool until a
// time, because a client found them in use.
type Declined struct {
	max   int
	until map[netip.Addr]time.Time
}

// NewDeclined returns a set holding at most max addresses.
func NewDeclined(max int) *Declined {
	return &Declined{max: max, until: make(map[netip.Addr]time.Time)}
}

// Held reports whether a is held back at now; an expired hold is dropped.
func (d *Declined) Held(a netip.Addr, now time.Time) bool {
	until, ok := d.until[a]
	if !ok {
		return false
	}
	if now.Before(until) {
		return true
	}
	delete(d.until, a)
	return false
}

// Hold holds a back until the given time. When the set is full, the hold
// that ends first makes room.
func (d *Declined) Hold(a netip.Addr, until time.Time) {
	if _, ok := d.until[a]; !ok && len(d.until) >= d.max {
		var first netip.Addr
		var firstUntil time.Time
		for b, u := range d.until {
			if !first.IsValid() || u.Before(firstUntil) {
				first, firstUntil = b, u
			}
		}
		delete(d.until, first)
	}
	d.until[a] = until
}

// Release ends a's hold (an administrator bound it statically).
func (d *Declined) Release(a netip.Addr) { delete(d.until, a) }

// Len is the number of holds, expired ones included.
func (d *Declined) Len() int { return len(d.until) }

// OldestExpired returns the entry of m that is not active and expired
// first: the one to reclaim when the table is full.
func OldestExpired[K comparable, E any](m map[K]E, active func(E) bool, expires func(E) time.Time) (E, bool) {
	var oldest E
	found := false
	for _, e := range m {
		if active(e) {
			continue
		}
		if !found || expires(e).Before(expires(oldest)) {
			oldest, found = e, true
		}
	}
	return oldest, found
}
