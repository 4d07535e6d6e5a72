package outbound

import (
	"net"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/slipway-net/slipway/config"
	"github.com/slipway-net/slipway/internal/flow"
)

// handleUDP opens a flow for the first datagram of a new 4-tuple (first
// is its UDP header): a connected host socket to the policy's target,
// idle-timed. Returning false makes the stack answer with ICMP port
// unreachable.
func (f *Forwarder) handleUDP(r *udp.ForwarderRequest, first [header.UDPMinimumSize]byte) bool {
	guest, dst := idEnds(r.ID())
	v := f.decide(config.UDP, dst)
	if !v.Allowed() {
		return false
	}
	fl, err := f.reserve(flow.Ends{Proto: config.UDP, Guest: guest, Remote: dst, Host: v.Target})
	if err != nil {
		return true // dropped, as a full NAT table would
	}
	host, err := f.dialUDP(v.Target)
	if err != nil {
		f.connectFailed.Add(1)
		f.log.Debug("host UDP socket failed", "guest", guest, "target", v.Target, "err", err)
		fl.Close()
		return false
	}
	var wq waiter.Queue
	ep, terr := r.CreateEndpoint(&wq)
	if terr != nil {
		host.Close()
		fl.Close()
		return true
	}
	// Room for a burst: the guest's datagrams wait here while the pump
	// sends the previous run to the host.
	ep.SocketOptions().SetReceiveBufferSize(flow.UDPReceiveBuffer, true)
	flow.PumpUDP(fl, ep, &wq, host, flow.UDPOptions{
		Idle:      f.o.UDPIdleTimeout,
		Unreplied: f.o.UDPUnrepliedTimeout,
		// Nothing listens there: the guest hears so, as from a real
		// host, and its socket sees ECONNREFUSED.
		Refused: func() { f.icmp.portUnreachable(guest, dst, first) },
	})
	return true
}

// dialUDP opens a UDP flow's host socket: through Options.DialUDP if set,
// else from the outbound address of target's family.
func (f *Forwarder) dialUDP(target netip.AddrPort) (*net.UDPConn, error) {
	if f.o.DialUDP != nil {
		return f.o.DialUDP(target)
	}
	var laddr *net.UDPAddr
	if la := f.localAddr(target.Addr()); la.IsValid() {
		laddr = net.UDPAddrFromAddrPort(netip.AddrPortFrom(la, 0))
	}
	return net.DialUDP("udp", laddr, net.UDPAddrFromAddrPort(target))
}
