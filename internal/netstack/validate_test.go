package netstack

import (
	"net"
	"net/netip"
	"reflect"
	"sync/atomic"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/slipway-net/slipway/internal/frame"
	"github.com/slipway-net/slipway/link"
)

var (
	gwMAC    = net.HardwareAddr{0x52, 0x55, 10, 0, 2, 2}
	guestMAC = net.HardwareAddr{0x52, 0x54, 0, 0, 0, 1}
	guest    = netip.MustParseAddrPort("10.0.2.15:40000")
	remote   = netip.MustParseAddrPort("192.0.2.1:80")
)

func TestValidateFrame(t *testing.T) {
	good := frame.TCP4(gwMAC, guestMAC, guest, remote, header.TCPFlagSyn, 1, nil)
	badCsum := append([]byte(nil), good...)
	badCsum[len(badCsum)-1] ^= 0xff // TCP checksum
	badIPCsum := append([]byte(nil), good...)
	badIPCsum[link.VnetHdrLen+link.EthHdrLen+10] ^= 0xff
	partial := append([]byte(nil), badCsum...)
	partial[0] = link.FlagNeedsCsum // the peer's kernel completes nothing: trusted
	truncated := good[:link.VnetHdrLen+link.EthHdrLen+25]
	badUDPLen := frame.UDP4(gwMAC, guestMAC, guest, remote, []byte("x"))
	badUDPLen[link.VnetHdrLen+link.EthHdrLen+20+5] = 200 // UDP length beyond packet
	cases := []struct {
		name    string
		frame   []byte
		ok      bool
		counter func(*DropCounters) uint64
	}{
		{"good tcp", good, true, nil},
		{"good udp", frame.UDP4(gwMAC, guestMAC, guest, remote, []byte("q")), true, nil},
		{"arp", frame.ARPRequest(guestMAC, guest.Addr(), netip.MustParseAddr("10.0.2.2")), true, nil},
		{"tcp checksum", badCsum, false, func(c *DropCounters) uint64 { return c.BadChecksum.Load() }},
		{"ip checksum", badIPCsum, false, func(c *DropCounters) uint64 { return c.BadChecksum.Load() }},
		{"partial checksum trusted", partial, true, nil},
		{"truncated ip", truncated, false, func(c *DropCounters) uint64 { return c.BadIPHeader.Load() }},
		{"udp length", badUDPLen, false, func(c *DropCounters) uint64 { return c.BadL4Header.Load() }},
		{"syn-fin", frame.TCP4(gwMAC, guestMAC, guest, remote, header.TCPFlagSyn|header.TCPFlagFin, 1, nil), false, func(c *DropCounters) uint64 { return c.BadTCPFlags.Load() }},
		{"runt", make([]byte, link.VnetHdrLen+6), false, func(c *DropCounters) uint64 { return c.Runt.Load() }},
		{"vlan", frame.Eth(gwMAC, guestMAC, 0x8100, make([]byte, 40)), false, func(c *DropCounters) uint64 { return c.UnknownType.Load() }},
		{"bad arp", frame.Eth(gwMAC, guestMAC, 0x0806, make([]byte, 28)), false, func(c *DropCounters) uint64 { return c.BadIPHeader.Load() }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var d DropCounters
			v := frame.Parse(c.frame[:link.VnetHdrLen], c.frame[link.VnetHdrLen:])
			ok := d.validate(&v)
			if ok != c.ok {
				t.Fatalf("valid = %v, want %v", ok, c.ok)
			}
			if c.counter != nil && c.counter(&d) != 1 {
				t.Fatal("drop not counted under its reason")
			}
		})
	}
}

// drops sums every drop counter.
func drops(d *DropCounters) uint64 {
	var n uint64
	rv := reflect.ValueOf(d).Elem()
	for i := 0; i < rv.NumField(); i++ {
		if c, ok := rv.Field(i).Addr().Interface().(*atomic.Uint64); ok {
			n += c.Load()
		}
	}
	return n
}

// Whatever the bytes: validate lets a frame through having counted
// nothing, or drops it having counted it under exactly one reason.
func FuzzValidateFrame(f *testing.F) {
	f.Add(frame.TCP4(gwMAC, guestMAC, guest, remote, header.TCPFlagSyn, 1, nil))
	f.Add(frame.UDP4(gwMAC, guestMAC, guest, remote, []byte("hello")))
	f.Add(frame.Echo4(gwMAC, guestMAC, guest.Addr(), remote.Addr(), 1, 1, []byte("ping")))
	f.Add(frame.ICMPv6(gwMAC, guestMAC, netip.MustParseAddr("fe80::1"), netip.MustParseAddr("fe80::2"), 135, make([]byte, 20)))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) < link.VnetHdrLen {
			return
		}
		var d DropCounters
		v := frame.Parse(b[:link.VnetHdrLen], b[link.VnetHdrLen:])
		ok := d.validate(&v)
		switch n := drops(&d); {
		case ok && n != 0:
			t.Fatalf("frame let through with %d drops counted", n)
		case !ok && n != 1:
			t.Fatalf("frame dropped with %d drops counted, want 1", n)
		}
	})
}

// Parsing and validating a frame whose checksums must be checked (a peer
// without offloads) allocates nothing, for IPv4 and IPv6.
func TestValidateDoesNotAllocate(t *testing.T) {
	g6, r6 := netip.MustParseAddrPort("[fd00::15]:40000"), netip.MustParseAddrPort("[2001:db8::1]:80")
	l4 := make([]byte, header.UDPMinimumSize+5)
	header.UDP(l4).Encode(&header.UDPFields{SrcPort: g6.Port(), DstPort: r6.Port(), Length: uint16(len(l4))})
	s6 := header.PseudoHeaderChecksum(header.UDPProtocolNumber, tcpipAddr(g6.Addr()), tcpipAddr(r6.Addr()), uint16(len(l4)))
	header.UDP(l4).SetChecksum(^checksum.Checksum(l4, s6))
	for name, b := range map[string][]byte{
		"tcp4": frame.TCP4(gwMAC, guestMAC, guest, remote, header.TCPFlagSyn, 1, []byte("payload")),
		"udp6": frame.Eth(gwMAC, guestMAC, 0x86dd, frame.IPv6(17, g6.Addr(), r6.Addr(), l4)),
	} {
		var d DropCounters
		allocs := testing.AllocsPerRun(100, func() {
			v := frame.Parse(b[:link.VnetHdrLen], b[link.VnetHdrLen:])
			if !d.validate(&v) {
				t.Fatalf("%s: a good frame was dropped", name)
			}
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocations per frame, want 0", name, allocs)
		}
	}
}
