package guestpeer

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/link/ethernet"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"

	"github.com/slipway-net/slipway/internal/frame"
	"github.com/slipway-net/slipway/link"
)

// Guest is a VM's network side: a MAC address on a Wire, and after Up a
// TCP/IP stack.
type Guest struct {
	MAC  net.HardwareAddr
	wire Wire
	// off is the wire as an OffloadWire when the guest offloads.
	off OffloadWire

	raw chan []byte // frames for the DHCP client, until Up

	mu    sync.Mutex
	ep    *channel.Endpoint // nil until Up
	st    *stack.Stack
	seen  map[[6]byte]int // unicast destinations of frames received
	rxErr error

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New starts a guest with mac on w. It is stopped when the test ends.
func New(t testing.TB, w Wire, mac string) *Guest {
	t.Helper()
	g := newGuest(t, w, mac)
	g.start(t)
	return g
}

func newGuest(t testing.TB, w Wire, mac string) *Guest {
	t.Helper()
	hw, err := net.ParseMAC(mac)
	if err != nil {
		t.Fatal(err)
	}
	g := &Guest{MAC: hw, wire: w, raw: make(chan []byte, 256), seen: map[[6]byte]int{}}
	g.ctx, g.cancel = context.WithCancel(context.Background())
	return g
}

func (g *Guest) start(t testing.TB) {
	g.wg.Add(1)
	go g.receive()
	t.Cleanup(g.Close)
}

// OffloadWire is a Wire that carries each frame's virtio-net header (12
// bytes), as virtio-net does: partial checksums and TCP super-frames.
type OffloadWire interface {
	Wire
	SendOffload(hdr, frame []byte) error
	RecvOffload(buf []byte) ([12]byte, int, error)
}

// NewOffloading starts a guest whose stack offloads as a Linux virtio-net
// guest does: it sends TCP super-frames with partial checksums (GSO up
// to 64 KiB) and takes frames whose checksums are partial, trusting
// every checksum it receives (the virtio-net device vouches for them).
func NewOffloading(t testing.TB, w OffloadWire, mac string) *Guest {
	g := newGuest(t, w, mac)
	g.off = w
	g.start(t)
	return g
}

// Close stops the guest and closes its wire.
func (g *Guest) Close() {
	g.cancel()
	g.wire.Close()
	g.wg.Wait()
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.st != nil {
		g.st.Close()
		g.st = nil
	}
}

// receive takes frames off the wire: to the DHCP client before Up, to the
// stack after.
func (g *Guest) receive() {
	defer g.wg.Done()
	buf := make([]byte, MaxFrame)
	for {
		var n int
		var err error
		if g.off != nil {
			_, n, err = g.off.RecvOffload(buf)
		} else {
			n, err = g.wire.Recv(buf)
		}
		if err != nil {
			g.mu.Lock()
			g.rxErr = err
			g.mu.Unlock()
			close(g.raw)
			return
		}
		if n < header.EthernetMinimumSize {
			continue
		}
		frame := bytes.Clone(buf[:n])
		var dst [6]byte
		copy(dst[:], frame)
		g.mu.Lock()
		if dst[0]&1 == 0 {
			g.seen[dst]++
		}
		ep := g.ep
		g.mu.Unlock()
		if ep == nil {
			select {
			case g.raw <- frame:
			default: // nobody is waiting for it
			}
			continue
		}
		pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(frame)})
		ep.InjectInbound(0, pkt)
		pkt.DecRef()
	}
}

// SeenUnicastTo counts received frames addressed to mac: a guest that is
// neither end of a conversation should see none of it.
func (g *Guest) SeenUnicastTo(mac net.HardwareAddr) int {
	var k [6]byte
	copy(k[:], mac)
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.seen[k]
}

// Lease is what DHCP gave the guest.
type Lease struct {
	IP     netip.Addr
	Prefix int
	Router netip.Addr
	DNS    netip.Addr
	Server netip.Addr
	MTU    int
}

