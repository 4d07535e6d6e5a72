package ra

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/slipway-net/slipway/services/internal/servicetest"
)

func TestNewRejectsBadConfig(t *testing.T) {
	many := make([]netip.Addr, 80)
	for i := range many {
		many[i] = netip.AddrFrom16([16]byte{0xfd, 15: byte(i + 1)})
	}
	reject := servicetest.ConfigRejecter(t, testConfig, New)
	reject("no prefix", "Prefix invalid", func(c *Config) { c.Prefix = netip.Prefix{} })
	reject("v4 prefix", "Prefix 10.0.2.0/24", func(c *Config) { c.Prefix = netip.MustParsePrefix("10.0.2.0/24") })
	reject("mapped prefix", "not an IPv6 prefix", func(c *Config) { c.Prefix = netip.MustParsePrefix("::ffff:10.0.2.0/120") })
	reject("not /64", "fd00::/48 is not a /64", func(c *Config) { c.Prefix = netip.MustParsePrefix("fd00::/48") })
	reject("link-local", "link-local", func(c *Config) { c.Prefix = netip.MustParsePrefix("fe80::/64") })
	reject("small mtu", "MTU 1000", func(c *Config) { c.MTU = 1000 })
	reject("huge mtu", "MTU 70000", func(c *Config) { c.MTU = 70000 })
	reject("v4 dns", "RDNSS server 10.0.2.3", func(c *Config) { c.RDNSS = []netip.Addr{netip.MustParseAddr("10.0.2.3")} })
	reject("multicast dns", "RDNSS server ff02::1", func(c *Config) { c.RDNSS = []netip.Addr{allNodes} })
	reject("bad name", `DNSSL: domain name "a..b"`, func(c *Config) { c.DNSSL = []string{"a..b"} })
	reject("bad mac", "RouterMAC", func(c *Config) { c.RouterMAC = net.HardwareAddr{1, 2, 3} })
	reject("max too small", "MaxInterval 3s", func(c *Config) { c.MaxInterval = 3 * time.Second })
	reject("max too large", "MaxInterval 1h0m0s", func(c *Config) { c.MaxInterval = time.Hour })
	reject("min too small", "MinInterval 1s", func(c *Config) { c.MinInterval = time.Second })
	reject("min above 3/4 max", "MinInterval 8m20s", func(c *Config) { c.MinInterval = 500 * time.Second })
	reject("lifetime below max", "RouterLifetime 1m0s", func(c *Config) { c.RouterLifetime = time.Minute })
	reject("lifetime too long", "RouterLifetime 3h0m0s", func(c *Config) { c.RouterLifetime = 3 * time.Hour })
	reject("too big", "1376 bytes", func(c *Config) { c.RDNSS = many })
}

// TestMessageBytes pins the wire encoding of every field and option,
// laid out as in RFC 4861 section 4.2 and 4.6 and RFC 8106 section 5.
func TestMessageBytes(t *testing.T) {
	a := newAdvertiser(t, nil)
	want := servicetest.Unhex(t, `
		86 00 0000  40 40 0708  00000000  00000000
		01 01 52550a000202
		05 01 0000 0000fff0
		03 04 40 c0 00015180 00003840 00000000 fd000000000000000000000000000000
		19 03 0000 00000708 fd000000000000000000000000000003
		1f 03 0000 00000708 07 6578616d706c65 03 6f7267 00 000000
	`)
	if got := a.Message(); !bytes.Equal(got, want) {
		t.Fatalf("message\n got % x\nwant % x", got, want)
	}

	// Nothing optional: no source link-layer address, MTU or DNS options,
	// and the M flag alone.
	a = newAdvertiser(t, func(c *Config) {
		c.MTU, c.RDNSS, c.DNSSL, c.RouterMAC = 0, nil, nil, nil
		c.ManagedFlag, c.OtherFlag = true, false
		c.MaxInterval = 10 * time.Second
	})
	want = servicetest.Unhex(t, `
		86 00 0000  40 80 001e  00000000  00000000
		03 04 40 c0 00015180 00003840 00000000 fd000000000000000000000000000000
	`)
	if got := a.Message(); !bytes.Equal(got, want) {
		t.Fatalf("minimal message\n got % x\nwant % x", got, want)
	}
}

func TestMessageIsACopy(t *testing.T) {
	a := newAdvertiser(t, nil)
	m := a.Message()
	m[2], m[3] = 0xff, 0xff
	if b := a.Message(); b[2] != 0 || b[3] != 0 {
		t.Fatalf("writing into one message changed the next: % x", b[:4])
	}
}

// TestDNSSLPadding checks that names of every length are padded to a
// multiple of 8 bytes and decode back, several names in one option.
func TestDNSSLPadding(t *testing.T) {
	for n := 1; n <= 9; n++ {
		names := []string{strings.Repeat("a", n) + ".example", "b.example.org"}
		a := newAdvertiser(t, func(c *Config) { c.DNSSL = names })
		msg := a.Message()
		if len(msg)%8 != 0 {
			t.Fatalf("names %q: message of %d bytes, not a multiple of 8", names, len(msg))
		}
		ad, err := ParseAdvertisement(msg)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(ad.DNSSL, names) {
			t.Fatalf("DNSSL decoded as %q, want %q", ad.DNSSL, names)
		}
	}
}

