package leases

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// Entry binds one client, by the key its protocol identifies it with, to
// one address. An entry outlives its expiry: the client gets the same
// address back until another client needs the room, which is what keeps
// addresses stable across guest reboots.
type Entry[K comparable] struct {
	Key  K
	Addr netip.Addr
	// Hostname is what the client called itself, where its protocol tells;
	// the table only keeps it.
	Hostname string
	Expires  time.Time
	// Bound is set once the binding is granted, and cleared when the
	// address is only offered again or given back.
	Bound bool
	// Static entries are bound for good by the administrator: they never
	// expire and do not count against the table's bound.
	Static bool
}

// Active reports whether e holds its address at now.
func (e *Entry[K]) Active(now time.Time) bool { return e.Static || now.Before(e.Expires) }

// Reoffer sets e's address aside for hold again if its binding has run
// out: the old address is still free, so the client is offered it anew.
func (e *Entry[K]) Reoffer(now time.Time, hold time.Duration) {
	if !e.Active(now) {
		e.Bound = false
		e.Expires = now.Add(hold)
	}
}

// Grant binds e for d from now and reports whether that renews a binding
// that was current (routine, and paced by the guest: callers log
// renewals more quietly).
func (e *Entry[K]) Grant(now time.Time, d time.Duration) (renewal bool) {
	renewal = e.Bound && e.Active(now)
	e.Bound = true
	e.Expires = now.Add(d)
	return renewal
}

// Release ends e's binding at now. The entry stays, so the client gets
// the same address when it asks again, but it is the first to be
// reclaimed.
func (e *Entry[K]) Release(now time.Time) {
	e.Expires = now
	e.Bound = false
}

// Table is a lease database over one range of addresses. It is not safe
// for concurrent use; the servers serialise access.
type Table[K comparable] struct {
	first, last netip.Addr
	max         int
	reserved    map[netip.Addr]bool
	byKey       map[K]*Entry[K]
	byAddr      map[netip.Addr]*Entry[K]
	declined    *Declined
	dynamic     int // entries that count against max
}

// NewTable returns a table handing out first to last (inclusive, one
// address family) dynamically, to at most bound clients at a time, never
// the reserved addresses. Declined addresses are held back in a set as
// bounded as the leases.
func NewTable[K comparable](first, last netip.Addr, bound int, reserved []netip.Addr) *Table[K] {
	t := &Table[K]{
		first:    first,
		last:     last,
		max:      bound,
		reserved: make(map[netip.Addr]bool),
		byKey:    make(map[K]*Entry[K]),
		byAddr:   make(map[netip.Addr]*Entry[K]),
		declined: NewDeclined(max(bound, 1)),
	}
	for _, a := range reserved {
		if a.IsValid() {
			t.reserved[a] = true
		}
	}
	return t
}

// Get returns the entry of the client k, or nil.
func (t *Table[K]) Get(k K) *Entry[K] { return t.byKey[k] }

// Len is the number of entries, static ones included.
func (t *Table[K]) Len() int { return len(t.byKey) }

// IsReserved reports whether a is one of the addresses never handed out.
// The set does not change, so it may be read without the servers' lock.
func (t *Table[K]) IsReserved(a netip.Addr) bool { return t.reserved[a] }

// inRange reports whether a lies in the dynamic range.
func (t *Table[K]) inRange(a netip.Addr) bool {
	return a.IsValid() && a.Zone() == "" && a.BitLen() == t.first.BitLen() &&
		t.first.Compare(a) <= 0 && a.Compare(t.last) <= 0
}

// dynamicOK reports whether a may be handed out dynamically: in the
// range, not reserved and not recently declined.
func (t *Table[K]) dynamicOK(a netip.Addr, now time.Time) bool {
	if !t.inRange(a) || t.reserved[a] {
		return false
	}
	return !t.declined.Held(a, now)
}

// FreeFor reports whether the client k may take the dynamic address a
// now: no other client's entry holds it.
func (t *Table[K]) FreeFor(k K, a netip.Addr, now time.Time) bool {
	if !t.dynamicOK(a, now) {
		return false
	}
	e := t.byAddr[a]
	return e == nil || e.Key == k
}

func (t *Table[K]) insert(e *Entry[K]) {
	t.byKey[e.Key] = e
	t.byAddr[e.Addr] = e
	if !e.Static {
		t.dynamic++
	}
}

// Remove drops e from the table; its address is free at once.
func (t *Table[K]) Remove(e *Entry[K]) {
	delete(t.byKey, e.Key)
	delete(t.byAddr, e.Addr)
	if !e.Static {
		t.dynamic--
	}
}

// reclaimOne drops the dynamic entry that expired first, making room for
// a new client. It reports whether there was one.
func (t *Table[K]) reclaimOne(now time.Time) bool {
	oldest, ok := OldestExpired(t.byKey,
		func(e *Entry[K]) bool { return e.Active(now) },
		func(e *Entry[K]) time.Time { return e.Expires })
	if ok {
		t.Remove(oldest)
	}
	return ok
}

