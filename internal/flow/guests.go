package flow

import (
	"net/netip"
	"time"

	"github.com/slipway-net/slipway/config"
)

// maxIdleGuests bounds the per-guest records kept for addresses with no
// flow left; a guest that forged many source addresses costs at most this
// many records beyond its live flows.
const maxIdleGuests = 4096

// guestLimits are the per-guest bounds of a table. A guest is a source
// address: the switch binds addresses to the guests' ports, and the stack
// sees nothing else of who sent a frame.
type guestLimits struct {
	maxUDP    int     // UDP flows open at once
	perSecond float64 // new flows, refilled continuously
	burst     float64 // tokens a quiet guest has saved up
	now       func() time.Time

	guests map[netip.Addr]*guest
	idle   int // guests with no flow
}

// guest is one guest address's use of the table.
type guest struct {
	flows, udp int
	tokens     float64
	refilled   time.Time
}

func newGuestLimits(maxUDP, perSecond int, now func() time.Time) guestLimits {
	return guestLimits{
		maxUDP: maxUDP, perSecond: float64(perSecond), burst: float64(perSecond),
		now: now, guests: make(map[netip.Addr]*guest),
	}
}

// admit decides whether the guest may open a flow of proto now, taking a
// token and counting the flow when it may. The caller holds the table's
// lock.
func (l *guestLimits) admit(addr netip.Addr, proto config.Proto) error {
	now := l.now()
	g := l.guests[addr]
	if g == nil {
		if l.idle >= maxIdleGuests {
			l.sweep(now)
		}
		g = &guest{tokens: l.burst, refilled: now}
		l.guests[addr] = g
		l.idle++
	}
	g.refill(now, l.perSecond, l.burst)
	if proto == config.UDP && g.udp >= l.maxUDP {
		return ErrGuestUDPLimit
	}
	if g.tokens < 1 {
		return ErrRate
	}
	g.tokens--
	if g.flows == 0 {
		l.idle--
	}
	g.flows++
	if proto == config.UDP {
		g.udp++
	}
	return nil
}

// release forgets a flow admit counted.
func (l *guestLimits) release(addr netip.Addr, proto config.Proto) {
	g := l.guests[addr]
	if g == nil {
		return
	}
	g.flows--
	if proto == config.UDP {
		g.udp--
	}
	if g.flows == 0 {
		l.idle++
	}
}

func (g *guest) refill(now time.Time, perSecond, burst float64) {
	if d := now.Sub(g.refilled); d > 0 {
		g.tokens = min(burst, g.tokens+d.Seconds()*perSecond)
		g.refilled = now
	}
}

// sweep drops the records of guests with no flow: first those whose
// tokens are back to a full burst (forgetting them changes nothing), and
// if that was not enough, every idle one (a guest forging addresses gets
// a fresh burst per address, but no more than its live flows allow).
func (l *guestLimits) sweep(now time.Time) {
	for addr, g := range l.guests {
		if g.flows == 0 {
			g.refill(now, l.perSecond, l.burst)
			if g.tokens >= l.burst {
				delete(l.guests, addr)
				l.idle--
			}
		}
	}
	if l.idle < maxIdleGuests/2 {
		return
	}
	for addr, g := range l.guests {
		if g.flows == 0 {
			delete(l.guests, addr)
			l.idle--
		}
	}
}