// DHCP takes a lease with DISCOVER, OFFER, REQUEST, ACK, resending until
// ctx ends.
func (g *Guest) DHCP(ctx context.Context) (Lease, error) {
	xid := rand.Uint32()
	offer, err := g.exchange(ctx, dhcpMessage(g.MAC, xid, dhcpDiscover, netip.Addr{}, netip.Addr{}), xid, dhcpOffer)
	if err != nil {
		return Lease{}, fmt.Errorf("discover: %w", err)
	}
	ack, err := g.exchange(ctx, dhcpMessage(g.MAC, xid, dhcpRequest, offer.IP, offer.Server), xid, dhcpAck)
	if err != nil {
		return Lease{}, fmt.Errorf("request: %w", err)
	}
	return ack, nil
}

func (g *Guest) exchange(ctx context.Context, msg []byte, xid uint32, want byte) (Lease, error) {
	resend := time.NewTicker(time.Second)
	defer resend.Stop()
	for {
		if err := g.wire.Send(msg); err != nil {
			return Lease{}, err
		}
	wait:
		for {
			select {
			case frame, ok := <-g.raw:
				if !ok {
					return Lease{}, fmt.Errorf("wire closed: %w", g.rxError())
				}
				l, typ, ok := parseDHCPReply(frame, xid)
				if !ok {
					continue
				}
				if typ == dhcpNak {
					return Lease{}, errors.New("server sent DHCPNAK")
				}
				if typ == want {
					return l, nil
				}
			case <-resend.C:
				break wait
			case <-ctx.Done():
				return Lease{}, ctx.Err()
			}
		}
	}
}

func (g *Guest) rxError() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.rxErr
}

// Online takes a lease within 30 seconds and brings the stack up on it.
func (g *Guest) Online() (Lease, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := g.DHCP(ctx)
	if err != nil {
		return l, fmt.Errorf("guest %s: DHCP: %w", g.MAC, err)
	}
	return l, g.Up(l)
}

// Up starts the guest's TCP/IP stack on the leased address, with a
// default route through the lease's router and the lease's MTU.
func (g *Guest) Up(l Lease) error {
	mtu := l.MTU
	if mtu == 0 {
		mtu = 1500
	}
	st := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, arp.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol4},
	})
	ep := channel.New(1024, uint32(mtu+header.EthernetMinimumSize), tcpip.LinkAddress(g.MAC))
	var nic stack.LinkEndpoint = ep
	if g.off != nil {
		ep.LinkEPCapabilities |= stack.CapabilityRXChecksumOffload
		ep.SupportedGSOKind = stack.HostGSOSupported
		nic = gsoEndpoint{ep}
	}
	if err := st.CreateNIC(1, ethernet.New(nic)); err != nil {
		return fmt.Errorf("create NIC: %s", err)
	}
	addr := tcpip.ProtocolAddress{Protocol: ipv4.ProtocolNumber, AddressWithPrefix: tcpip.AddressWithPrefix{
		Address: tcpip.AddrFrom4(l.IP.As4()), PrefixLen: l.Prefix}}
	if err := st.AddProtocolAddress(1, addr, stack.AddressProperties{}); err != nil {
		return fmt.Errorf("add address: %s", err)
	}
	st.SetRouteTable([]tcpip.Route{
		{Destination: addr.AddressWithPrefix.Subnet(), NIC: 1},
		{Destination: header.IPv4EmptySubnet, Gateway: tcpip.AddrFrom4(l.Router.As4()), NIC: 1},
	})
	g.mu.Lock()
	g.st, g.ep = st, ep
	g.mu.Unlock()
	g.wg.Add(1)
	go g.transmit(ep)
	return nil
}

