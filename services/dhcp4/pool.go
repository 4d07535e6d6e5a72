package dhcp4

import (
	"github.com/slipway-net/slipway/services/internal/leases"
	"net/netip"
	"time"
)

const (
	// offerHold is how long an offered address stays set aside for the
	// client while it decides (RFC 2131 section 4.3.1 asks for a while).
	offerHold = time.Minute
	// declineHold is how long an address a client declined (someone else
	// answered ARP for it) is kept out of the pool.
	declineHold = 10 * time.Minute
)

// entry binds one client (by chaddr) to one address. An entry outlives its
// expiry: the client gets the same address back until another client needs
// the room, which is what keeps addresses stable across guest reboots.
type entry struct {
	mac      string
	addr     netip.Addr
	hostname string
	expires  time.Time
	bound    bool // acknowledged at least once since the last offer
	static   bool
}

func (e *entry) active(now time.Time) bool { return e.static || now.Before(e.expires) }

// table is the lease database. It is not safe for concurrent use; Server
// serialises access.
type table struct {
	plan     plan
	start    uint32
	max      int
	reserved map[netip.Addr]bool
	byMAC    map[string]*entry
	byAddr   map[netip.Addr]*entry
	declined *leases.Declined
	dynamic  int // entries that count against max
}

func newTable(cfg Config) *table {
	t := &table{
		plan:     newPlan(cfg.Subnet),
		start:    addrToUint(cfg.RangeStart),
		max:      cfg.MaxLeases,
		reserved: make(map[netip.Addr]bool),
		byMAC:    make(map[string]*entry),
		byAddr:   make(map[netip.Addr]*entry),
		declined: leases.NewDeclined(max(cfg.MaxLeases, 1)),
	}
	// Addresses the network itself uses are never leased, whether or not
	// the user listed them.
	for _, a := range append([]netip.Addr{cfg.ServerIP, cfg.Router}, cfg.DNS...) {
		if a.IsValid() {
			t.reserved[a] = true
		}
	}
	for _, a := range cfg.Reserved {
		t.reserved[a] = true
	}
	return t
}

// dynamicOK reports whether a may be handed out dynamically: a host
// address at or above RangeStart, not reserved and not recently declined.
func (t *table) dynamicOK(a netip.Addr, now time.Time) bool {
	if !t.plan.isHost(a) || addrToUint(a) < t.start || t.reserved[a] {
		return false
	}
	return !t.declined.Held(a, now)
}

// freeFor reports whether mac may take the dynamic address a now.
func (t *table) freeFor(mac string, a netip.Addr, now time.Time) bool {
	if !t.dynamicOK(a, now) {
		return false
	}
	e := t.byAddr[a]
	return e == nil || e.mac == mac
}

func (t *table) insert(e *entry) {
	t.byMAC[e.mac] = e
	t.byAddr[e.addr] = e
	if !e.static {
		t.dynamic++
	}
}

func (t *table) remove(e *entry) {
	delete(t.byMAC, e.mac)
	delete(t.byAddr, e.addr)
	if !e.static {
		t.dynamic--
	}
}

// reclaimOne drops the dynamic entry that expired first, making room for
// a new client. It reports whether there was one.
func (t *table) reclaimOne(now time.Time) bool {
	oldest, ok := leases.OldestExpired(t.byMAC,
		func(e *entry) bool { return e.active(now) },
		func(e *entry) time.Time { return e.expires })
	if ok {
		t.remove(oldest)
	}
	return ok
}

// allocate creates an offered entry for a client the table does not know,
// preferring the address it asked for. Expired entries are reclaimed only
// when the lease bound or the address space is reached.
func (t *table) allocate(mac string, hint netip.Addr, now time.Time) (*entry, bool) {
	if t.dynamic >= t.max && !t.reclaimOne(now) {
		return nil, false
	}
	addr, ok := netip.Addr{}, false
	if hint.Is4() && t.freeFor(mac, hint, now) {
		addr, ok = hint, true
	} else if addr, ok = t.scan(now); !ok && t.reclaimOne(now) {
		addr, ok = t.scan(now)
	}
	if !ok {
		return nil, false
	}
	e := &entry{mac: mac, addr: addr, expires: now.Add(offerHold)}
	t.insert(e)
	return e, true
}

// scan finds the lowest free address of the pool. Its cost is bounded by
// the number of taken, reserved and declined addresses, all of which are
// bounded, plus one.
func (t *table) scan(now time.Time) (netip.Addr, bool) {
	for u := t.start; u < t.plan.broadcast; u++ {
		a := uintToAddr(u)
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
