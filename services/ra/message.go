package ra

import (
	"encoding/binary"
	"net"
	"net/netip"
	"time"

	"github.com/slipway-net/slipway/internal/frame"
	"github.com/slipway-net/slipway/services/internal/dnsname"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// ICMPv6 message types (RFC 4861 section 4), as bytes of a message.
const (
	TypeRouterSolicitation  = byte(header.ICMPv6RouterSolicit)
	TypeRouterAdvertisement = byte(header.ICMPv6RouterAdvert)
)

// NDP option types (RFC 4861 section 4.6, RFC 8106 section 5).
const (
	OptSourceLinkAddr = 1
	OptTargetLinkAddr = 2
	OptPrefixInfo     = 3
	OptRedirected     = 4
	OptMTU            = 5
	OptRDNSS          = 25
	OptDNSSL          = 31
)

const (
	// headerLen is the fixed part of an RA: type, code, checksum, hop
	// limit, flags, router lifetime, reachable time, retrans timer.
	headerLen = 16
	// checksumOffset is where the ICMPv6 checksum sits in every message.
	checksumOffset = 2

	flagManaged = 0x80
	flagOther   = 0x40

	prefixOnLink     = 0x80
	prefixAutonomous = 0x40

	// curHopLimit is the hop limit advertised to guests: IANA's default,
	// as RFC 4861 section 6.2.1 recommends.
	curHopLimit = 64

	// The prefix lifetimes are libslirp's (QEMU user networking's): a day
	// valid, four hours preferred. Shorter than RFC 4861's defaults, so a
	// guest that outlives its slipway stops using the address in hours,
	// not weeks.
	prefixValidLifetime     = 24 * time.Hour
	prefixPreferredLifetime = 4 * time.Hour
)

// buildMessage encodes the advertisement for cfg (already validated), with
// a zero checksum.
func buildMessage(cfg Config) []byte {
	b := make([]byte, headerLen, 128)
	b[0] = TypeRouterAdvertisement
	b[4] = curHopLimit
	if cfg.ManagedFlag {
		b[5] |= flagManaged
	}
	if cfg.OtherFlag {
		b[5] |= flagOther
	}
	binary.BigEndian.PutUint16(b[6:], uint16(cfg.RouterLifetime/time.Second))
	// Reachable time and retrans timer stay 0, "unspecified": the guest's
	// own defaults suit a virtual link.

	if cfg.RouterMAC != nil {
		b = append(b, OptSourceLinkAddr, 1)
		b = append(b, cfg.RouterMAC...)
	}
	if cfg.MTU != 0 {
		b = append(b, OptMTU, 1, 0, 0)
		b = binary.BigEndian.AppendUint32(b, uint32(cfg.MTU))
	}

	// Prefix information, RFC 4861 section 4.6.2.
	b = append(b, OptPrefixInfo, 4, byte(cfg.Prefix.Bits()), prefixOnLink|prefixAutonomous)
	b = binary.BigEndian.AppendUint32(b, seconds(prefixValidLifetime))
	b = binary.BigEndian.AppendUint32(b, seconds(prefixPreferredLifetime))
	b = append(b, 0, 0, 0, 0)
	p := cfg.Prefix.Addr().As16()
	b = append(b, p[:]...)

	// RFC 8106 section 5.1 asks for a lifetime of at least three times
	// MaxRtrAdvInterval, so a guest keeps its DNS servers across two
	// missed advertisements.
	dnsLifetime := seconds(3 * cfg.MaxInterval)
	if len(cfg.RDNSS) > 0 {
		b = append(b, OptRDNSS, byte(1+2*len(cfg.RDNSS)), 0, 0)
		b = binary.BigEndian.AppendUint32(b, dnsLifetime)
		for _, a := range cfg.RDNSS {
			v := a.As16()
			b = append(b, v[:]...)
		}
	}
	if len(cfg.DNSSL) > 0 {
		names := dnsname.Encode(cfg.DNSSL)
		pad := (8 - (8+len(names))%8) % 8
		b = append(b, OptDNSSL, byte((8+len(names)+pad)/8), 0, 0)
		b = binary.BigEndian.AppendUint32(b, dnsLifetime)
		b = append(b, names...)
		b = append(b, make([]byte, pad)...)
	}
	return b
}

// seconds is a duration as a 32-bit seconds count; all durations here are
// validated far below the 0xffffffff that means "infinity".
func seconds(d time.Duration) uint32 { return uint32(d / time.Second) }

// Checksum returns the ICMPv6 checksum (RFC 4443 section 2.3) of msg sent
// from src to dst: the one's complement sum over the IPv6 pseudo-header
// and msg, with msg's own checksum field counted as zero. To send, store it
// big-endian at msg[2:4]; to verify a received message, compare it with
// what msg[2:4] holds. It returns 0 for a msg too short to have the field.
func Checksum(src, dst netip.Addr, msg []byte) uint16 {
	if len(msg) < checksumOffset+2 {
		return 0
	}
	// The sum over msg as it is, less what its checksum field holds.
	sum := frame.ICMPSum(msg, src, dst)
	return ^checksum.Combine(sum, ^binary.BigEndian.Uint16(msg[checksumOffset:]))
}

// LinkLocal returns the link-local address that goes with an Ethernet MAC
// address (the modified EUI-64 of RFC 4291 appendix A), the address a
// router sends its advertisements from: guests ignore advertisements from
// anything but a link-local source (RFC 4861 section 6.1.2). The result is
// invalid if mac is not 6 bytes long.
func LinkLocal(mac net.HardwareAddr) netip.Addr {
	if len(mac) != 6 {
		return netip.Addr{}
	}
	var a [16]byte
	a[0], a[1] = 0xfe, 0x80
	a[8] = mac[0] ^ 0x02
	a[9], a[10] = mac[1], mac[2]
	a[11], a[12] = 0xff, 0xfe
	a[13], a[14], a[15] = mac[3], mac[4], mac[5]
	return netip.AddrFrom16(a)
}
