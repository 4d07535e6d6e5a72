package vswitch

import (
	"bytes"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/slipway-net/slipway/internal/frame"
	"github.com/slipway-net/slipway/internal/pcap"
	"github.com/slipway-net/slipway/link"
	"github.com/slipway-net/slipway/link/pipe"
)

var (
	stackMAC = net.HardwareAddr{0x52, 0x55, 10, 0, 2, 2}
	bcast    = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
)

func mac(last byte) net.HardwareAddr { return net.HardwareAddr{0x52, 0x54, 0, 0, 0, last} }

// frame builds header+frame with a payload tag to tell frames apart.
func tagged(dst, src net.HardwareAddr, tag string) []byte {
	b := make([]byte, link.VnetHdrLen+link.EthHdrLen+len(tag))
	f := b[link.VnetHdrLen:]
	copy(f[0:6], dst)
	copy(f[6:12], src)
	f[12], f[13] = 0x08, 0x00
	copy(f[14:], tag)
	return b
}

func tagOf(f []byte) string { return string(f[link.VnetHdrLen+link.EthHdrLen:]) }

// guest is the far end of a pipe attached to the switch.
type guest struct {
	end    *pipe.End
	frames chan []byte
}

func (g *guest) send(t *testing.T, f []byte) {
	t.Helper()
	if _, err := g.end.Write(link.Frames(f)); err != nil {
		t.Fatal(err)
	}
}

// expect returns the tags the guest receives up to and including marker.
func (g *guest) expect(t *testing.T, marker string) []string {
	t.Helper()
	var tags []string
	for {
		select {
		case f := <-g.frames:
			tags = append(tags, tagOf(f))
			if tagOf(f) == marker {
				return tags
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("marker %q never arrived; got %v", marker, tags)
		}
	}
}

type stackSink struct {
	mu   sync.Mutex
	tags []string
}

func (s *stackSink) deliver(views []frame.View) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range views {
		s.tags = append(s.tags, string(v.Eth[link.EthHdrLen:]))
	}
}

func (s *stackSink) has(tag string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range s.tags {
		if t == tag {
			return true
		}
	}
	return false
}

func setup(t *testing.T, n int, opts ...Options) (*Switch, *stackSink, []*guest, []*Port) {
	t.Helper()
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	sw := New(o)
	sink := &stackSink{}
	sw.SetStack(stackMAC, sink.deliver)
	var guests []*guest
	var ports []*Port
	for i := 0; i < n; i++ {
		g, p := addGuest(t, sw.AddLink)
		guests = append(guests, g)
		ports = append(ports, p)
	}
	return sw, sink, guests, ports
}

// addGuest attaches a pipe to the switch with add (AddLink or AddUplink).
func addGuest(t *testing.T, add func(link.Link) *Port) (*guest, *Port) {
	near, far := pipe.New("g", false)
	p := add(near)
	go p.Run()
	t.Cleanup(func() { p.sw.Remove(p) })
	g := &guest{end: far, frames: make(chan []byte, 64)}
	go func() {
		bufs, sizes := link.NewBuffers(8)
		for {
			k, err := far.Read(bufs, sizes)
			for j := 0; j < k; j++ {
				g.frames <- bytes.Clone(bufs[j][:link.VnetHdrLen+sizes[j]])
			}
			if err != nil {
				return
			}
		}
	}()
	return g, p
}

