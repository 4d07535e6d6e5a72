package dhcp6

import (
	"github.com/slipway-net/slipway/services/internal/leases"
	"net/netip"
	"time"
)

const (
	// advertiseHold is how long an address in an ADVERTISE stays set
	// aside for the client, so its REQUEST gets that same address.
	advertiseHold = time.Minute
	// declineHold is how long an address a client declined (DAD found it
	// in use) stays out of the pool.
	declineHold = 10 * time.Minute
)

// key identifies an IA_NA: the client's DUID and the IAID it chose. A
// client with two interfaces, or two IA_NAs, gets two addresses.
type key struct {
	duid string
	iaid uint32
}

// entry binds one IA_NA to one address. An entry outlives its expiry:
// the client gets the same address back until another client needs the
// room, which keeps addresses stable across guest reboots.
type entry struct {
	key     key
	addr    netip.Addr
	expires time.Time
	bound   bool // granted by a REPLY since it was last advertised
}

func (e *entry) active(now time.Time) bool { return now.Before(e.expires) }

// table is the lease database. It is not safe for concurrent use; Server
// serialises access.
type table struct {
	prefix   netip.Prefix
	start    netip.Addr
	max      int
	reserved map[netip.Addr]bool
	byKey    map[key]*entry
	byAddr   map[netip.Addr]*entry
	declined *leases.Declined
}

func newTable(cfg Config) *table {
	t := &table{
		prefix:   cfg.Prefix,
		start:    cfg.RangeStart,
		max:      cfg.MaxLeases,
		reserved: make(map[netip.Addr]bool),
		byKey:    make(map[key]*entry),
		byAddr:   make(map[netip.Addr]*entry),
		declined: leases.NewDeclined(max(cfg.MaxLeases, 1)),
	}
	// Addresses the network itself uses are never leased, whether or not
	// the user listed them.
	for _, a := range append(cfg.DNS, cfg.Reserved...) {
		t.reserved[a] = true
	}
	return t
}

// dynamicOK reports whether a may be handed out: in the prefix, at or
// above RangeStart, not reserved and not recently declined.
func (t *table) dynamicOK(a netip.Addr, now time.Time) bool {
	if !a.Is6() || !t.prefix.Contains(a) || a.Less(t.start) || t.reserved[a] {
		return false
	}
	return !t.declined.Held(a, now)
}

// freeFor reports whether the IA k may take address a now.
func (t *table) freeFor(k key, a netip.Addr, now time.Time) bool {
	if !t.dynamicOK(a, now) {
		return false
	}
	e := t.byAddr[a]
	return e == nil || e.key == k
}

func (t *table) insert(e *entry) {
	t.byKey[e.key] = e
	t.byAddr[e.addr] = e
}

func (t *table) remove(e *entry) {
	delete(t.byKey, e.key)
	delete(t.byAddr, e.addr)
}

// reclaimOne drops the entry that expired first, making room for a new
// client. It reports whether there was one.
func (t *table) reclaimOne(now time.Time) bool {
	oldest, ok := leases.OldestExpired(t.byKey,
		func(e *entry) bool { return e.active(now) },
		func(e *entry) time.Time { return e.expires })
	if ok {
		t.remove(oldest)
	}
	return ok
}

// allocate creates an unbound entry for an IA the table does not know,
// preferring one of the addresses the client asked for. Expired entries
// are reclaimed only when the lease bound is reached.
func (t *table) allocate(k key, hints []netip.Addr, now time.Time) (*entry, bool) {
	if len(t.byKey) >= t.max && !t.reclaimOne(now) {
		return nil, false
	}
	addr, ok := netip.Addr{}, false
	for _, h := range hints {
		if t.freeFor(k, h, now) && t.byAddr[h] == nil {
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
	e := &entry{key: k, addr: addr, expires: now.Add(advertiseHold)}
	t.insert(e)
	return e, true
}

// scan finds the lowest free address from RangeStart up. Its cost is
// bounded by the number of taken, reserved and declined addresses, all of
// which are bounded, plus one.
func (t *table) scan(now time.Time) (netip.Addr, bool) {
	for a := t.start; a.IsValid() && t.prefix.Contains(a); a = a.Next() {
		if t.byAddr[a] == nil && t.dynamicOK(a, now) {
			return a, true
		}
	}
	return netip.Addr{}, false
}

// decline takes e's address out of the pool for a while. The declined set
// is bounded like the leases; when full, the oldest hold is dropped.
func (t *table) decline(e *entry, now time.Time) {
	t.remove(e)
	t.declined.Hold(e.addr, now.Add(declineHold))
}