// transmit sends the stack's frames out on the wire.
func (g *Guest) transmit(ep *channel.Endpoint) {
	defer g.wg.Done()
	for {
		pkt := ep.ReadContext(g.ctx)
		if pkt == nil {
			return
		}
		var hdr []byte
		if g.off != nil {
			hdr = vnetHeader(pkt)
		}
		buf := pkt.ToBuffer()
		frame := buf.Flatten()
		buf.Release()
		pkt.DecRef()
		var err error
		if g.off != nil {
			err = g.off.SendOffload(hdr, frame)
		} else {
			err = g.wire.Send(frame)
		}
		if err != nil && errClosed(err) {
			return
		}
	}
}

// gsoEndpoint lets the guest's TCP build super-frames of up to 64 KiB,
// as a Linux virtio-net guest with TSO does (the channel endpoint's own
// limit is 32 KiB).
type gsoEndpoint struct{ *channel.Endpoint }

func (gsoEndpoint) GSOMaxSize() uint32 { return 65000 }

// vnetHeader is the virtio-net header for one of the guest's packets: a
// TCP packet's checksum is partial (gVisor left only the pseudo-header's
// sum in it), and one larger than the MSS is a super-frame.
func vnetHeader(pkt *stack.PacketBuffer) []byte {
	hdr := make([]byte, 12)
	g := pkt.GSOOptions
	if g.Type == stack.GSONone || !g.NeedsCsum {
		return hdr
	}
	hdr[0] = 1 // NEEDS_CSUM
	start := header.EthernetMinimumSize + int(g.L3HdrLen)
	binary.LittleEndian.PutUint16(hdr[2:], uint16(pkt.HeaderSize()))
	binary.LittleEndian.PutUint16(hdr[6:], uint16(start))
	binary.LittleEndian.PutUint16(hdr[8:], g.CsumOffset)
	if pkt.Data().Size() > int(g.MSS) {
		switch g.Type {
		case stack.GSOTCPv4:
			hdr[1] = 1
		case stack.GSOTCPv6:
			hdr[1] = 4
		}
		binary.LittleEndian.PutUint16(hdr[4:], g.MSS)
	}
	return hdr
}

// Addr is the guest's address once Up.
func (g *Guest) Addr() (netip.Addr, bool) {
	g.mu.Lock()
	st := g.st
	g.mu.Unlock()
	if st == nil {
		return netip.Addr{}, false
	}
	a, err := st.GetMainNICAddress(1, ipv4.ProtocolNumber)
	if err != nil {
		return netip.Addr{}, false
	}
	return netip.AddrFrom4(a.Address.As4()), true
}

func fullAddr(ap netip.AddrPort) tcpip.FullAddress {
	return tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFrom4(ap.Addr().As4()), Port: ap.Port()}
}

// Dial opens a TCP connection from the guest.
func (g *Guest) Dial(ctx context.Context, to netip.AddrPort) (net.Conn, error) {
	return gonet.DialContextTCP(ctx, g.st, fullAddr(to), ipv4.ProtocolNumber)
}

// DialUDP opens a connected UDP socket from the guest.
func (g *Guest) DialUDP(to netip.AddrPort) (net.Conn, error) {
	return gonet.DialUDP(g.st, nil, &tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFrom4(to.Addr().As4()), Port: to.Port()}, ipv4.ProtocolNumber)
}

// Listen accepts TCP connections on the guest's port.
func (g *Guest) Listen(port uint16) (net.Listener, error) {
	return gonet.ListenTCP(g.st, tcpip.FullAddress{NIC: 1, Port: port}, ipv4.ProtocolNumber)
}

// Get downloads url (http://IP:PORT/...) from inside the guest.
func (g *Guest) Get(ctx context.Context, url string) ([]byte, error) {
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			host, port, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			ip, err := netip.ParseAddr(host)
			if err != nil {
				return nil, err
			}
			p, err := strconv.ParseUint(port, 10, 16)
			if err != nil {
				return nil, err
			}
			return g.Dial(ctx, netip.AddrPortFrom(ip, uint16(p)))
		},
		DisableKeepAlives: true,
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return io.ReadAll(resp.Body)
}

