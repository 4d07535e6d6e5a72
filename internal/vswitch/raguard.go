package vswitch

import "encoding/binary"

// IPv6 next-header values walked by isRouterMessage.
const (
	nhHopByHop = 0
	nhRouting  = 43
	nhFragment = 44
	nhDestOpts = 60
	nhICMPv6   = 58
)

// isRouterMessage reports whether an Ethernet frame carries an ICMPv6
// router advertisement (134) or redirect (137): messages only slipway, the
// router, may send. Guests' copies are dropped at the switch (RA guard, RFC
// 6105), so one guest cannot become another's router. Extension headers are
// walked so they cannot hide the message (RFC 7113); a non-first fragment
// carries no ICMPv6 header and passes.
func isRouterMessage(eth []byte) bool {
	if len(eth) < 14+40+4 || binary.BigEndian.Uint16(eth[12:]) != 0x86dd {
		return false
	}
	ip := eth[14:]
	next := ip[6]
	off := 40
	for hops := 0; hops < 8; hops++ {
		switch next {
		case nhICMPv6:
			if off+1 > len(ip) {
				return false
			}
			t := ip[off]
			return t == 134 || t == 137
		case nhHopByHop, nhRouting, nhDestOpts:
			if off+2 > len(ip) {
				return false
			}
			next = ip[off]
			off += (int(ip[off+1]) + 1) * 8
		case nhFragment:
			if off+8 > len(ip) {
				return false
			}
			if binary.BigEndian.Uint16(ip[off+2:])&0xfff8 != 0 {
				return false
			}
			next = ip[off]
			off += 8
		default:
			return false
		}
	}
	// An absurd chain of extension headers: treat it as hostile.
	return true
}
