// Package netstack runs slipway's TCP/IP stack: gVisor's netstack with one
// NIC in promiscuous and spoofing mode, so that it terminates every flow a
// guest opens whatever its destination, plus the servers that listen on the
// gateway's addresses (DHCP, DNS).
package netstack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/slipway-net/slipway/internal/frame"
	gvlog "gvisor.dev/gvisor/pkg/log"
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
	// Output receives the stack's outbound frames.
	Output Output
	// Interceptors see every valid inbound IP frame, in order, before the
	// stack; the first that returns true took the frame (the stack never
	// sees it). They must not keep the view's slices.
	Interceptors []Interceptor
	// IPv6 enables the IPv6 protocol.
	IPv6 bool
	// ProxyNeighbors are prefixes whose every address the stack answers
	// ARP requests and neighbour solicitations for, but NotProxied: where
	// the guest's network is the host's (pasta's model), its neighbours
	// are reached through slipway, which must stand in for each of them.
	ProxyNeighbors []netip.Prefix
	// NotProxied are the guests' own addresses inside ProxyNeighbors.
	NotProxied []netip.Addr
	Logger     *slog.Logger
}

// Interceptor takes inbound frames meant for something other than the
// stack (router solicitations, echo requests to the outside); true means
// it took the frame.
type Interceptor func(v *frame.View) bool

// Stack is a gVisor network stack attached to slipway's switch.
type Stack struct {
	s            *stack.Stack
	ep           *endpoint
	interceptors []Interceptor
	drops        DropCounters
	// own holds the stack's addresses (as 4- or 16-byte strings): the
	// only targets of ARP requests and neighbour solicitations it may
	// answer (see ownsTarget). Replaced whole by AddAddress, never
	// changed in place, so Deliver reads it without a lock.
	own   atomic.Pointer[map[string]bool]
	ownMu sync.Mutex // serialises AddAddress
	// proxy and notProxied are Options.ProxyNeighbors and NotProxied.
	proxy      []netip.Prefix
	notProxied []netip.Addr
	log        *slog.Logger
}