// DHCP message types and the parts of RFC 2131/2132 the client uses.
const (
	dhcpDiscover = 1
	dhcpOffer    = 2
	dhcpRequest  = 3
	dhcpAck      = 5
	dhcpNak      = 6

	bootpSize = 236
)

var dhcpCookie = []byte{99, 130, 83, 99}

// dhcpMessage builds a client message as a complete Ethernet frame, from
// 0.0.0.0:68 to the broadcast address :67.
func dhcpMessage(mac net.HardwareAddr, xid uint32, typ byte, requested, server netip.Addr) []byte {
	m := make([]byte, bootpSize)
	m[0], m[1], m[2] = 1, 1, 6 // BOOTREQUEST, Ethernet, 6-byte address
	binary.BigEndian.PutUint32(m[4:], xid)
	copy(m[28:], mac)
	m = append(m, dhcpCookie...)
	m = append(m, 53, 1, typ)
	m = append(m, 55, 4, 1, 3, 6, 26) // mask, router, DNS, MTU
	if requested.IsValid() {
		m = append(m, 50, 4)
		m = append(m, requested.AsSlice()...)
	}
	if server.IsValid() {
		m = append(m, 54, 4)
		m = append(m, server.AsSlice()...)
	}
	m = append(m, 255)
	return udpFrame(mac, m)
}

// udpFrame wraps a DHCP payload in UDP, IPv4 and Ethernet headers.
func udpFrame(mac net.HardwareAddr, payload []byte) []byte {
	from := netip.AddrPortFrom(netip.IPv4Unspecified(), 68)
	to := netip.AddrPortFrom(netip.AddrFrom4([4]byte{255, 255, 255, 255}), 67)
	return frame.UDP4(frame.Broadcast(), mac, from, to, payload)[link.VnetHdrLen:]
}

// parseDHCPReply reads a server reply for xid out of a frame.
func parseDHCPReply(frame []byte, xid uint32) (Lease, byte, bool) {
	eth := header.Ethernet(frame)
	if eth.Type() != ipv4.ProtocolNumber {
		return Lease{}, 0, false
	}
	ip := header.IPv4(frame[header.EthernetMinimumSize:])
	if len(ip) < header.IPv4MinimumSize || ip.TransportProtocol() != header.UDPProtocolNumber || int(ip.HeaderLength()) > len(ip) {
		return Lease{}, 0, false
	}
	u := header.UDP(ip[ip.HeaderLength():])
	if len(u) < header.UDPMinimumSize || u.DestinationPort() != 68 {
		return Lease{}, 0, false
	}
	m := u[header.UDPMinimumSize:]
	if len(m) < bootpSize+4 || m[0] != 2 || binary.BigEndian.Uint32(m[4:]) != xid || !bytes.Equal(m[bootpSize:bootpSize+4], dhcpCookie) {
		return Lease{}, 0, false
	}
	l := Lease{IP: netip.AddrFrom4([4]byte(m[16:20]))}
	var typ byte
	opts := m[bootpSize+4:]
	for len(opts) > 0 && opts[0] != 255 {
		if opts[0] == 0 {
			opts = opts[1:]
			continue
		}
		if len(opts) < 2 || len(opts) < 2+int(opts[1]) {
			break
		}
		code, val := opts[0], opts[2:2+int(opts[1])]
		opts = opts[2+int(opts[1]):]
		addr := func() netip.Addr {
			if len(val) < 4 {
				return netip.Addr{}
			}
			return netip.AddrFrom4([4]byte(val[:4]))
		}
		switch code {
		case 53:
			if len(val) == 1 {
				typ = val[0]
			}
		case 1:
			if len(val) == 4 {
				l.Prefix, _ = net.IPMask(val).Size()
			}
		case 3:
			l.Router = addr()
		case 6:
			l.DNS = addr()
		case 54:
			l.Server = addr()
		case 26:
			if len(val) == 2 {
				l.MTU = int(binary.BigEndian.Uint16(val))
			}
		}
	}
	return l, typ, typ != 0
}