// An uplink (a bridged LAN) shares the guests' L2 but never the stack:
// slipway's services must not answer the LAN, and two uplinks must not
// join their LANs through slipway.
func TestSwitchUplinkSharesL2ButNotTheStack(t *testing.T) {
	sw, sink, g, _ := setup(t, 1)
	lan, lanPort := addGuest(t, sw.AddUplink)
	lan2, _ := addGuest(t, sw.AddUplink)
	lanMAC := mac(7)
	// The LAN's broadcast (a DHCP discover, say) reaches the guest only.
	lan.send(t, tagged(bcast, lanMAC, "lan-bcast"))
	g[0].expect(t, "lan-bcast")
	// Guest <-> LAN unicast both ways.
	g[0].send(t, tagged(lanMAC, mac(1), "to-lan"))
	lan.expect(t, "to-lan")
	lan.send(t, tagged(mac(1), lanMAC, "to-guest"))
	g[0].expect(t, "to-guest")
	// A LAN host talking to the gateway's MAC is dropped and counted.
	lan.send(t, tagged(stackMAC, lanMAC, "lan-to-gw"))
	// The stack's broadcast and its unicast to a LAN MAC stay off the LAN.
	sw.FromStack(link.Frames(tagged(bcast, stackMAC, "stack-bcast")))
	sw.FromStack(link.Frames(tagged(lanMAC, stackMAC, "stack-to-lan")))
	g[0].expect(t, "stack-bcast")
	// The guest's broadcast reaches the stack and both LANs; before it the
	// first LAN has seen only the guest's unicast, the second nothing (no
	// frame of the stack, none of the other LAN).
	g[0].send(t, tagged(bcast, mac(1), "marker"))
	if got := lan.expect(t, "marker"); len(got) != 1 {
		t.Fatalf("LAN got %v after to-lan, want only the guest's marker", got)
	}
	if got := lan2.expect(t, "marker"); len(got) != 1 {
		t.Fatalf("second LAN got %v: a frame of the first LAN or of the stack", got)
	}
	if !sink.has("marker") {
		t.Fatal("the guest's broadcast did not reach the stack")
	}
	if sink.has("lan-bcast") || sink.has("lan-to-gw") {
		t.Fatalf("frames from the LAN reached the stack: %v", sink.tags)
	}
	if n := lanPort.Stats.DropUplink.Load(); n != 2 {
		t.Fatalf("uplink drops = %d, want 2 (to the gateway, and the stack's unicast)", n)
	}
}

func TestSwitchLearnsAndUnicastStaysPrivate(t *testing.T) {
	_, sink, g, _ := setup(t, 3)
	a, b, c := mac(1), mac(2), mac(3)
	// b announces itself; everyone else hears the broadcast.
	g[1].send(t, tagged(bcast, b, "hello-b"))
	if got := g[0].expect(t, "hello-b"); len(got) != 1 {
		t.Fatalf("a got %v", got)
	}
	g[2].expect(t, "hello-b")
	// a -> b unicast, then a broadcast marker: c must see only the marker.
	g[0].send(t, tagged(b, a, "private"))
	g[0].send(t, tagged(bcast, a, "marker"))
	if got := g[1].expect(t, "marker"); len(got) != 2 || got[0] != "private" {
		t.Fatalf("b got %v, want [private marker]", got)
	}
	if got := g[2].expect(t, "marker"); len(got) != 1 {
		t.Fatalf("c got %v: unicast between two guests reached a third", got)
	}
	if sink.has("private") {
		t.Fatal("guest-to-guest unicast reached the stack")
	}
	if !sink.has("marker") {
		t.Fatal("broadcast did not reach the stack")
	}
	_ = c
}

func TestSwitchFloodsUnknownAndFeedsStack(t *testing.T) {
	_, sink, g, _ := setup(t, 2)
	g[0].send(t, tagged(mac(9), mac(1), "unknown"))
	g[1].expect(t, "unknown")
	g[0].send(t, tagged(stackMAC, mac(1), "to-gw"))
	g[0].send(t, tagged(bcast, mac(1), "marker"))
	if got := g[1].expect(t, "marker"); len(got) != 1 {
		t.Fatalf("frame for the gateway leaked to another guest: %v", got)
	}
	if !sink.has("unknown") || !sink.has("to-gw") {
		t.Fatalf("stack got %v", sink.tags)
	}
}

func TestSwitchDropsBadFramesAndCounts(t *testing.T) {
	sw, _, g, ports := setup(t, 2)
	g[0].send(t, tagged(bcast, mac(1), "learn"))
	g[1].expect(t, "learn")
	runt := make([]byte, link.VnetHdrLen+10)
	g[0].send(t, runt)
	g[0].send(t, tagged(bcast, stackMAC, "spoofed-gw"))
	g[0].send(t, tagged(bcast, bcast, "multicast-src"))
	g[0].send(t, tagged(mac(1), mac(1), "hairpin"))
	g[0].send(t, tagged(bcast, mac(1), "marker"))
	if got := g[1].expect(t, "marker"); len(got) != 1 {
		t.Fatalf("bad frames were forwarded: %v", got)
	}
	st := &ports[0].Stats
	if st.DropRunt.Load() != 1 || st.DropBadSrc.Load() != 2 || st.DropHairpin.Load() != 1 {
		t.Fatalf("drops runt=%d badsrc=%d hairpin=%d, want 1 2 1", st.DropRunt.Load(), st.DropBadSrc.Load(), st.DropHairpin.Load())
	}
	if sw.Has(MAC(stackMAC)) == false {
		t.Fatal("the stack's MAC was unlearned by a spoofing guest")
	}
}

