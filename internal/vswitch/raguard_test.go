package vswitch

import (
	"encoding/binary"
	"testing"
)

// v6frame builds an Ethernet/IPv6 frame with the given extension headers
// (each: next header, then its bytes) ending in an ICMPv6 message of type t.
func v6frame(t byte, exts ...[]byte) []byte {
	f := make([]byte, 14+40)
	binary.BigEndian.PutUint16(f[12:], 0x86dd)
	f[14] = 0x60
	next := byte(nhICMPv6)
	if len(exts) > 0 {
		next = exts[0][0]
	}
	f[14+6] = next
	for i, e := range exts {
		h := append([]byte(nil), e[1:]...)
		nh := byte(nhICMPv6)
		if i+1 < len(exts) {
			nh = exts[i+1][0]
		}
		h[0] = nh
		f = append(f, h...)
	}
	return append(f, t, 0, 0, 0, 0, 0, 0, 0)
}

func TestRouterMessagesRecognised(t *testing.T) {
	hbh := append([]byte{nhHopByHop}, make([]byte, 8)...)
	dst := append([]byte{nhDestOpts}, make([]byte, 8)...)
	firstFrag := append([]byte{nhFragment}, make([]byte, 8)...)
	laterFrag := append([]byte{nhFragment}, 0, 0, 0x01, 0x00, 0, 0, 0, 1)
	cases := []struct {
		name  string
		frame []byte
		want  bool
	}{
		{"ra", v6frame(134), true},
		{"redirect", v6frame(137), true},
		{"rs", v6frame(133), false},
		{"ns", v6frame(135), false},
		{"echo", v6frame(128), false},
		{"ra behind hop-by-hop", v6frame(134, hbh), true},
		{"ra behind two headers", v6frame(134, hbh, dst), true},
		{"ra in a first fragment", v6frame(134, firstFrag), true},
		{"later fragment", v6frame(134, laterFrag), false},
		{"truncated", v6frame(134)[:14+40], false},
		{"ipv4", make([]byte, 80), false},
	}
	for _, c := range cases {
		if got := isRouterMessage(c.frame); got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, got, c.want)
		}
	}
}

func FuzzIsRouterMessage(f *testing.F) {
	f.Add(v6frame(134))
	f.Add(v6frame(134, append([]byte{nhHopByHop}, make([]byte, 8)...)))
	f.Fuzz(func(t *testing.T, b []byte) { isRouterMessage(b) })
}

func TestSwitchDropsGuestRouterAdvertisements(t *testing.T) {
	_, sink, g, ports := setup(t, 2)
	ra := v6frame(134)
	copy(ra[0:6], []byte{0x33, 0x33, 0, 0, 0, 1})
	copy(ra[6:12], mac(1))
	g[0].send(t, append(make([]byte, 12), ra...))
	g[0].send(t, frame(bcast, mac(1), "marker"))
	if got := g[1].expect(t, "marker"); len(got) != 1 {
		t.Fatalf("a guest's router advertisement reached another guest: %v", got)
	}
	if ports[0].Stats.DropRouter.Load() != 1 {
		t.Fatal("router advertisement not counted")
	}
	_ = sink
}
