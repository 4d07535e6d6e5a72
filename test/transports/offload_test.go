package transports

import (
	"bytes"
	"net"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/slipway-net/slipway/config"
	"github.com/slipway-net/slipway/internal/endpoint"
	"github.com/slipway-net/slipway/internal/frame"
	"github.com/slipway-net/slipway/link"
	"github.com/slipway-net/slipway/network"
	"github.com/slipway-net/slipway/test/guestpeer"
	"github.com/slipway-net/slipway/test/testenv"
)

// An offloading krunkit guest sends frames of nearly 64 KB whose UDP/TCP
// checksum is only partial. On a datagram endpoint they are accepted
// unchecked; the same frame from a seqpacket peer, whose guests complete
// their checksums, is dropped as corrupt.
func TestOffloadedFramesFromDatagramPeers(t *testing.T) {
	echo := testenv.UDPEcho(t)
	n, err := network.New(config.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	dir := t.TempDir()
	serve := func(kind, name string) string {
		path := filepath.Join(dir, name)
		l, err := endpoint.Listen(endpoint.Spec{Kind: endpoint.Kind(kind), Network: "unix", Address: path})
		if err != nil {
			t.Fatal(err)
		}
		go n.Serve(l)
		return path
	}
	dgramPath, seqPath := serve("dgram", "d.sock"), serve("seqpacket", "q.sock")

	gw := netip.MustParseAddr("10.0.2.2")
	gwMAC := network.GatewayMAC(gw)
	payload := bytes.Repeat([]byte("x"), 65000)
	send := func(w guestpeer.Wire, mac net.HardwareAddr, ip netip.Addr) {
		t.Helper()
		// Introduce ourselves (the stack learns the guest's MAC from
		// its ARP request for the gateway), then the big datagram
		// with a checksum that is only the pseudo-header's, as an
		// offloading guest leaves it.
		if err := w.Send(frame.ARPRequest(mac, ip, gw)[link.VnetHdrLen:]); err != nil {
			t.Fatal(err)
		}
		f := frame.UDP4(gwMAC, mac, netip.AddrPortFrom(ip, 5000), netip.AddrPortFrom(gw, echo.Port()), payload)
		udp := f[link.VnetHdrLen+header.EthernetMinimumSize+header.IPv4MinimumSize:]
		header.UDP(udp).SetChecksum(0x1234)
		if err := w.Send(f[link.VnetHdrLen:]); err != nil {
			t.Fatal(err)
		}
	}

	mac := net.HardwareAddr{0x52, 0x54, 0, 0, 0x30, 1}
	krunkit := guestpeer.DialDatagram(t, dgramPath, true, false)
	send(krunkit, mac, netip.MustParseAddr("10.0.2.40"))
	buf := make([]byte, guestpeer.MaxFrame)
	krunkit.Conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	for {
		m, err := krunkit.Recv(buf)
		if err != nil {
			t.Fatalf("no echo of the offloaded datagram: %v", err)
		}
		if m > 60000 && bytes.Contains(buf[:m], []byte("echo:xxxx")) {
			break
		}
	}

	c, err := net.Dial("unixpacket", seqPath)
	if err != nil {
		t.Fatal(err)
	}
	uml := &guestpeer.Packet{Conn: c}
	defer uml.Close()
	before := n.Counter("stack_drops", "bad_checksum")
	send(uml, net.HardwareAddr{0x52, 0x54, 0, 0, 0x30, 2}, netip.MustParseAddr("10.0.2.41"))
	eventually(t, "the untrusted peer's frame dropped for its checksum", func() bool {
		return n.Counter("stack_drops", "bad_checksum") == before+1
	})
}
