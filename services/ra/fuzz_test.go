package ra

import (
	"encoding/binary"
	"net/netip"
	"testing"
)

func FuzzParseOptions(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{1, 1, 0x52, 0x54, 0, 0x12, 0x34, 0x56})
	f.Add([]byte{1, 0})
	f.Add([]byte{1, 2, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{5, 1, 0, 0, 0, 0, 5, 0xdc, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		opts, err := ParseOptions(b)
		if err != nil {
			return
		}
		// Accepted options tile the input exactly.
		n := 0
		for _, o := range opts {
			if len(o.Data) == 0 || (len(o.Data)+2)%8 != 0 || cap(o.Data) != len(o.Data) {
				t.Fatalf("option %d with %d data bytes (cap %d)", o.Type, len(o.Data), cap(o.Data))
			}
			n += len(o.Data) + 2
		}
		if n != len(b) {
			t.Fatalf("options cover %d of %d bytes", n, len(b))
		}
	})
}

// FuzzParseSolicitation feeds arbitrary messages. The first byte picks the
// source (unspecified or link-local) and whether the checksum is made
// right first, so the fuzzer gets past the checksum check.
func FuzzParseSolicitation(f *testing.F) {
	f.Add(byte(3), solicitation(guestLL, allRtrs, sllaOpt(routerMAC)))
	f.Add(byte(1), solicitation(netip.IPv6Unspecified(), allRtrs))
	f.Add(byte(2), []byte{133, 0, 0, 0, 0, 0, 0, 0, 1, 0})
	f.Add(byte(0), []byte{133})
	f.Fuzz(func(t *testing.T, mode byte, b []byte) {
		src := guestLL
		if mode&2 == 0 {
			src = netip.IPv6Unspecified()
		}
		if mode&1 != 0 && len(b) >= 4 {
			binary.BigEndian.PutUint16(b[2:], Checksum(src, allRtrs, b))
		}
		s, err := ParseSolicitation(src, allRtrs, 255, b)
		if err != nil {
			return
		}
		if b[0] != TypeRouterSolicitation || (src.IsUnspecified() && s.SourceLinkAddr != nil) {
			t.Fatalf("accepted % x from %v as %+v", b, src, s)
		}
	})
}

func FuzzParseAdvertisement(f *testing.F) {
	cfg := testConfig()
	a, err := New(cfg)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(a.Message())
	f.Add([]byte{134, 0, 0, 0, 64, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{134, 0, 0, 0, 64, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 31, 2, 0, 0, 0, 0, 0, 1, 1, 'a', 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		ad, err := ParseAdvertisement(b)
		if err != nil {
			return
		}
		for _, p := range ad.Prefixes {
			if !p.Prefix.IsValid() {
				t.Fatalf("invalid prefix %v accepted", p.Prefix)
			}
		}
		for _, name := range ad.DNSSL {
			if len(name) > len(b) {
				t.Fatalf("name %q longer than the message", name)
			}
		}
	})
}