func TestSwitchForgetsRemovedPort(t *testing.T) {
	sw, _, g, ports := setup(t, 2)
	var m MAC
	copy(m[:], mac(5))
	g[1].send(t, tagged(bcast, mac(5), "hi"))
	g[0].expect(t, "hi")
	if !sw.Has(m) {
		t.Fatal("MAC not learned")
	}
	var gone []MAC
	done := make(chan struct{})
	sw.onPort = func(p *Port, up bool, macs []MAC) {
		if !up && p == ports[1] {
			gone = macs
			close(done)
		}
	}
	g[1].end.Close() // the guest goes away
	<-done
	if sw.Has(m) || len(gone) != 1 || gone[0] != m {
		t.Fatalf("after link down: has=%v gone=%v", sw.Has(m), gone)
	}
	if len(sw.Ports()) != 1 || sw.Ports()[0] != ports[0] {
		t.Fatalf("ports after removal: %v", sw.Ports())
	}
}

func TestSwitchFromStackReachesGuest(t *testing.T) {
	sw, _, g, _ := setup(t, 2)
	g[1].send(t, tagged(bcast, mac(2), "hi"))
	g[0].expect(t, "hi")
	sw.FromStack(link.Frames(tagged(mac(2), stackMAC, "reply")))
	sw.FromStack(link.Frames(tagged(bcast, stackMAC, "marker")))
	if got := g[1].expect(t, "marker"); len(got) != 2 || got[0] != "reply" {
		t.Fatalf("guest b got %v", got)
	}
	if got := g[0].expect(t, "marker"); len(got) != 1 {
		t.Fatalf("guest a got %v: reply to b leaked", got)
	}
}

// The capture has every frame once: a run of the stack's frames for one
// guest, then one for another, then a broadcast.
func TestSwitchCapturesEachStackFrameOnce(t *testing.T) {
	var capture bytes.Buffer
	w, err := pcap.NewWriter(&capture)
	if err != nil {
		t.Fatal(err)
	}
	sw, _, g, _ := setup(t, 2, Options{PCAP: w})
	g[0].send(t, tagged(bcast, mac(1), "a"))
	g[1].expect(t, "a")
	g[1].send(t, tagged(bcast, mac(2), "b"))
	g[0].expect(t, "b")
	before := capture.Len()
	sw.FromStack(link.Frames(
		tagged(mac(1), stackMAC, "to-a-1"), tagged(mac(1), stackMAC, "to-a-2"),
		tagged(mac(2), stackMAC, "to-b"), tagged(bcast, stackMAC, "to-all")))
	if got := g[1].expect(t, "to-all"); len(got) != 2 || got[0] != "to-b" {
		t.Fatalf("guest b got %v", got)
	}
	if got := g[0].expect(t, "to-all"); len(got) != 3 {
		t.Fatalf("guest a got %v", got)
	}
	// Each record: a 16-byte header and the frame.
	want := 0
	for _, tag := range []string{"to-a-1", "to-a-2", "to-b", "to-all"} {
		want += 16 + link.EthHdrLen + len(tag)
	}
	if got := capture.Len() - before; got != want {
		t.Fatalf("the capture grew by %d bytes for 4 frames, want %d (each frame once)", got, want)
	}
}

func TestSwitchLimitsLearningPerPort(t *testing.T) {
	sw, _, g, _ := setup(t, 2)
	for i := 0; i < DefaultMaxMACsPerPort+20; i++ {
		g[0].send(t, tagged(bcast, net.HardwareAddr{0x52, 0x54, 0, 0, byte(i >> 8), byte(i)}, "x"))
	}
	g[0].send(t, tagged(bcast, mac(1), "marker"))
	g[1].expect(t, "marker")
	if n := len(*sw.macs.Load()); n > DefaultMaxMACsPerPort+1 {
		t.Fatalf("table holds %d MACs, want at most %d", n, DefaultMaxMACsPerPort+1)
	}
}

