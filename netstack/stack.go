// Package netstack runs slipway's TCP/IP stack: gVisor's netstack with one
// NIC in promiscuous and spoofing mode, so that it terminates every flow a
// guest opens whatever its destination, plus the servers that listen on the
// gateway's addresses (DHCP, DNS).
package netstack

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"

	"github.com/slipway-net/slipway/link"
	"gvisor.dev/gvisor/pkg/waiter"
)

// nicID is the stack's only NIC.
const nicID tcpip.NICID = 1

// Options configures a Stack.
type Options struct {
	// MTU of the NIC (the guest link's MTU).
	MTU int
	// MAC is the gateway's Ethernet address.
	MAC net.HardwareAddr
	// Addresses the stack owns (gateway, DNS), each with its prefix; the
	// first IPv4 one is the source of broadcasts.
	Addresses []netip.Prefix
	// Output receives the stack's outbound frames (header+frame each);
	// it must be done with them when it returns.
	Output func(frames [][]byte)
	// Intercept, if set, sees every valid inbound IP frame first and
	// returns true when it took the frame (the stack then never sees it).
	// It must not keep buf.
	Intercept func(buf []byte) bool
	// IPv6 enables the IPv6 protocol.
	IPv6   bool
	Logger *slog.Logger
}

// Stack is a gVisor network stack attached to slipway's switch.
type Stack struct {
	s         *stack.Stack
	ep        *endpoint
	intercept func([]byte) bool
	drops     DropCounters
	log       *slog.Logger
	// own are the IPv4 addresses the stack answers ARP for. With
	// spoofing on, gVisor would answer for every address, and so claim
	// other guests' addresses: guest-to-guest traffic would reach the
	// stack instead of the other guest, and DHCP clients probing their
	// new address would find it taken.
	own [][4]byte
}

// New creates the stack, its NIC, addresses and routes, tuned for bulk
// throughput (SACK, large auto-tuned buffers, CUBIC).
func New(o Options) (*Stack, error) {
	if o.Output == nil {
		return nil, errors.New("netstack: Output is required")
	}
	if len(o.MAC) != 6 {
		return nil, fmt.Errorf("netstack: MAC %v is not an Ethernet address", o.MAC)
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	netProtos := []stack.NetworkProtocolFactory{ipv4.NewProtocol, arp.NewProtocol}
	transProtos := []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol4}
	if o.IPv6 {
		netProtos = append(netProtos, ipv6.NewProtocol)
		transProtos = append(transProtos, icmp.NewProtocol6)
	}
	s := stack.New(stack.Options{
		NetworkProtocols:   netProtos,
		TransportProtocols: transProtos,
		HandleLocal:        false,
	})
	st := &Stack{s: s, intercept: o.Intercept, log: log}
	st.ep = newEndpoint(uint32(o.MTU), tcpip.LinkAddress(o.MAC), o.Output, &st.drops)
	if err := tune(s); err != nil {
		s.Destroy()
		return nil, err
	}
	if terr := s.CreateNICWithOptions(nicID, st.ep, stack.NICOptions{Name: "slipway0"}); terr != nil {
		s.Destroy()
		return nil, fmt.Errorf("netstack: create NIC: %s", terr)
	}
	// Promiscuous: accept packets for any destination address, so every
	// guest flow reaches the forwarders. Spoofing: answer from any address.
	if terr := s.SetPromiscuousMode(nicID, true); terr != nil {
		s.Destroy()
		return nil, fmt.Errorf("netstack: promiscuous mode: %s", terr)
	}
	if terr := s.SetSpoofing(nicID, true); terr != nil {
		s.Destroy()
		return nil, fmt.Errorf("netstack: spoofing: %s", terr)
	}
	var routes []tcpip.Route
	for _, p := range o.Addresses {
		if p.Addr().Is4() {
			st.own = append(st.own, p.Addr().As4())
		}
		proto := ipv4.ProtocolNumber
		if p.Addr().Is6() {
			proto = ipv6.ProtocolNumber
		}
		pa := tcpip.ProtocolAddress{
			Protocol:          proto,
			AddressWithPrefix: tcpip.AddrFromSlice(p.Addr().AsSlice()).WithPrefix(),
		}
		pa.AddressWithPrefix.PrefixLen = p.Bits()
		if terr := s.AddProtocolAddress(nicID, pa, stack.AddressProperties{}); terr != nil {
			s.Destroy()
			return nil, fmt.Errorf("netstack: add address %s: %s", p, terr)
		}
	}
	// Everything is on-link: guests are reached by ARP/NDP on the one NIC,
	// whatever address they use.
	routes = append(routes, tcpip.Route{Destination: header.IPv4EmptySubnet, NIC: nicID})
	if o.IPv6 {
		routes = append(routes, tcpip.Route{Destination: header.IPv6EmptySubnet, NIC: nicID})
	}
	s.SetRouteTable(routes)
	return st, nil
}