func TestParseAdvertisementRoundTrip(t *testing.T) {
	cfg := testConfig()
	cfg.ManagedFlag = true
	cfg.RDNSS = append(cfg.RDNSS, netip.MustParseAddr("2001:db8::53"))
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseAdvertisement(a.Message())
	if err != nil {
		t.Fatal(err)
	}
	want := Advertisement{
		CurHopLimit:    64,
		Managed:        true,
		Other:          true,
		RouterLifetime: 1800 * time.Second,
		SourceLinkAddr: routerMAC,
		MTU:            65520,
		Prefixes: []PrefixInfo{{
			Prefix: prefix, OnLink: true, Autonomous: true,
			ValidLifetime: 24 * time.Hour, PreferredLifetime: 4 * time.Hour,
		}},
		RDNSS:         cfg.RDNSS,
		RDNSSLifetime: 1800 * time.Second,
		DNSSL:         []string{"example.org"},
		DNSSLLifetime: 1800 * time.Second,
	}
	if !equalAdvertisement(got, want) {
		t.Fatalf("decoded\n %+v\nwant\n %+v", got, want)
	}
}

func equalAdvertisement(a, b Advertisement) bool {
	return a.CurHopLimit == b.CurHopLimit && a.Managed == b.Managed && a.Other == b.Other &&
		a.RouterLifetime == b.RouterLifetime && a.ReachableTime == b.ReachableTime &&
		a.RetransTimer == b.RetransTimer && bytes.Equal(a.SourceLinkAddr, b.SourceLinkAddr) &&
		a.MTU == b.MTU && slices.Equal(a.Prefixes, b.Prefixes) && slices.Equal(a.RDNSS, b.RDNSS) &&
		a.RDNSSLifetime == b.RDNSSLifetime && slices.Equal(a.DNSSL, b.DNSSL) && a.DNSSLLifetime == b.DNSSLLifetime
}

func TestChecksum(t *testing.T) {
	a := newAdvertiser(t, nil)
	src := LinkLocal(routerMAC)
	msg := a.Message()
	sum := Checksum(src, allNodes, msg)
	binary.BigEndian.PutUint16(msg[2:], sum)
	// The field itself does not count: the sum is the same once stored.
	if again := Checksum(src, allNodes, msg); again != sum {
		t.Fatalf("checksum %#04x once stored, %#04x before", again, sum)
	}
	// Any change to the addresses or the message changes it.
	if Checksum(src, allRtrs, msg) == sum {
		t.Fatal("checksum ignores the destination")
	}
	if Checksum(guestLL, allNodes, msg) == sum {
		t.Fatal("checksum ignores the source")
	}
	msg[len(msg)-1] ^= 1
	if Checksum(src, allNodes, msg) == sum {
		t.Fatal("checksum ignores the last byte")
	}
	if Checksum(src, allNodes, []byte{1, 2, 3}) != 0 {
		t.Fatal("a message too short for the field has checksum 0")
	}
}

// TestChecksumKnownVector checks against a Router Solicitation the Linux
// kernel sent (captured by TestKernelAutoconfiguration), checksum
// included: its sender computed it, not this package.
func TestChecksumKnownVector(t *testing.T) {
	src := netip.MustParseAddr("fe80::e482:62ff:fe3e:353e")
	msg := servicetest.Unhex(t, "85 00 832f 00000000 01 01 e682623e353e")
	if got := Checksum(src, allRtrs, msg); got != 0x832f {
		t.Fatalf("checksum %#04x, the kernel sent 0x832f", got)
	}
	s, err := ParseSolicitation(src, allRtrs, 255, msg)
	if err != nil {
		t.Fatal(err)
	}
	if s.SourceLinkAddr.String() != "e6:82:62:3e:35:3e" {
		t.Fatalf("source link-layer address %v", s.SourceLinkAddr)
	}
}

func TestLinkLocal(t *testing.T) {
	mac := net.HardwareAddr{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}
	if got := LinkLocal(mac); got != guestLL {
		t.Fatalf("LinkLocal(%v) = %v, want %v", mac, got, guestLL)
	}
	if got := LinkLocal(net.HardwareAddr{1, 2}); got.IsValid() {
		t.Fatalf("LinkLocal of a short address = %v", got)
	}
}

