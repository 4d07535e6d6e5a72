// Package ra is slipway's IPv6 router advertiser (RFC 4861 section 6.2,
// DNS options from RFC 8106). It builds the Router Advertisement that tells
// a guest its prefix (for SLAAC), default router, MTU and DNS servers and
// search list, decides when to send it, and validates the Router
// Solicitations guests send. It does no I/O: the caller owns the link and
// the timer.
//
// Sending. Message returns the ICMPv6 message (type 134 onwards) with a
// zero checksum. The caller sends it from the router's link-local address
// (LinkLocal(RouterMAC)) to the all-nodes group ff02::1 with IPv6 hop limit
// 255, which guests require (RFC 4861 section 6.1.2), after storing
// Checksum(src, dst, msg) big-endian at msg[2:4], unless its sending path
// (a raw ICMPv6 socket, say) fills in the checksum itself.
//
// Scheduling. One timer drives everything:
//
//	at := adv.Due()               // right after New: send at once
//	when the timer fires at now:  send; at = adv.Sent(now)
//	when a packet rs arrives:     if _, err := ParseSolicitation(src, dst, hopLimit, rs); err == nil {
//	                                  if t, moved := adv.Solicited(now); moved { at = t }
//	                              }
//
// Every advertisement goes to all nodes, answers included: RFC 4861 allows
// a unicast answer but a multicast one also reaches guests that have not
// asked yet, and one rate limit then covers everything.
package ra

import (
	"fmt"
	"slices"
	"sync"
	"time"
)

const (
	// RFC 4861 section 10, router constants.
	maxInitialAdvertisements = 3
	maxInitialInterval       = 16 * time.Second
	minDelayBetweenRAs       = 3 * time.Second
	maxRADelay               = 500 * time.Millisecond
)

// Advertiser builds the advertisement and keeps its schedule. It is safe
// for concurrent use.
type Advertiser struct {
	cfg Config
	msg []byte // encoded once: the configuration does not change

	mu       sync.Mutex
	sent     int       // advertisements sent, for the fast initial ones
	lastSent time.Time // zero before the first
	due      time.Time
}

// New validates cfg and returns an advertiser whose first advertisement is
// due at once.
func New(cfg Config) (*Advertiser, error) {
	cfg, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	a := &Advertiser{cfg: cfg, msg: buildMessage(cfg)}
	if len(a.msg) > maxMessage {
		return nil, fmt.Errorf("ra: the advertisement would be %d bytes, more than the %d that fit a minimum-MTU packet: give fewer RDNSS servers or DNSSL names", len(a.msg), maxMessage)
	}
	a.due = cfg.Now()
	return a, nil
}

// Message returns a fresh copy of the advertisement, from the ICMPv6 type
// byte on, with a zero checksum (see the package documentation). The
// caller may write into it.
func (a *Advertiser) Message() []byte { return slices.Clone(a.msg) }

// Due returns when the next advertisement is to be sent.
func (a *Advertiser) Due() time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.due
}

// Sent records that an advertisement went out at now, solicited or not,
// and returns when the next unsolicited one is due: after a random
// interval in [MinInterval, MaxInterval], but at most 16 s after each of
// the first two, so a guest starting with slipway hears three quickly
// (RFC 4861 section 6.2.4).
func (a *Advertiser) Sent(now time.Time) time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.sent++
	a.lastSent = now
	lo, hi := a.cfg.MinInterval, a.cfg.MaxInterval
	d := lo + time.Duration(a.cfg.Rand()*float64(hi-lo))
	if a.sent < maxInitialAdvertisements {
		d = min(d, maxInitialInterval)
	}
	a.due = now.Add(d)
	return a.due
}

// Solicited records a valid Router Solicitation received at now and
// returns when the advertisement that answers it goes out: after a random
// delay of up to 0.5 s (RFC 4861 section 6.2.6, which keeps routers from
// answering in step), and no sooner than 3 s after the previous
// advertisement, the rate limit for multicast advertisements. moved
// reports whether that is earlier than the advertisement already due, in
// which case the caller resets its timer to sendAt; otherwise the one
// already due answers the solicitation and sendAt is its time.
func (a *Advertiser) Solicited(now time.Time) (sendAt time.Time, moved bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	at := now.Add(time.Duration(a.cfg.Rand() * float64(maxRADelay)))
	if !a.lastSent.IsZero() {
		if earliest := a.lastSent.Add(minDelayBetweenRAs); at.Before(earliest) {
			at = earliest
		}
	}
	if !at.Before(a.due) {
		return a.due, false
	}
	a.due = at
	return at, true
}