// New creates the stack, its NIC, addresses and routes, tuned for bulk
// throughput (SACK, large fixed buffers, CUBIC).
func New(o Options) (*Stack, error) {
	if o.Output == nil {
		return nil, errors.New("netstack: Output is required")
	}
	if len(o.MAC) != 6 {
		return nil, fmt.Errorf("netstack: MAC %v is not an Ethernet address", o.MAC)
	}
	// gVisor logs some guest-caused events itself, on stderr and at info
	// level ("Martian packet dropped ..." for every forged source): a
	// guest must not be able to write to the user's terminal. Its
	// counters (Refusals) have them. The level is gVisor's one global
	// setting; every stack wants the same.
	gvlog.SetLevel(gvlog.Warning)
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	netProtos := []stack.NetworkProtocolFactory{ipv4.NewProtocol, arp.NewProtocol}
	transProtos := []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol4}
	if o.IPv6 {
		// slipway is the router: it sends its own router advertisements
		// (services), never acts on a guest's, and owns its addresses
		// outright (no DAD delay, no MLD or solicitations of its own).
		netProtos = append(netProtos, ipv6.NewProtocolWithOptions(ipv6.Options{
			NDPConfigs: ipv6.NDPConfigurations{
				HandleRAs:           ipv6.HandlingRAsDisabled,
				MaxRtrSolicitations: 0,
			},
			AutoGenLinkLocal: false,
			DADConfigs:       stack.DADConfigurations{DupAddrDetectTransmits: 0},
			MLD:              ipv6.MLDOptions{Enabled: false},
		}))
		transProtos = append(transProtos, icmp.NewProtocol6)
	}
	s := stack.New(stack.Options{
		NetworkProtocols:   netProtos,
		TransportProtocols: transProtos,
		HandleLocal:        false,
	})
	st := &Stack{s: s, interceptors: o.Interceptors, log: log, proxy: o.ProxyNeighbors, notProxied: o.NotProxied}
	own := map[string]bool{}
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
	st.own.Store(&own)
	var routes []tcpip.Route
	for _, p := range o.Addresses {
		proto := netProto(p.Addr())
		pa := tcpip.ProtocolAddress{
			Protocol:          proto,
			AddressWithPrefix: tcpip.AddrFromSlice(p.Addr().AsSlice()).WithPrefix(),
		}
		pa.AddressWithPrefix.PrefixLen = p.Bits()
		own[string(p.Addr().AsSlice())] = true
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

// timeWait is how long the stack keeps a connection it closed first in
// TIME-WAIT: not at all. gVisor drops a new SYN for a 4-tuple in TIME-WAIT
// unless a listener owns the port, and the forwarder's connections have
// none, so a guest reusing its port (Linux cycles through them within
// seconds at a thousand connections a second) stalled for the whole
// TIME-WAIT; connection rates collapsed to tens a second. On a direct
// virtual link there are no old duplicates to wait out, and a lost final
// ACK only draws a RST for the guest's resent FIN.
const timeWait = 0

func tune(s *stack.Stack) error {
	opts := []tcpip.SettableTransportProtocolOption{
		func() *tcpip.TCPSACKEnabled { v := tcpip.TCPSACKEnabled(true); return &v }(),
		&tcpip.TCPReceiveBufferSizeRangeOption{Min: 4 << 10, Default: 1 << 20, Max: 8 << 20},
		&tcpip.TCPSendBufferSizeRangeOption{Min: 4 << 10, Default: 1 << 20, Max: 8 << 20},
		// No receive buffer auto-tuning: with it the window scale is
		// sized for the largest buffer and the advertised window never
		// reaches its cap, so it changes with every ACK; the TCP pump
		// sizes each flow's buffer to keep it constant instead
		// (flow.PumpTCP).
		func() *tcpip.TCPModerateReceiveBufferOption {
			v := tcpip.TCPModerateReceiveBufferOption(false)
			return &v
		}(),
		func() *tcpip.CongestionControlOption { v := tcpip.CongestionControlOption("cubic"); return &v }(),
		func() *tcpip.TCPTimeWaitTimeoutOption {
			v := tcpip.TCPTimeWaitTimeoutOption(timeWait)
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

// Deliver hands frames from the switch to the stack, as the views the
// switch parsed them into. It validates each frame, offers IP frames to
// the interceptors, and copies the rest into the stack.
func (st *Stack) Deliver(views []frame.View) {
	for i := range views {
		v := &views[i]
		if !st.drops.validate(v) {
			continue
		}
		if !st.ownsTarget(v) {
			st.drops.NotOurs.Add(1)
			continue
		}
		if v.EtherType != header.ARPProtocolNumber && st.intercepted(v) {
			st.drops.Intercepted.Add(1)
			continue
		}
		st.retireForSYN(v)
		st.ep.deliver(v.EtherType, v.Eth)
	}
}

func (st *Stack) intercepted(v *frame.View) bool {
	for _, take := range st.interceptors {
		if take(v) {
			return true
		}
	}
	return false
}

// SetInterceptors installs the interceptors (see Options.Interceptors).
// Call it before any link delivers frames.
func (st *Stack) SetInterceptors(in ...Interceptor) { st.interceptors = in }

// retireForSYN makes way for a guest's new connection from the 4-tuple of
// one the stack has not let go of yet. A guest sends a SYN from a tuple
// only once its side of the old connection is over, which also means its
// last ACK was sent before the SYN; but the stack may still hold the old
// endpoint: in LAST-ACK or CLOSING with that ACK queued and unprocessed
// (both came in one batch), or in TIME-WAIT until its timer (timeWait)
// has run. gVisor then demultiplexes the SYN to the old endpoint, never
// to the forwarder, which is no endpoint: once the queued ACK closes the
// old endpoint, gVisor finds no listener to pass the SYN to and answers
// it with a RST (the guest's connect is refused); in TIME-WAIT it drops
// it (the guest's connect stalls for a second). So the old endpoint is
// aborted first, which unregisters it at once, and the SYN reaches the
// forwarder. The abort's RST carries the old connection's numbers, which
// the guest's new socket (SYN-SENT) ignores. An endpoint still holding
// bytes the guest sent, not yet read by its owner, is left alone: those
// bytes are worth more than the reconnect.
func (st *Stack) retireForSYN(v *frame.View) {
	if v.Proto != header.TCPProtocolNumber || v.Fragment || v.L4Off == 0 {
		return
	}
	// validate checked the TCP header's length.
	seg := header.TCP(v.L4())
	if seg.Flags()&(header.TCPFlagSyn|header.TCPFlagAck|header.TCPFlagRst|header.TCPFlagFin) != header.TCPFlagSyn {
		return
	}
	id := stack.TransportEndpointID{
		LocalPort: seg.DestinationPort(), LocalAddress: tcpipAddr(v.Dst),
		RemotePort: seg.SourcePort(), RemoteAddress: tcpipAddr(v.Src),
	}
	ep, ok := st.s.FindTransportEndpoint(v.EtherType, header.TCPProtocolNumber, id, nicID).(tcpip.Endpoint)
	if !ok {
		return
	}
	switch tcp.EndpointState(ep.State()) {
	case tcp.StateLastAck, tcp.StateClosing, tcp.StateTimeWait:
		if unread, terr := ep.GetSockOptInt(tcpip.ReceiveQueueSizeOption); terr == nil && unread == 0 {
			ep.Abort()
		}
	}
}

// ownsTarget filters address resolution: with spoofing on, gVisor would
// answer ARP requests and neighbour solicitations for every address, taking
// other guests' addresses and failing their duplicate address detection.
// Only requests for the stack's own addresses reach it (as libslirp does).
func (st *Stack) ownsTarget(v *frame.View) bool {
	switch v.EtherType {
	case header.ARPProtocolNumber:
		a := header.ARP(v.L3)
		if a.Op() != header.ARPRequest {
			return true
		}
		return st.answers(a.ProtocolAddressTarget())
	case header.IPv6ProtocolNumber:
		t, ok := v.ICMPType()
		if !ok || t != uint8(header.ICMPv6NeighborSolicit) {
			return true
		}
		icmp := header.ICMPv6(v.L4())
		if len(icmp) < header.ICMPv6NeighborSolicitMinimumSize {
			return false // too short to say whom it asks for: not ours
		}
		target := header.NDPNeighborSolicit(icmp.MessageBody()).TargetAddress()
		return st.answers(target.AsSlice())
	}
	return true
}

// netProto is gVisor's network protocol of a's family.
func netProto(a netip.Addr) tcpip.NetworkProtocolNumber {
	if a.Is6() {
		return ipv6.ProtocolNumber
	}
	return ipv4.ProtocolNumber
}

// answers reports whether the stack answers address resolution for the
// address in b: its own, and those it stands in for.
func (st *Stack) answers(b []byte) bool {
	if (*st.own.Load())[string(b)] {
		return true
	}
	if len(st.proxy) == 0 {
		return false
	}
	a, ok := netip.AddrFromSlice(b)
	if !ok {
		return false
	}
	for _, g := range st.notProxied {
		if a == g {
			return false
		}
	}
	for _, p := range st.proxy {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// JoinGroup makes the stack accept a multicast group (DHCPv6's
// ff02::1:2).
func (st *Stack) JoinGroup(group netip.Addr) error {
	proto := netProto(group)
	if terr := st.s.JoinGroup(proto, nicID, tcpip.AddrFromSlice(group.AsSlice())); terr != nil {
		return fmt.Errorf("netstack: join %s: %s", group, terr)
	}
	return nil
}

// Drops returns the counters of frames dropped at the stack's input.
func (st *Stack) Drops() *DropCounters { return &st.drops }

// Refusals are gVisor's own counts of what it dropped or refused after
// slipway's input checks let a frame through: what is malformed only in
// context (fragments, ARP bodies, ICMP messages, segments of no
// connection), and handshakes beyond the stack's bounds.
type Refusals struct {
	ARPMalformed         uint64 `counter:"arp_malformed"`
	IPMalformed          uint64 `counter:"ip_malformed"`
	FragmentsMalformed   uint64 `counter:"ip_fragments_malformed"`
	InvalidDestination   uint64 `counter:"ip_invalid_destination"`
	InvalidSource        uint64 `counter:"ip_invalid_source"`
	ICMPv4Invalid        uint64 `counter:"icmp4_invalid"`
	ICMPv6Invalid        uint64 `counter:"icmp6_invalid"`
	TCPInvalidSegments   uint64 `counter:"tcp_invalid_segments"`
	TCPChecksumErrors    uint64 `counter:"tcp_checksum_errors"`
	TCPHandshakesDropped uint64 `counter:"tcp_handshakes_dropped"`
	UDPMalformed         uint64 `counter:"udp_malformed"`
	UDPChecksumErrors    uint64 `counter:"udp_checksum_errors"`
	UDPReceiveBuffer     uint64 `counter:"udp_receive_buffer_full"`
}

// Refusals reads gVisor's counters.
func (st *Stack) Refusals() Refusals {
	s := st.s.Stats()
	return Refusals{
		ARPMalformed:       s.ARP.MalformedPacketsReceived.Value(),
		IPMalformed:        s.IP.MalformedPacketsReceived.Value(),
		FragmentsMalformed: s.IP.MalformedFragmentsReceived.Value(),
		InvalidDestination: s.IP.InvalidDestinationAddressesReceived.Value(),
		InvalidSource:      s.IP.InvalidSourceAddressesReceived.Value(),
		ICMPv4Invalid:      s.ICMP.V4.PacketsReceived.Invalid.Value(),
		ICMPv6Invalid:      s.ICMP.V6.PacketsReceived.Invalid.Value(),
		TCPInvalidSegments: s.TCP.InvalidSegmentsReceived.Value(),
		TCPChecksumErrors:  s.TCP.ChecksumErrors.Value(),
		// SYNs beyond the forwarder's handshakes in progress
		// (MaxPendingConnects) and beyond a listener's backlog.
		TCPHandshakesDropped: s.TCP.ForwardMaxInFlightDrop.Value() + s.TCP.ListenOverflowSynDrop.Value(),
		UDPMalformed:         s.UDP.MalformedPacketsReceived.Value(),
		UDPChecksumErrors:    s.UDP.ChecksumErrors.Value(),
		UDPReceiveBuffer:     s.UDP.ReceiveBufferErrors.Value(),
	}
}

// NewTCPEndpoint opens a TCP endpoint of the stack, IPv4 or IPv6 as v6
// says, for a connection slipway itself opens towards a guest.
func (st *Stack) NewTCPEndpoint(v6 bool, wq *waiter.Queue) (tcpip.Endpoint, error) {
	return st.newEndpoint(tcp.ProtocolNumber, v6, wq)
}

// NewUDPEndpoint opens a UDP endpoint of the stack, IPv4 or IPv6 as v6
// says.
func (st *Stack) NewUDPEndpoint(v6 bool, wq *waiter.Queue) (tcpip.Endpoint, error) {
	return st.newEndpoint(udp.ProtocolNumber, v6, wq)
}

func (st *Stack) newEndpoint(proto tcpip.TransportProtocolNumber, v6 bool, wq *waiter.Queue) (tcpip.Endpoint, error) {
	netProto := ipv4.ProtocolNumber
	if v6 {
		netProto = ipv6.ProtocolNumber
	}
	ep, terr := st.s.NewEndpoint(proto, netProto, wq)
	if terr != nil {
		return nil, fmt.Errorf("netstack: new endpoint: %s", terr)
	}
	return ep, nil
}

// MAC is the stack's own Ethernet address (the gateway's).
func (st *Stack) MAC() [6]byte {
	var m [6]byte
	copy(m[:], st.ep.mac)
	return m
}

// LinkAddressOf returns the Ethernet address the stack's neighbour table
// holds for a, if any.
func (st *Stack) LinkAddressOf(a netip.Addr) ([6]byte, bool) {
	proto := netProto(a)
	neigh, terr := st.s.Neighbors(nicID, proto)
	if terr != nil {
		return [6]byte{}, false
	}
	want := tcpipAddr(a)
	for _, e := range neigh {
		if e.Addr == want && len(e.LinkAddr) == 6 {
			var m [6]byte
			copy(m[:], e.LinkAddr)
			return m, true
		}
	}
	return [6]byte{}, false
}

// AddrsOf returns the addresses the stack's neighbour tables (ARP and
// NDP) hold for the given link addresses: where departed guests' flows
// came from.
func (st *Stack) AddrsOf(macs map[[6]byte]bool) []netip.Addr {
	var out []netip.Addr
	for _, proto := range []tcpip.NetworkProtocolNumber{ipv4.ProtocolNumber, ipv6.ProtocolNumber} {
		neigh, terr := st.s.Neighbors(nicID, proto)
		if terr != nil {
			continue // IPv6 off
		}
		for _, e := range neigh {
			var m [6]byte
			copy(m[:], e.LinkAddr)
			if macs[m] {
				a, _ := netip.AddrFromSlice(e.Addr.AsSlice())
				out = append(out, a)
			}
		}
	}
	return out
}

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

// SetUDPForwarder routes every UDP datagram with no bound endpoint to h,
// with the datagram's UDP header (an ICMP error about the flow quotes it);
// when h returns false the stack answers with ICMP port unreachable.
//
// A datagram from one of the stack's own addresses never reaches h: it is
// the stack's own broadcast (a DHCP reply to 255.255.255.255), which
// gVisor loops back to the sender unconditionally. No guest sent it, so
// it must open no flow and count as no refusal.
func (st *Stack) SetUDPForwarder(h func(r *udp.ForwarderRequest, first [header.UDPMinimumSize]byte) bool) {
	st.s.SetTransportProtocolHandler(udp.ProtocolNumber, func(id stack.TransportEndpointID, pkt *stack.PacketBuffer) bool {
		if (*st.own.Load())[string(id.RemoteAddress.AsSlice())] {
			return false
		}
		var first [header.UDPMinimumSize]byte
		copy(first[:], pkt.TransportHeader().Slice())
		return h(udp.NewForwarderRequest(st.s, id, pkt.Clone()), first)
	})
}

// ListenUDP binds a UDP endpoint in the stack. An unspecified address binds
// all of the stack's addresses; broadcast sending is allowed (DHCP).
func (st *Stack) ListenUDP(addr netip.AddrPort) (*gonet.UDPConn, error) {
	proto := netProto(addr.Addr())
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

// AddAddress makes addr one of the stack's own addresses while it runs:
// it answers ARP and neighbour solicitations for it, and endpoints bound
// to it (a service of the embedder's) receive what guests send there.
func (st *Stack) AddAddress(addr netip.Addr) error {
	st.ownMu.Lock()
	defer st.ownMu.Unlock()
	old := *st.own.Load()
	key := string(addr.AsSlice())
	if old[key] {
		return nil
	}
	proto := netProto(addr)
	pa := tcpip.ProtocolAddress{Protocol: proto, AddressWithPrefix: tcpip.AddrFromSlice(addr.AsSlice()).WithPrefix()}
	if terr := st.s.AddProtocolAddress(nicID, pa, stack.AddressProperties{}); terr != nil {
		return fmt.Errorf("netstack: add address %s: %s", addr, terr)
	}
	own := make(map[string]bool, len(old)+1)
	for k := range old {
		own[k] = true
	}
	own[key] = true
	st.own.Store(&own)
	return nil
}

// ListenTCP listens on a TCP address in the stack.
func (st *Stack) ListenTCP(addr netip.AddrPort) (*gonet.TCPListener, error) {
	proto := netProto(addr.Addr())
	l, err := gonet.ListenTCP(st.s, tcpip.FullAddress{NIC: nicID, Addr: tcpip.AddrFromSlice(addr.Addr().AsSlice()), Port: addr.Port()}, proto)
	if err != nil {
		return nil, fmt.Errorf("netstack: listen TCP %s: %w", addr, err)
	}
	return l, nil
}

// DialTCP connects from the stack (the gateway's address of the family)
// to a guest's TCP port: gvproxy's /tunnel and SSH to the guest.
func (st *Stack) DialTCP(ctx context.Context, to netip.AddrPort) (*gonet.TCPConn, error) {
	proto := netProto(to.Addr())
	c, err := gonet.DialContextTCP(ctx, st.s, tcpip.FullAddress{NIC: nicID, Addr: tcpip.AddrFromSlice(to.Addr().AsSlice()), Port: to.Port()}, proto)
	if err != nil {
		return nil, fmt.Errorf("netstack: dial %s: %w", to, err)
	}
	return c, nil
}

// Close tears the stack down, closing every endpoint, and logs the stack's
// own totals at debug level.
func (st *Stack) Close() {
	us, ts := st.s.Stats().UDP, st.s.Stats().TCP
	st.log.Debug("stack UDP totals", "received", us.PacketsReceived.Value(), "receive-buffer-errors", us.ReceiveBufferErrors.Value(),
		"sent", us.PacketsSent.Value(), "send-errors", us.PacketSendErrors.Value())
	st.log.Debug("stack TCP totals", "segments-sent", ts.SegmentsSent.Value(), "retransmits", ts.Retransmits.Value(),
		"fast-retransmits", ts.FastRetransmit.Value(), "timeouts", ts.Timeouts.Value(), "slow-start-retransmits", ts.SlowStartRetransmits.Value(),
		"checksum-errors", ts.ChecksumErrors.Value(), "segments-received", ts.ValidSegmentsReceived.Value())
	st.s.Close()
	st.s.Wait()
}
