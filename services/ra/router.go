package ra

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/slipway-net/slipway/internal/frame"
	"github.com/slipway-net/slipway/link"
)

// allNodesAddr is where router advertisements go (ff02::1) and its MAC.
var (
	allNodesAddr = netip.MustParseAddr("ff02::1")
	allNodesMAC  = [6]byte{0x33, 0x33, 0, 0, 0, 1}
)

// Router is the advertiser on a link: it sends the router advertisement as
// a complete frame when due, soon after a router solicitation, and soon
// after a guest link comes up, and it takes the router messages guests
// send. Its frames leave through send, each a buffer laid out as link's
// frames are (link.VnetHdrLen bytes of zeroed virtio-net header, then the
// Ethernet frame); send may keep nothing of it after returning.
type Router struct {
	adv  *Advertiser
	src  netip.Addr // the router's link-local address
	mac  [6]byte
	send func(buf []byte)
	wake chan time.Time // an earlier time the loop should send at
	once sync.Once      // the loop starts with the first guest link
	done chan struct{}
	wg   sync.WaitGroup

	stats RouterStats
}

// RouterStats count the router messages guests sent.
type RouterStats struct {
	// Solicitations: valid router solicitations (each answered).
	Solicitations atomic.Uint64 `counter:"solicitations"`
	// BadSolicitations: malformed ones (dropped).
	BadSolicitations atomic.Uint64 `counter:"bad_solicitations"`
}

// NewRouter makes the router of adv, whose advertisements it sends from
// the router MAC of adv's config through send. Close stops it.
func NewRouter(adv *Advertiser, send func(buf []byte)) *Router {
	var mac [6]byte
	copy(mac[:], adv.cfg.RouterMAC)
	return &Router{adv: adv, src: LinkLocal(mac[:]), mac: mac, send: send,
		wake: make(chan time.Time, 1), done: make(chan struct{})}
}

// Stats are the router's counters.
func (r *Router) Stats() *RouterStats { return &r.stats }

// LinkUp starts the loop on the first guest link (an advertisement into an
// empty network would only delay the first useful one, by the rate limit)
// and asks for a prompt advertisement on later ones.
func (r *Router) LinkUp() {
	started := false
	r.once.Do(func() {
		started = true
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			r.run()
		}()
	})
	if !started {
		r.solicit()
	}
}

// Close stops the loop and waits for it.
func (r *Router) Close() {
	r.once.Do(func() {}) // no loop from now on
	select {
	case <-r.done:
	default:
		close(r.done)
	}
	r.wg.Wait()
}

// run sends advertisements until Close.
func (r *Router) run() {
	t := time.NewTimer(time.Until(r.adv.Due()))
	defer t.Stop()
	for {
		select {
		case <-r.done:
			return
		case at := <-r.wake:
			t.Reset(time.Until(at))
		case <-t.C:
			r.advertise()
			t.Reset(time.Until(r.adv.Sent(time.Now())))
		}
	}
}

// solicit asks for an advertisement soon (rate limited by the advertiser).
func (r *Router) solicit() {
	if at, moved := r.adv.Solicited(time.Now()); moved {
		select {
		case r.wake <- at:
		default:
		}
	}
}

// advertise builds the advertisement frame and sends it to all nodes.
func (r *Router) advertise() {
	msg := r.adv.Message()
	frame.SetICMPChecksum(msg, r.src, allNodesAddr)
	buf := make([]byte, link.VnetHdrLen+link.EthHdrLen+header.IPv6MinimumSize+len(msg))
	ip := frame.PutEth(buf[link.VnetHdrLen:], allNodesMAC, r.mac, header.IPv6ProtocolNumber)
	// Hop limit 255: guests ignore router messages that crossed a router.
	copy(frame.PutIPv6(ip, header.ICMPv6ProtocolNumber, 255, r.src, allNodesAddr, len(msg)), msg)
	r.send(buf)
}

// Take handles an ICMPv6 message a guest sent (msg, from src to dst with
// hop limit hopLimit) and reports whether it was a router message, which
// is the router's: a solicitation is answered, advertisements and
// redirects (which the switch's RA guard already keeps from other guests)
// are dropped without effect. Anything else is not the router's.
func (r *Router) Take(src, dst netip.Addr, hopLimit uint8, msg []byte) bool {
	if len(msg) == 0 {
		return false
	}
	switch header.ICMPv6Type(msg[0]) {
	case header.ICMPv6RouterSolicit:
		if _, err := ParseSolicitation(src, dst, hopLimit, msg); err != nil {
			r.stats.BadSolicitations.Add(1)
			return true
		}
		r.stats.Solicitations.Add(1)
		r.solicit()
		return true
	case header.ICMPv6RouterAdvert, header.ICMPv6RedirectMsg:
		// slipway's network has no router but slipway: never acted on.
		// (Behind slipway's switch none arrives: its RA guard drops a
		// guest's and counts it on the guest's link.)
		return true
	}
	return false
}
