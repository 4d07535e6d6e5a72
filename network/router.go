package network

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/slipway-net/slipway/internal/frame"
	"github.com/slipway-net/slipway/link"
	"github.com/slipway-net/slipway/services/ra"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// allNodes is where router advertisements go (ff02::1) and its MAC.
var (
	allNodes    = netip.MustParseAddr("ff02::1")
	allNodesMAC = [6]byte{0x33, 0x33, 0, 0, 0, 1}
)

// router sends slipway's IPv6 router advertisements: when due, soon after
// a router solicitation, and soon after a guest link comes up.
type router struct {
	adv    *ra.Advertiser
	src    netip.Addr // the router's link-local address
	mac    [6]byte
	inject func([]link.Frame)
	wake   chan time.Time // an earlier time the loop should send at
	start  sync.Once      // the loop starts with the first guest link
	// Solicitations counts valid router solicitations; Spoofed counts
	// router advertisements and redirects that guests sent (never acted
	// on); BadSolicitations counts malformed ones.
	Solicitations, Spoofed, BadSolicitations atomic.Uint64
}

func newRouter(adv *ra.Advertiser, mac [6]byte, inject func([]link.Frame)) *router {
	return &router{adv: adv, src: ra.LinkLocal(mac[:]), mac: mac, inject: inject, wake: make(chan time.Time, 1)}
}

// linkUp starts the loop on the first guest link (an advertisement into an
// empty network would only delay the first useful one, by the rate limit)
// and asks for a prompt advertisement on later ones.
func (r *router) linkUp(done <-chan struct{}, wg *sync.WaitGroup) {
	started := false
	r.start.Do(func() {
		started = true
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.run(done)
		}()
	})
	if !started {
		r.solicit()
	}
}

// run sends advertisements until done closes.
func (r *router) run(done <-chan struct{}) {
	t := time.NewTimer(time.Until(r.adv.Due()))
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case at := <-r.wake:
			if !t.Stop() {
				select {
				case <-t.C:
				default:
				}
			}
			t.Reset(time.Until(at))
		case <-t.C:
			r.send()
			t.Reset(time.Until(r.adv.Sent(time.Now())))
		}
	}
}

// solicit asks for an advertisement soon (rate limited by the advertiser).
func (r *router) solicit() {
	if at, moved := r.adv.Solicited(time.Now()); moved {
		select {
		case r.wake <- at:
		default:
		}
	}
}

// send builds the advertisement frame and floods it to the guests.
func (r *router) send() {
	msg := r.adv.Message()
	frame.SetICMPChecksum(msg, r.src, allNodes)
	buf := make([]byte, link.VnetHdrLen+link.EthHdrLen+header.IPv6MinimumSize+len(msg))
	ip := frame.PutEth(buf[link.VnetHdrLen:], allNodesMAC, r.mac, header.IPv6ProtocolNumber)
	// Hop limit 255: guests ignore router messages that crossed a router.
	copy(frame.PutIPv6(ip, header.ICMPv6ProtocolNumber, 255, r.src, allNodes, len(msg)), msg)
	r.inject([]link.Frame{link.Contiguous(buf)})
}

// intercept takes the router messages in a guest frame: solicitations
// are answered, advertisements and redirects (which the switch's RA guard
// already keeps from other guests) are dropped without effect. Everything
// else goes on. It is one of the stack's interceptors.
func (r *router) intercept(v *frame.View) bool {
	t, ok := v.ICMPType()
	if !ok || v.EtherType != header.IPv6ProtocolNumber {
		return false
	}
	switch header.ICMPv6Type(t) {
	case header.ICMPv6RouterSolicit:
		hopLimit := header.IPv6(v.L3).HopLimit()
		if _, err := ra.ParseSolicitation(v.Src, v.Dst, hopLimit, v.L4()); err != nil {
			r.BadSolicitations.Add(1)
			return true
		}
		r.Solicitations.Add(1)
		r.solicit()
		return true
	case header.ICMPv6RouterAdvert, header.ICMPv6RedirectMsg:
		r.Spoofed.Add(1)
		return true
	}
	return false
}
