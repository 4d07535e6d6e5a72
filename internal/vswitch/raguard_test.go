package vswitch

import (
	"net"
	"net/netip"
	"testing"

	"github.com/slipway-net/slipway/internal/frame"
)

func TestSwitchDropsGuestRouterAdvertisements(t *testing.T) {
	_, sink, g, ports := setup(t, 2)
	ra := frame.ICMPv6(net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1}, mac(1), netip.MustParseAddr("fe80::1"), netip.MustParseAddr("ff02::1"), 134, make([]byte, 12))
	g[0].send(t, ra)
	g[0].send(t, tagged(bcast, mac(1), "marker"))
	if got := g[1].expect(t, "marker"); len(got) != 1 {
		t.Fatalf("a guest's router advertisement reached another guest: %v", got)
	}
	if ports[0].Stats.DropRouter.Load() != 1 {
		t.Fatal("router advertisement not counted")
	}
	_ = sink
}