func tune(s *stack.Stack) error {
	opts := []tcpip.SettableTransportProtocolOption{
		func() *tcpip.TCPSACKEnabled { v := tcpip.TCPSACKEnabled(true); return &v }(),
		&tcpip.TCPReceiveBufferSizeRangeOption{Min: 4 << 10, Default: 1 << 20, Max: 8 << 20},
		&tcpip.TCPSendBufferSizeRangeOption{Min: 4 << 10, Default: 1 << 20, Max: 8 << 20},
		func() *tcpip.TCPModerateReceiveBufferOption {
			v := tcpip.TCPModerateReceiveBufferOption(true)
			return &v
		}(),
		func() *tcpip.CongestionControlOption { v := tcpip.CongestionControlOption("cubic"); return &v }(),
		func() *tcpip.TCPTimeWaitTimeoutOption {
			v := tcpip.TCPTimeWaitTimeoutOption(15_000_000_000)
			return &v
		}(),
	}
	for _, o := range opts {
		if terr := s.SetTransportProtocolOption(tcp.ProtocolNumber, o); terr != nil {
			return fmt.Errorf("netstack: TCP option %T: %s", o, terr)
		}
	}
	return nil
}

// Deliver hands frames from the switch to the stack; each is header+frame of
// exact length. It validates each frame, offers IP frames to the
// interceptor, and copies the rest into the stack.
func (st *Stack) Deliver(frames [][]byte) {
	for _, buf := range frames {
		proto, ok := st.drops.validateFrame(buf)
		if !ok {
			continue
		}
		if proto == header.ARPProtocolNumber && !st.arpForUs(buf[link.VnetHdrLen+header.EthernetMinimumSize:]) {
			st.drops.ARPNotOurs.Add(1)
			continue
		}
		if st.intercept != nil && proto != header.ARPProtocolNumber && st.intercept(buf) {
			st.drops.Intercepted.Add(1)
			continue
		}
		st.ep.deliver(proto, buf[12:])
	}
}

// arpForUs reports whether an ARP packet (already validated) is a reply,
// or a request for one of the stack's own addresses.
func (st *Stack) arpForUs(pkt []byte) bool {
	a := header.ARP(pkt)
	if a.Op() != header.ARPRequest {
		return true
	}
	target := [4]byte(a.ProtocolAddressTarget())
	for _, own := range st.own {
		if own == target {
			return true
		}
	}
	return false
}

// SetIntercept installs the interceptor (see Options.Intercept). Call it
// before any link delivers frames.
func (st *Stack) SetIntercept(f func(buf []byte) bool) { st.intercept = f }

// Drops returns the counters of frames dropped at the stack's input.
func (st *Stack) Drops() *DropCounters { return &st.drops }

// Gvisor returns the underlying gVisor stack, for the forwarders.
func (st *Stack) Gvisor() *stack.Stack { return st.s }

// SetTCPForwarder routes every inbound TCP SYN with no listener to h, with
// at most maxInFlight handshakes pending at once. accept, if set, is asked
// first: a flow it refuses is answered with a RST at once.
func (st *Stack) SetTCPForwarder(maxInFlight int, accept func(stack.TransportEndpointID) bool, h func(*tcp.ForwarderRequest)) {
	fwd := tcp.NewForwarder(st.s, 0, maxInFlight, h)
	st.s.SetTransportProtocolHandler(tcp.ProtocolNumber, func(id stack.TransportEndpointID, pkt *stack.PacketBuffer) bool {
		if accept != nil && !accept(id) {
			return false // the stack answers with a RST
		}
		return fwd.HandlePacket(id, pkt)
	})
}

// SetUDPForwarder routes every UDP datagram with no bound endpoint to h;
// when h returns false the stack answers with ICMP port unreachable.
func (st *Stack) SetUDPForwarder(h func(*udp.ForwarderRequest) bool) {
	fwd := udp.NewForwarder(st.s, h)
	st.s.SetTransportProtocolHandler(udp.ProtocolNumber, fwd.HandlePacket)
}

// ListenUDP binds a UDP endpoint in the stack. An unspecified address binds
// all of the stack's addresses; broadcast sending is allowed (DHCP).
func (st *Stack) ListenUDP(addr netip.AddrPort) (*gonet.UDPConn, error) {
	proto := ipv4.ProtocolNumber
	if addr.Addr().Is6() {
		proto = ipv6.ProtocolNumber
	}
	var wq waiter.Queue
	ep, terr := st.s.NewEndpoint(udp.ProtocolNumber, proto, &wq)
	if terr != nil {
		return nil, fmt.Errorf("netstack: UDP endpoint: %s", terr)
	}
	ep.SocketOptions().SetBroadcast(true)
	fa := tcpip.FullAddress{NIC: nicID, Port: addr.Port()}
	if !addr.Addr().IsUnspecified() {
		fa.Addr = tcpip.AddrFromSlice(addr.Addr().AsSlice())
	}
	if terr := ep.Bind(fa); terr != nil {
		ep.Close()
		return nil, fmt.Errorf("netstack: bind UDP %s: %s", addr, terr)
	}
	return gonet.NewUDPConn(&wq, ep), nil
}

// ListenTCP listens on a TCP address in the stack.
func (st *Stack) ListenTCP(addr netip.AddrPort) (*gonet.TCPListener, error) {
	proto := ipv4.ProtocolNumber
	if addr.Addr().Is6() {
		proto = ipv6.ProtocolNumber
	}
	l, err := gonet.ListenTCP(st.s, tcpip.FullAddress{NIC: nicID, Addr: tcpip.AddrFromSlice(addr.Addr().AsSlice()), Port: addr.Port()}, proto)
	if err != nil {
		return nil, fmt.Errorf("netstack: listen TCP %s: %w", addr, err)
	}
	return l, nil
}

// Close tears the stack down, closing every endpoint.
func (st *Stack) Close() {
	st.s.Close()
	st.s.Wait()
}