// Allocate creates an unbound entry, set aside for hold, for a client the
// table does not know, preferring the first free one of the addresses it
// asked for. Expired entries are reclaimed only when the bound or the
// range is reached; ok is false when there is still no room.
func (t *Table[K]) Allocate(k K, hints []netip.Addr, now time.Time, hold time.Duration) (e *Entry[K], ok bool) {
	if t.dynamic >= t.max && !t.reclaimOne(now) {
		return nil, false
	}
	var addr netip.Addr
	for _, h := range hints {
		if t.FreeFor(k, h, now) {
			addr, ok = h, true
			break
		}
	}
	if !ok {
		if addr, ok = t.scan(now); !ok && t.reclaimOne(now) {
			addr, ok = t.scan(now)
		}
	}
	if !ok {
		return nil, false
	}
	e = &Entry[K]{Key: k, Addr: addr, Expires: now.Add(hold)}
	t.insert(e)
	return e, true
}

// scan finds the lowest free address of the range. Its cost is bounded by
// the number of taken, reserved and declined addresses, all of which are
// bounded, plus one.
func (t *Table[K]) scan(now time.Time) (netip.Addr, bool) {
	for a := t.first; a.IsValid() && a.Compare(t.last) <= 0; a = a.Next() {
		if t.byAddr[a] == nil && t.dynamicOK(a, now) {
			return a, true
		}
	}
	return netip.Addr{}, false
}

// Decline takes e's address out of the pool until the given time. The
// declined set is bounded like the leases; when full, the hold that ends
// first is dropped.
func (t *Table[K]) Decline(e *Entry[K], until time.Time) {
	t.Remove(e)
	t.declined.Hold(e.Addr, until)
}

// Pin binds the client k to a for good, in place of whatever k held. The
// caller checks that a is an address the client may have at all; Pin
// refuses only an address another client holds now, and returns that
// client's entry.
func (t *Table[K]) Pin(k K, a netip.Addr, now time.Time) (holder *Entry[K]) {
	if e := t.byAddr[a]; e != nil && e.Key != k {
		if e.Active(now) {
			return e
		}
		t.Remove(e)
	}
	if e := t.byKey[k]; e != nil {
		t.Remove(e)
	}
	t.declined.Release(a)
	t.insert(&Entry[K]{Key: k, Addr: a, Static: true})
	return nil
}

// Current returns the leases of t at now (bound and unexpired entries,
// plus all static ones), ordered by address, each as report makes it.
func Current[K comparable, L any](t *Table[K], now time.Time, report func(*Entry[K]) L) []L {
	return byAddr(t, func(e *Entry[K]) bool { return e.Static || (e.Bound && e.Active(now)) }, report)
}

// byAddr returns, ordered by address, the entries of t that keep accepts,
// each as report makes it.
func byAddr[K comparable, L any](t *Table[K], keep func(*Entry[K]) bool, report func(*Entry[K]) L) []L {
	var cur []*Entry[K]
	for _, e := range t.byKey {
		if keep(e) {
			cur = append(cur, e)
		}
	}
	slices.SortFunc(cur, func(a, b *Entry[K]) int { return a.Addr.Compare(b.Addr) })
	var out []L
	for _, e := range cur {
		out = append(out, report(e))
	}
	return out
}

// Known returns, ordered by address, every entry worth keeping across a
// restart, each as report makes it: static ones, and those granted at
// least once, expired or not (an expired one still gives its client the
// same address back).
func Known[K comparable, L any](t *Table[K], report func(*Entry[K]) L) []L {
	return byAddr(t, func(e *Entry[K]) bool { return e.Static || e.Bound }, report)
}

// Restore puts saved entries back, all or none: each must be an address
// the table may give that client (static ones are the caller's to check),
// no two may share a client or an address, none may clash with an entry
// the table holds for another client or address, and the dynamic ones
// must fit the bound. An entry the table already holds as saved is left
// as it is. Without apply, Restore only checks.
func (t *Table[K]) Restore(es []Entry[K], apply bool) error {
	keys := map[K]bool{}
	addrs := map[netip.Addr]bool{}
	dynamic := t.dynamic
	var add []Entry[K]
	for _, e := range es {
		if keys[e.Key] || addrs[e.Addr] {
			return fmt.Errorf("%v: %w: listed twice", e.Addr, ErrRestore)
		}
		keys[e.Key], addrs[e.Addr] = true, true
		if !e.Static && (!t.inRange(e.Addr) || t.reserved[e.Addr]) {
			return fmt.Errorf("%v: %w: not an address of the pool", e.Addr, ErrRestore)
		}
		if old := t.byKey[e.Key]; old != nil {
			if old.Addr != e.Addr || old.Static != e.Static {
				return fmt.Errorf("%v: %w: the client holds %v here", e.Addr, ErrRestore, old.Addr)
			}
			continue
		}
		if old := t.byAddr[e.Addr]; old != nil {
			return fmt.Errorf("%v: %w: held by another client here", e.Addr, ErrRestore)
		}
		if !e.Static {
			if dynamic++; dynamic > t.max {
				return fmt.Errorf("%w: more leases than the pool's limit of %d", ErrRestore, t.max)
			}
		}
		add = append(add, e)
	}
	if !apply {
		return nil
	}
	for _, e := range add {
		e.Bound = true
		t.declined.Release(e.Addr)
		t.insert(&e)
	}
	return nil
}

// ErrRestore is a saved lease the table cannot take.
var ErrRestore = errors.New("cannot restore lease")
