package ra

import (
	"encoding/binary"
	"net"
	"net/netip"
	"strings"
	"time"
)

// Reasons a message is rejected, as ParseError.Reason; stable, so callers
// can count drops by them.
const (
	ReasonShort     = "short"
	ReasonHopLimit  = "bad-hop-limit"
	ReasonType      = "bad-type"
	ReasonCode      = "bad-code"
	ReasonChecksum  = "bad-checksum"
	ReasonOptions   = "bad-options"
	ReasonSourceLLA = "source-lla-from-unspecified"
)

// ParseError says why guest NDP input was rejected.
type ParseError struct {
	Reason string // one of the Reason constants
}

func (e *ParseError) Error() string { return "ra: invalid NDP message: " + e.Reason }

func parseErr(reason string) error { return &ParseError{Reason: reason} }

// Option is one NDP option (RFC 4861 section 4.6).
type Option struct {
	Type uint8
	// Data is what follows the type and length bytes: 8 × length − 2
	// bytes, padding included. It aliases the parsed buffer.
	Data []byte
}

// ParseOptions splits the options area of an NDP message (what follows its
// fixed part). It rejects a zero length, which RFC 4861 section 4.6 makes
// invalid (and which would loop forever), and an option running past the
// end. Unknown types are returned like the others: receivers skip them.
func ParseOptions(b []byte) ([]Option, error) {
	var opts []Option
	for len(b) > 0 {
		if len(b) < 2 {
			return nil, parseErr(ReasonOptions)
		}
		n := int(b[1]) * 8
		if n == 0 || n > len(b) {
			return nil, parseErr(ReasonOptions)
		}
		opts = append(opts, Option{Type: b[0], Data: b[2:n:n]})
		b = b[n:]
	}
	return opts, nil
}

// Solicitation is a validated Router Solicitation.
type Solicitation struct {
	// SourceLinkAddr is the guest's link-layer address from its source
	// link-layer address option, or nil when it sent none.
	SourceLinkAddr net.HardwareAddr
}

const solicitationLen = 8 // type, code, checksum, reserved

// checkHeader checks what every NDP message this package parses starts
// with: at least minLen bytes, type typ, code 0 (RFC 4861 section 6.1).
func checkHeader(icmp []byte, minLen int, typ byte) error {
	switch {
	case len(icmp) < minLen:
		return parseErr(ReasonShort)
	case icmp[0] != typ:
		return parseErr(ReasonType)
	case icmp[1] != 0:
		return parseErr(ReasonCode)
	}
	return nil
}

// ParseSolicitation validates a Router Solicitation as RFC 4861 section
// 6.1.1 asks: icmp is the ICMPv6 message from its type byte on, src and dst
// the addresses and hopLimit the hop limit of the IPv6 header it came in.
// It checks the hop limit (255, so it came from this link), type, code,
// checksum, option lengths, and that a solicitation from the unspecified
// address carries no source link-layer address option.
func ParseSolicitation(src, dst netip.Addr, hopLimit uint8, icmp []byte) (Solicitation, error) {
	if hopLimit != 255 {
		return Solicitation{}, parseErr(ReasonHopLimit)
	}
	if err := checkHeader(icmp, solicitationLen, TypeRouterSolicitation); err != nil {
		return Solicitation{}, err
	}
	if Checksum(src, dst, icmp) != binary.BigEndian.Uint16(icmp[checksumOffset:]) {
		return Solicitation{}, parseErr(ReasonChecksum)
	}
	opts, err := ParseOptions(icmp[solicitationLen:])
	if err != nil {
		return Solicitation{}, err
	}
	var s Solicitation
	for _, o := range opts {
		if o.Type != OptSourceLinkAddr {
			continue
		}
		if src.IsUnspecified() {
			return Solicitation{}, parseErr(ReasonSourceLLA)
		}
		// On Ethernet the data is exactly the 6-byte MAC address.
		s.SourceLinkAddr = net.HardwareAddr(append([]byte(nil), o.Data...))
	}
	return s, nil
}

// Advertisement is a decoded Router Advertisement, for tests and for
// checking what reached a guest.
type Advertisement struct {
	CurHopLimit    uint8
	Managed, Other bool
	RouterLifetime time.Duration
	ReachableTime  time.Duration
	RetransTimer   time.Duration
	SourceLinkAddr net.HardwareAddr // nil if absent
	MTU            int              // 0 if absent
	Prefixes       []PrefixInfo
	// RDNSS and DNSSL gather the addresses and names of all RDNSS and
	// DNSSL options; their lifetimes are those of the last option of each.
	RDNSS         []netip.Addr
	RDNSSLifetime time.Duration
	DNSSL         []string
	DNSSLLifetime time.Duration
}

