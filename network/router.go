package network

import (
	"encoding/binary"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/slipway-net/slipway/link"
	"github.com/slipway-net/slipway/services/ra"
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
	binary.BigEndian.PutUint16(msg[2:], ra.Checksum(r.src, allNodes, msg))
	buf := make([]byte, link.VnetHdrLen+link.EthHdrLen+40+len(msg))
	// Hop limit 255: guests ignore router messages that crossed a router.
	copy(link.PutEthIPv6(buf[link.VnetHdrLen:], allNodesMAC, r.mac, 58, 255, r.src, allNodes, len(msg)), msg)
	r.inject([]link.Frame{link.Contiguous(buf)})
}

// intercept takes the router messages in a guest frame: solicitations
// are answered, advertisements and redirects (which the switch's RA guard
// already keeps from other guests) are dropped without effect. Everything
// else goes on.
func (r *router) intercept(frame []byte) bool {
	if len(frame) < link.EthHdrLen+40+4 || binary.BigEndian.Uint16(frame[12:]) != 0x86dd {
		return false
	}
	ip := frame[link.EthHdrLen:]
	if ip[6] != 58 {
		return false
	}
	total := 40 + int(binary.BigEndian.Uint16(ip[4:]))
	if total > len(ip) {
		return false
	}
	icmp := ip[40:total]
	switch icmp[0] {
	case ra.TypeRouterSolicitation:
		src := netip.AddrFrom16([16]byte(ip[8:24]))
		dst := netip.AddrFrom16([16]byte(ip[24:40]))
		if _, err := ra.ParseSolicitation(src, dst, ip[7], icmp); err != nil {
			r.BadSolicitations.Add(1)
			return true
		}
		r.Solicitations.Add(1)
		r.solicit()
		return true
	case ra.TypeRouterAdvertisement, 137:
		r.Spoofed.Add(1)
		return true
	}
	return false
}
