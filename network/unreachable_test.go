package network

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/slipway-net/slipway/internal/frame"
	"github.com/slipway-net/slipway/link"
)

// TestPortUnreachableQuotesTheDatagram sends a UDP datagram to a port of
// the host's loopback where nothing listens, over IPv4 and IPv6: the ICMP
// port unreachable the guest gets quotes the datagram's own IP and UDP
// headers, length and checksum included, as a host's does (a quote rebuilt
// with the length of an empty datagram and no checksum was not matched
// to the datagram by scapy, so a differential probe saw no answer).
func TestPortUnreachableQuotesTheDatagram(t *testing.T) {
	if testing.Short() {
		t.Skip("uses the host's loopback")
	}
	closed := func(network, addr string) uint16 {
		c, err := net.ListenPacket(network, addr)
		if err != nil {
			t.Skipf("no %s loopback: %v", network, err)
		}
		defer c.Close()
		return uint16(c.LocalAddr().(*net.UDPAddr).Port)
	}
	h := newHarness(t, nil)
	gwMAC := GatewayMAC(h.gw)
	cfg := h.n.Config()
	g4 := netip.AddrPortFrom(netip.MustParseAddr("10.0.2.15"), 40001)
	g6 := netip.AddrPortFrom(netip.MustParseAddr("fd00::15"), 40002)
	gw6 := cfg.IPv6Gateway
	payload := []byte("slipway-differential")
	for _, c := range []struct {
		name   string
		learn  []byte // makes the stack learn the guest's MAC
		dgram  []byte
		ipLen  int
		icmpIP uint16 // the EtherType of the answer
	}{
		{"ipv4",
			frame.ARPRequest(probeMAC, g4.Addr(), h.gw),
			frame.UDP4(gwMAC, probeMAC, g4, netip.AddrPortFrom(h.gw, closed("udp4", "127.0.0.1:0")), payload),
			header.IPv4MinimumSize, 0x0800},
		{"ipv6",
			frame.ICMPv6(gwMAC, probeMAC, g6.Addr(), gw6, 135, append(append(make([]byte, 4), gw6.AsSlice()...), append([]byte{1, 1}, probeMAC...)...)),
			frame.UDP6(gwMAC, probeMAC, g6, netip.AddrPortFrom(gw6, closed("udp6", "[::1]:0")), payload),
			header.IPv6MinimumSize, 0x86dd},
	} {
		t.Run(c.name, func(t *testing.T) {
			h.guest.Write(link.Frames(c.learn))
			h.sync(t)
			h.guest.Write(link.Frames(c.dgram))
			sent := c.dgram[link.VnetHdrLen+link.EthHdrLen:]
			for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
				n, err := h.guest.Read(h.bufs, h.sizes)
				if err != nil {
					t.Fatal(err)
				}
				for i := 0; i < n; i++ {
					f := h.bufs[i][link.VnetHdrLen : link.VnetHdrLen+h.sizes[i]]
					if binary.BigEndian.Uint16(f[12:]) != c.icmpIP || len(f) < link.EthHdrLen+c.ipLen+8 {
						continue
					}
					msg := f[link.EthHdrLen+c.ipLen:]
					if !(c.name == "ipv4" && msg[0] == 3 && msg[1] == 3) && !(c.name == "ipv6" && msg[0] == 1 && msg[1] == 4) {
						continue
					}
					quote := msg[8:]
					if len(quote) < c.ipLen+header.UDPMinimumSize {
						t.Fatalf("the quote holds %d bytes, want the IP and UDP headers", len(quote))
					}
					if got, want := quote[c.ipLen:c.ipLen+8], sent[c.ipLen:c.ipLen+8]; !bytes.Equal(got, want) {
						t.Fatalf("quoted UDP header % x, the datagram's % x", got, want)
					}
					// Both families: the length field of the
					// quoted IP header is the datagram's.
					var gotLen, wantLen uint16
					if c.name == "ipv4" {
						gotLen, wantLen = header.IPv4(quote).TotalLength(), header.IPv4(sent).TotalLength()
					} else {
						gotLen, wantLen = header.IPv6(quote).PayloadLength(), header.IPv6(sent).PayloadLength()
					}
					if gotLen != wantLen {
						t.Fatalf("quoted IP length %d, the datagram's %d", gotLen, wantLen)
					}
					return
				}
			}
			t.Fatal("no port unreachable")
		})
	}
}
