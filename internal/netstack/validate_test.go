package netstack

import (
	"net"
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/slipway-net/slipway/internal/framebuild"
	"github.com/slipway-net/slipway/link"
)

var (
	gwMAC    = net.HardwareAddr{0x52, 0x55, 10, 0, 2, 2}
	guestMAC = net.HardwareAddr{0x52, 0x54, 0, 0, 0, 1}
	guest    = netip.MustParseAddrPort("10.0.2.15:40000")
	remote   = netip.MustParseAddrPort("192.0.2.1:80")
)

func TestValidateFrame(t *testing.T) {
	good := framebuild.TCP4(gwMAC, guestMAC, guest, remote, header.TCPFlagSyn, 1, nil)
	badCsum := append([]byte(nil), good...)
	badCsum[len(badCsum)-1] ^= 0xff // TCP checksum
	badIPCsum := append([]byte(nil), good...)
	badIPCsum[link.VnetHdrLen+link.EthHdrLen+10] ^= 0xff
	partial := append([]byte(nil), badCsum...)
	partial[0] = link.FlagNeedsCsum // the peer's kernel completes nothing: trusted
	truncated := good[:link.VnetHdrLen+link.EthHdrLen+25]
	badUDPLen := framebuild.UDP4(gwMAC, guestMAC, guest, remote, []byte("x"))
	badUDPLen[link.VnetHdrLen+link.EthHdrLen+20+5] = 200 // UDP length beyond packet
	cases := []struct {
		name    string
		frame   []byte
		ok      bool
		counter func(*DropCounters) uint64
	}{
		{"good tcp", good, true, nil},
		{"good udp", framebuild.UDP4(gwMAC, guestMAC, guest, remote, []byte("q")), true, nil},
		{"arp", framebuild.ARPRequest(guestMAC, guest.Addr(), netip.MustParseAddr("10.0.2.2")), true, nil},
		{"tcp checksum", badCsum, false, func(c *DropCounters) uint64 { return c.BadChecksum.Load() }},
		{"ip checksum", badIPCsum, false, func(c *DropCounters) uint64 { return c.BadChecksum.Load() }},
		{"partial checksum trusted", partial, true, nil},
		{"truncated ip", truncated, false, func(c *DropCounters) uint64 { return c.BadIPHeader.Load() }},
		{"udp length", badUDPLen, false, func(c *DropCounters) uint64 { return c.BadL4Header.Load() }},
		{"runt", make([]byte, link.VnetHdrLen+6), false, func(c *DropCounters) uint64 { return c.Runt.Load() }},
		{"vlan", framebuild.Eth(gwMAC, guestMAC, 0x8100, make([]byte, 40)), false, func(c *DropCounters) uint64 { return c.UnknownType.Load() }},
		{"bad arp", framebuild.Eth(gwMAC, guestMAC, 0x0806, make([]byte, 28)), false, func(c *DropCounters) uint64 { return c.BadIPHeader.Load() }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var d DropCounters
			_, ok := d.validateFrame(c.frame[:link.VnetHdrLen], c.frame[link.VnetHdrLen:])
			if ok != c.ok {
				t.Fatalf("valid = %v, want %v", ok, c.ok)
			}
			if c.counter != nil && c.counter(&d) != 1 {
				t.Fatal("drop not counted under its reason")
			}
		})
	}
}

func FuzzValidateFrame(f *testing.F) {
	f.Add(framebuild.TCP4(gwMAC, guestMAC, guest, remote, header.TCPFlagSyn, 1, nil))
	f.Add(framebuild.UDP4(gwMAC, guestMAC, guest, remote, []byte("hello")))
	f.Add(framebuild.Echo4(gwMAC, guestMAC, guest.Addr(), remote.Addr(), 1, 1, []byte("ping")))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) < link.VnetHdrLen {
			return
		}
		var d DropCounters
		d.validateFrame(b[:link.VnetHdrLen], b[link.VnetHdrLen:])
	})
}