// A link set down (the control API's POST /v1/links/N/down) carries
// nothing either way, counting each frame as link_down, and carries
// frames again once up.
func TestSwitchLinkDownDropsBothWays(t *testing.T) {
	_, sink, g, ports := setup(t, 2)
	g[0].send(t, tagged(bcast, mac(1), "learn"))
	g[1].expect(t, "learn")
	ports[1].SetUp(false)
	if ports[1].Up() {
		t.Fatal("Up after SetUp(false)")
	}
	g[0].send(t, tagged(bcast, mac(1), "to-down"))
	g[1].send(t, tagged(bcast, mac(2), "from-down"))
	deadline := time.Now().Add(5 * time.Second)
	for ports[1].Stats.DropLinkDown.Load() < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("link_down counts %d, want 2 (a frame each way)", ports[1].Stats.DropLinkDown.Load())
		}
		time.Sleep(time.Millisecond)
	}
	ports[1].SetUp(true)
	g[0].send(t, tagged(bcast, mac(1), "marker-0"))
	g[1].send(t, tagged(bcast, mac(2), "marker-1"))
	if got := g[1].expect(t, "marker-0"); len(got) != 1 {
		t.Errorf("the link that was down got %v, want only the marker sent once it was up", got)
	}
	if got := g[0].expect(t, "marker-1"); len(got) != 1 {
		t.Errorf("the other guest got %v from the link that was down, want only the marker", got)
	}
	if sink.has("from-down") {
		t.Error("a frame from the link while it was down reached the stack")
	}
	if n := ports[1].Stats.DropLinkDown.Load(); n != 2 {
		t.Errorf("link_down counts %d once up again, want 2", n)
	}
}

// A TCP super-frame for a link without offloads reaches its guest as the
// segments it stands for, each of at most its segment size with complete
// checksums and no offload left in its header, the payload whole and in
// order; one that cannot be cut (not TCP) is dropped and counted.
func TestSwitchSegmentsSuperFramesForLinksWithoutOffloads(t *testing.T) {
	sw, _, g, ports := setup(t, 2)
	g[1].send(t, tagged(bcast, mac(2), "learn"))
	g[0].expect(t, "learn")
	const mss = 1000
	payload := make([]byte, 10*mss+123)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	super := frame.TCP4(mac(2), stackMAC, netip.MustParseAddrPort("10.0.2.2:80"), netip.MustParseAddrPort("10.0.2.15:40000"),
		header.TCPFlagAck|header.TCPFlagPsh, 1, payload)
	link.VnetHdr{Flags: link.FlagNeedsCsum, GSOType: link.GSOTCPv4, GSOSize: mss, CsumStart: 14 + 20, CsumOffset: 16}.Encode(super)
	sw.FromStack(link.Frames(super))
	notTCP := frame.UDP4(mac(2), stackMAC, netip.MustParseAddrPort("10.0.2.2:53"), netip.MustParseAddrPort("10.0.2.15:40000"), payload)
	link.VnetHdr{GSOType: link.GSOTCPv4, GSOSize: mss}.Encode(notTCP)
	sw.FromStack(link.Frames(notTCP))
	sw.FromStack(link.Frames(tagged(mac(2), stackMAC, "marker")))

	var got []byte
	var segs int
	for {
		var f []byte
		select {
		case f = <-g[1].frames:
		case <-time.After(5 * time.Second):
			t.Fatalf("marker never arrived after %d segments", segs)
		}
		if tagOf(f) == "marker" {
			break
		}
		segs++
		if h := link.DecodeVnetHdr(f); h.GSOType != link.GSONone || h.Flags&link.FlagNeedsCsum != 0 {
			t.Fatalf("segment %d keeps an offload in its header: %+v", segs, h)
		}
		ip := header.IPv4(f[link.VnetHdrLen+link.EthHdrLen:])
		if !ip.IsValid(len(ip)) || ip.TransportProtocol() != header.TCPProtocolNumber || !ip.IsChecksumValid() {
			t.Fatalf("segment %d is not a valid TCP/IPv4 packet: %x", segs, f)
		}
		tcp := header.TCP(ip.Payload())
		if !tcp.IsChecksumValid(tcpip.AddrFromSlice(ip.SourceAddressSlice()), tcpip.AddrFromSlice(ip.DestinationAddressSlice()),
			checksum.Checksum(tcp.Payload(), 0), uint16(len(tcp.Payload()))) {
			t.Fatalf("segment %d: TCP checksum wrong", segs)
		}
		if len(tcp.Payload()) > mss {
			t.Fatalf("segment %d carries %d bytes, more than the segment size %d", segs, len(tcp.Payload()), mss)
		}
		got = append(got, tcp.Payload()...)
	}
	if !bytes.Equal(got, payload) {
		t.Errorf("the segments carry %d bytes, not the super-frame's %d in order", len(got), len(payload))
	}
	if n := ports[1].Stats.DropNoGSO.Load(); n != 1 {
		t.Errorf("no_gso counts %d, want 1 (the super-frame that is not TCP)", n)
	}
}