func TestParseSolicitation(t *testing.T) {
	unspec := netip.IPv6Unspecified()
	guestMAC := net.HardwareAddr{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}
	good := solicitation(guestLL, allRtrs, sllaOpt(guestMAC))

	s, err := ParseSolicitation(guestLL, allRtrs, 255, good)
	if err != nil || !bytes.Equal(s.SourceLinkAddr, guestMAC) {
		t.Fatalf("good solicitation: %+v, %v", s, err)
	}
	// The returned address must not alias the packet buffer.
	good[10] ^= 0xff
	if !bytes.Equal(s.SourceLinkAddr, guestMAC) {
		t.Fatal("SourceLinkAddr aliases the input")
	}
	s, err = ParseSolicitation(unspec, allRtrs, 255, solicitation(unspec, allRtrs))
	if err != nil || s.SourceLinkAddr != nil {
		t.Fatalf("solicitation from :: without options: %+v, %v", s, err)
	}
	// Unknown options are skipped.
	s, err = ParseSolicitation(guestLL, allRtrs, 255, solicitation(guestLL, allRtrs, []byte{200, 1, 0, 0, 0, 0, 0, 0}, sllaOpt(guestMAC)))
	if err != nil || !bytes.Equal(s.SourceLinkAddr, guestMAC) {
		t.Fatalf("with an unknown option: %+v, %v", s, err)
	}

	fixed := func(b []byte) []byte {
		binary.BigEndian.PutUint16(b[2:], Checksum(guestLL, allRtrs, b))
		return b
	}
	cases := []struct {
		name     string
		src      netip.Addr
		hopLimit uint8
		msg      []byte
		reason   string
	}{
		{"routed", guestLL, 64, solicitation(guestLL, allRtrs), ReasonHopLimit},
		{"short", guestLL, 255, []byte{133, 0, 0, 0, 0, 0, 0}, ReasonShort},
		{"empty", guestLL, 255, nil, ReasonShort},
		{"advertisement", guestLL, 255, fixed([]byte{134, 0, 0, 0, 0, 0, 0, 0}), ReasonType},
		{"code", guestLL, 255, fixed([]byte{133, 1, 0, 0, 0, 0, 0, 0}), ReasonCode},
		{"checksum", guestLL, 255, []byte{133, 0, 0, 1, 0, 0, 0, 0}, ReasonChecksum},
		{"checksum for other source", guestLL, 255, solicitation(unspec, allRtrs), ReasonChecksum},
		{"zero-length option", guestLL, 255, solicitation(guestLL, allRtrs, []byte{1, 0, 0, 0, 0, 0, 0, 0}), ReasonOptions},
		{"option past end", guestLL, 255, solicitation(guestLL, allRtrs, []byte{1, 2, 0, 0, 0, 0, 0, 0}), ReasonOptions},
		{"stray byte", guestLL, 255, solicitation(guestLL, allRtrs, []byte{1}), ReasonOptions},
		{"lla from unspecified", unspec, 255, solicitation(unspec, allRtrs, sllaOpt(guestMAC)), ReasonSourceLLA},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseSolicitation(tc.src, allRtrs, tc.hopLimit, tc.msg)
			var pe *ParseError
			if !errors.As(err, &pe) || pe.Reason != tc.reason {
				t.Fatalf("error %v, want reason %q", err, tc.reason)
			}
		})
	}
}

func TestParseOptions(t *testing.T) {
	opts, err := ParseOptions(servicetest.Unhex(t, "01 01 525400123456  05 01 0000 000005dc  ff 02 0000000000000000000000000000"))
	if err != nil {
		t.Fatal(err)
	}
	if len(opts) != 3 || opts[0].Type != 1 || len(opts[0].Data) != 6 || opts[1].Type != 5 || opts[2].Type != 255 || len(opts[2].Data) != 14 {
		t.Fatalf("options %+v", opts)
	}
	// Data is capped at its option: appending cannot overwrite the next.
	if cap(opts[0].Data) != 6 {
		t.Fatalf("option data capacity %d", cap(opts[0].Data))
	}
	if opts, err := ParseOptions(nil); err != nil || len(opts) != 0 {
		t.Fatalf("no options: %v, %v", opts, err)
	}
}

func TestParseAdvertisementRejects(t *testing.T) {
	hdr := "86 00 0000 40 40 0708 00000000 00000000"
	cases := map[string]string{
		"short":       "86 00 0000 40 40 0708 00000000 000000",
		"type":        "87 00 0000 40 40 0708 00000000 00000000",
		"mtu length":  hdr + "05 02 0000 000005dc 0000000000000000",
		"pio length":  hdr + "03 01 000000000000",
		"pio bits":    hdr + "03 04 81 c0 00015180 00003840 00000000 fd000000000000000000000000000000",
		"rdnss empty": hdr + "19 01 0000 00000708",
		"rdnss even":  hdr + "19 04 0000 00000708 fd000000000000000000000000000003 0000000000000000",
		"dnssl label": hdr + "1f 02 0000 00000708 09 6578616d706c6500",
		"dnssl tail":  hdr + "1f 02 0000 00000708 00 0000000000 0001",
		"dnssl short": hdr + "1f 01 0000 00000708",
	}
	for name, msg := range cases {
		if ad, err := ParseAdvertisement(servicetest.Unhex(t, msg)); err == nil {
			t.Errorf("%s: parsed as %+v", name, ad)
		}
	}
}