// PrefixInfo is one prefix information option.
type PrefixInfo struct {
	Prefix            netip.Prefix
	OnLink            bool
	Autonomous        bool
	ValidLifetime     time.Duration
	PreferredLifetime time.Duration
}

// ParseAdvertisement decodes a Router Advertisement (the ICMPv6 message
// from its type byte on). It checks structure only: type, code, lengths of
// the message and of the options it knows. Checksum and hop limit are the
// caller's, as in ParseSolicitation.
func ParseAdvertisement(icmp []byte) (Advertisement, error) {
	if err := checkHeader(icmp, headerLen, TypeRouterAdvertisement); err != nil {
		return Advertisement{}, err
	}
	ra := Advertisement{
		CurHopLimit:    icmp[4],
		Managed:        icmp[5]&flagManaged != 0,
		Other:          icmp[5]&flagOther != 0,
		RouterLifetime: time.Duration(binary.BigEndian.Uint16(icmp[6:])) * time.Second,
		ReachableTime:  time.Duration(binary.BigEndian.Uint32(icmp[8:])) * time.Millisecond,
		RetransTimer:   time.Duration(binary.BigEndian.Uint32(icmp[12:])) * time.Millisecond,
	}
	opts, err := ParseOptions(icmp[headerLen:])
	if err != nil {
		return Advertisement{}, err
	}
	for _, o := range opts {
		d := o.Data
		switch o.Type {
		case OptSourceLinkAddr:
			ra.SourceLinkAddr = net.HardwareAddr(append([]byte(nil), d...))
		case OptMTU:
			if len(d) != 6 {
				return Advertisement{}, parseErr(ReasonOptions)
			}
			ra.MTU = int(binary.BigEndian.Uint32(d[2:]))
		case OptPrefixInfo:
			if len(d) != 30 || d[0] > 128 {
				return Advertisement{}, parseErr(ReasonOptions)
			}
			ra.Prefixes = append(ra.Prefixes, PrefixInfo{
				Prefix:            netip.PrefixFrom(netip.AddrFrom16([16]byte(d[14:30])), int(d[0])),
				OnLink:            d[1]&prefixOnLink != 0,
				Autonomous:        d[1]&prefixAutonomous != 0,
				ValidLifetime:     time.Duration(binary.BigEndian.Uint32(d[2:])) * time.Second,
				PreferredLifetime: time.Duration(binary.BigEndian.Uint32(d[6:])) * time.Second,
			})
		case OptRDNSS:
			// RFC 8106 section 5.1: length 3 or more, odd.
			if len(d) < 6+16 || (len(d)-6)%16 != 0 {
				return Advertisement{}, parseErr(ReasonOptions)
			}
			ra.RDNSSLifetime = time.Duration(binary.BigEndian.Uint32(d[2:])) * time.Second
			for a := d[6:]; len(a) > 0; a = a[16:] {
				ra.RDNSS = append(ra.RDNSS, netip.AddrFrom16([16]byte(a[:16])))
			}
		case OptDNSSL:
			if len(d) < 6+8 {
				return Advertisement{}, parseErr(ReasonOptions)
			}
			names, ok := decodeNames(d[6:])
			if !ok {
				return Advertisement{}, parseErr(ReasonOptions)
			}
			ra.DNSSLLifetime = time.Duration(binary.BigEndian.Uint32(d[2:])) * time.Second
			ra.DNSSL = append(ra.DNSSL, names...)
		}
	}
	return ra, nil
}

// decodeNames reads uncompressed DNS names until the end of b, which may
// be padded with zero bytes (RFC 8106 section 5.2).
func decodeNames(b []byte) ([]string, bool) {
	var names []string
	for len(b) > 0 {
		if b[0] == 0 {
			// Padding: only zeros may follow.
			for _, c := range b {
				if c != 0 {
					return nil, false
				}
			}
			break
		}
		var labels []string
		for {
			if len(b) == 0 {
				return nil, false
			}
			n := int(b[0])
			b = b[1:]
			if n == 0 {
				break
			}
			if n > 63 || n > len(b) {
				return nil, false
			}
			labels = append(labels, string(b[:n]))
			b = b[n:]
		}
		names = append(names, strings.Join(labels, "."))
	}
	return names, true
}
