package network

import (
	"bytes"
	"encoding/binary"
	"math/rand"
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/slipway-net/slipway/config"
	"github.com/slipway-net/slipway/internal/frame"
	"github.com/slipway-net/slipway/link"
	"github.com/slipway-net/slipway/link/pipe"
)

var probeMAC = net.HardwareAddr{0x52, 0x54, 0, 0xaa, 0xbb, 0xcc}

// harness is a network with one in-process guest link.
type harness struct {
	n     *Network
	guest *pipe.End
	bufs  [][]byte
	sizes []int
	gw    netip.Addr
}

func newHarness(tb testing.TB, mod func(*config.Config)) *harness {
	tb.Helper()
	cfg := config.Default()
	// A closed local port: DNS forwarding fails fast, never leaves the host.
	dns, _ := config.ParseDNSServer("127.0.0.1:1")
	cfg.DNSUpstreams = []config.DNSServer{dns}
	cfg.LogLevel = "error"
	if mod != nil {
		mod(&cfg)
	}
	n, err := New(cfg, nil)
	if err != nil {
		tb.Fatal(err)
	}
	near, far := pipe.New("guest", false)
	n.Attach(near)
	bufs, sizes := link.NewBuffers(32)
	h := &harness{n: n, guest: far, bufs: bufs, sizes: sizes, gw: n.Config().Gateway}
	tb.Cleanup(func() { n.Close() })
	return h
}

// sync sends an ARP request for the gateway and reads until its reply:
// every frame sent before it has then been through the input path.
func (h *harness) sync(tb testing.TB) {
	tb.Helper()
	probe := frame.ARPRequest(probeMAC, netip.MustParseAddr("10.0.2.250"), h.gw)
	h.guest.Write(link.Frames(probe))
	deadline := time.Now().Add(10 * time.Second)
	// A loaded machine may drop the probe or its answer (the pipe is a
	// bounded ring, like a NIC's): ask again now and then. Read blocks,
	// so the asking happens beside it.
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case <-done:
				return
			case <-time.After(time.Second):
				h.guest.Write(link.Frames(probe))
			}
		}
	}()
	for time.Now().Before(deadline) {
		n, err := h.guest.Read(h.bufs, h.sizes)
		if err != nil {
			tb.Fatal(err)
		}
		for i := 0; i < n; i++ {
			f := h.bufs[i][link.VnetHdrLen : link.VnetHdrLen+h.sizes[i]]
			if len(f) >= 42 && binary.BigEndian.Uint16(f[12:]) == 0x0806 && bytes.Equal(f[0:6], probeMAC) &&
				header.ARP(f[14:]).Op() == header.ARPReply {
				return
			}
		}
	}
	tb.Fatal("the gateway stopped answering ARP")
}

func seeds() [][]byte {
	gw := GatewayMAC(netip.MustParseAddr("10.0.2.2"))
	g := netip.MustParseAddrPort("10.0.2.15:40000")
	g6 := netip.MustParseAddr("fd00::15")
	ll := netip.MustParseAddr("fe80::1")
	return [][]byte{
		frame.ARPRequest(probeMAC, g.Addr(), netip.MustParseAddr("10.0.2.2")),
		frame.TCP4(gw, probeMAC, g, netip.MustParseAddrPort("10.0.2.2:22"), header.TCPFlagSyn, 1, nil),
		frame.TCP4(gw, probeMAC, g, netip.MustParseAddrPort("192.0.2.9:80"), header.TCPFlagAck, 1, []byte("data")),
		frame.UDP4(gw, probeMAC, g, netip.MustParseAddrPort("10.0.2.3:53"), []byte{0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0}),
		frame.UDP4(frame.Broadcast(), probeMAC, netip.MustParseAddrPort("0.0.0.0:68"), netip.MustParseAddrPort("255.255.255.255:67"), make([]byte, 300)),
		frame.Echo4(gw, probeMAC, g.Addr(), netip.MustParseAddr("10.0.2.2"), 7, 1, []byte("ping")),
		frame.Echo4(gw, probeMAC, g.Addr(), netip.MustParseAddr("192.0.2.9"), 7, 1, []byte("ping")),
		frame.Eth(gw, probeMAC, 0x86dd, make([]byte, 60)),
		// IPv6: neighbour solicitation for the gateway, a router
		// solicitation, a spoofed router advertisement, an echo request to
		// the gateway and one to the outside, a hop-by-hop header chain, a
		// fragment, and DHCPv6 and DNS over IPv6.
		frame.ICMPv6(frame.Broadcast(), probeMAC, ll, netip.MustParseAddr("ff02::1:ff00:2"), 135, append(make([]byte, 4), netip.MustParseAddr("fd00::2").AsSlice()...)),
		frame.ICMPv6(frame.Broadcast(), probeMAC, ll, netip.MustParseAddr("ff02::2"), 133, make([]byte, 4)),
		frame.ICMPv6(frame.Broadcast(), probeMAC, ll, netip.MustParseAddr("ff02::1"), 134, make([]byte, 12)),
		frame.ICMPv6(gw, probeMAC, g6, netip.MustParseAddr("fd00::2"), 128, []byte{0, 1, 0, 1, 'p'}),
		frame.ICMPv6(gw, probeMAC, g6, netip.MustParseAddr("2001:db8::1"), 128, []byte{0, 1, 0, 1, 'p'}),
		frame.Eth(gw, probeMAC, 0x86dd, frame.IPv6(0, g6, netip.MustParseAddr("fd00::2"), append([]byte{58, 0, 1, 4, 0, 0, 0, 0}, 128, 0, 0, 0, 0, 1, 0, 1))),
		frame.Eth(gw, probeMAC, 0x86dd, frame.IPv6(44, g6, netip.MustParseAddr("fd00::2"), append([]byte{58, 0, 0, 1, 0, 0, 0, 9}, 128, 0, 0, 0, 0, 1, 0, 1))),
		frame.Eth(frame.Broadcast(), probeMAC, 0x86dd, frame.IPv6(17, ll, netip.MustParseAddr("ff02::1:2"), make([]byte, 40))),
		frame.Eth(gw, probeMAC, 0x0800, []byte{0x4f, 0, 0, 10}),
	}
}

