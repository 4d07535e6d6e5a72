package ra

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/slipway-net/slipway/services/internal/servicetest"
)

var (
	prefix    = netip.MustParsePrefix("fd00::/64")
	dns3      = netip.MustParseAddr("fd00::3")
	routerMAC = net.HardwareAddr{0x52, 0x55, 0x0a, 0x00, 0x02, 0x02}
	guestLL   = netip.MustParseAddr("fe80::5054:ff:fe12:3456")
	allRtrs   = netip.MustParseAddr("ff02::2")
	allNodes  = netip.MustParseAddr("ff02::1")
	t0        = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
)

// testConfig is what the lead's defaults look like.
func testConfig() Config {
	return Config{
		Prefix:    prefix,
		MTU:       65520,
		RDNSS:     []netip.Addr{dns3},
		DNSSL:     []string{"example.org"},
		RouterMAC: routerMAC,
		OtherFlag: true,
		Now:       func() time.Time { return t0 },
	}
}

// seq returns a Rand that yields vals in turn, then repeats the last.
func seq(vals ...float64) func() float64 {
	return func() float64 {
		v := vals[0]
		if len(vals) > 1 {
			vals = vals[1:]
		}
		return v
	}
}

func newAdvertiser(t *testing.T, mutate func(*Config)) *Advertiser {
	t.Helper()
	return servicetest.Build(t, testConfig(), mutate, New)
}

// solicitation builds a Router Solicitation from src to dst with the given
// options (already laid out), checksum set, as a guest would send it.
func solicitation(src, dst netip.Addr, opts ...[]byte) []byte {
	b := []byte{TypeRouterSolicitation, 0, 0, 0, 0, 0, 0, 0}
	for _, o := range opts {
		b = append(b, o...)
	}
	binary.BigEndian.PutUint16(b[2:], Checksum(src, dst, b))
	return b
}

func sllaOpt(mac net.HardwareAddr) []byte {
	return append([]byte{OptSourceLinkAddr, 1}, mac...)
}