// FuzzGuestFrames feeds arbitrary frames from a guest through the whole
// input path: switch, validation, interception, stack, forwarders,
// services. Restricted mode keeps random SYNs from dialling the host.
func FuzzGuestFrames(f *testing.F) {
	for _, s := range seeds() {
		f.Add(s[link.VnetHdrLen:])
	}
	h := newHarness(f, func(c *config.Config) { c.Restrict = true })
	f.Fuzz(func(t *testing.T, frame []byte) {
		if len(frame) > link.MaxFrameLen {
			return
		}
		buf := append(make([]byte, link.VnetHdrLen), frame...)
		h.guest.Write(link.Frames(buf))
		h.sync(t)
	})
}

// TestGarbageFramesLeakNothing sends thousands of random and mutated frames
// and checks that the network still works and holds no flows or goroutines
// afterwards.
func TestGarbageFramesLeakNothing(t *testing.T) {
	h := newHarness(t, func(c *config.Config) { c.Restrict = true })
	h.sync(t)
	runtime.GC()
	before := runtime.NumGoroutine()
	rng := rand.New(rand.NewSource(1))
	base := seeds()
	for i := 0; i < 5000; i++ {
		var frame []byte
		if i%2 == 0 {
			frame = append([]byte(nil), base[rng.Intn(len(base))]...)
			for k := rng.Intn(4) + 1; k > 0; k-- {
				frame[link.VnetHdrLen+rng.Intn(len(frame)-link.VnetHdrLen)] = byte(rng.Intn(256))
			}
		} else {
			frame = make([]byte, link.VnetHdrLen+rng.Intn(200))
			rng.Read(frame[link.VnetHdrLen:])
		}
		h.guest.Write(link.Frames(frame))
		if i%100 == 0 {
			h.sync(t)
		}
	}
	h.sync(t)
	if n := h.n.flows.Len(); n != 0 {
		t.Fatalf("%d flows open after garbage input in restricted mode", n)
	}
	// DNS answers and handshakes finish within seconds; allow for them.
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before+5 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if after := runtime.NumGoroutine(); after > before+5 {
		t.Fatalf("goroutines grew from %d to %d", before, after)
	}
	d := h.n.st.Drops()
	if d.BadChecksum.Load()+d.BadIPHeader.Load()+d.UnknownType.Load()+d.Runt.Load() == 0 {
		t.Fatal("no garbage frame was counted as dropped")
	}
}

// TestStackAnswersARPOnlyForItsOwnAddresses: another guest's address (or a
// guest probing its own new address) must not be claimed by the gateway.
func TestStackAnswersARPOnlyForItsOwnAddresses(t *testing.T) {
	h := newHarness(t, nil)
	for _, target := range []string{"10.0.2.16", "10.0.2.15", "192.0.2.1"} {
		h.guest.Write(link.Frames(frame.ARPRequest(probeMAC, netip.MustParseAddr("10.0.2.15"), netip.MustParseAddr(target))))
	}
	h.guest.Write(link.Frames(frame.ARPRequest(probeMAC, netip.MustParseAddr("10.0.2.15"), netip.MustParseAddr("10.0.2.3"))))
	// Read up to the answer for the DNS address; nothing else may come.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		n, err := h.guest.Read(h.bufs, h.sizes)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < n; i++ {
			f := h.bufs[i][link.VnetHdrLen : link.VnetHdrLen+h.sizes[i]]
			if binary.BigEndian.Uint16(f[12:]) != 0x0806 {
				continue
			}
			a := header.ARP(f[14:])
			sender, _ := netip.AddrFromSlice(a.ProtocolAddressSender())
			if sender.String() != "10.0.2.3" {
				t.Fatalf("the stack answered ARP for %v", sender)
			}
			if got := h.n.st.Drops().NotOurs.Load(); got != 3 {
				t.Fatalf("NotOurs = %d, want 3", got)
			}
			return
		}
	}
	t.Fatal("no ARP answer for the DNS address")
}
