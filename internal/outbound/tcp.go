package outbound

import (
	"context"
	"net"
	"net/netip"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/slipway-net/slipway/config"
	"github.com/slipway-net/slipway/internal/flow"
)

// acceptTCP runs for every SYN with no listener, before a handshake
// slot is used: refused flows get a RST at once.
func (f *Forwarder) acceptTCP(id stack.TransportEndpointID) bool {
	_, dst := idEnds(id)
	return f.decide(config.TCP, dst).Allowed()
}

// handleTCP connects to the host first and completes the guest's handshake
// only when that succeeds, so a refused or unreachable destination shows up
// in the guest as a RST, the way a real connect fails.
func (f *Forwarder) handleTCP(r *tcp.ForwarderRequest) {
	guest, dst := idEnds(r.ID())
	v := f.o.Policy.Outbound(config.TCP, dst)
	if !v.Allowed() {
		r.Complete(true)
		return
	}
	fl, err := f.reserve(flow.Ends{Proto: config.TCP, Guest: guest, Remote: dst, Host: v.Target})
	if err != nil {
		r.Complete(true)
		return
	}
	// The flow's context: closing the flow (its guest gone, shutdown)
	// ends the dial at once.
	host, err := f.dialTCP(fl.Context(), v.Target)
	if err != nil {
		// A dial the flow's close ended (shutdown, the guest gone) is
		// no failure of the host's.
		if fl.Context().Err() == nil {
			f.connectFailed.Add(1)
			f.log.Debug("host connect failed", "guest", guest, "dst", dst, "target", v.Target, "err", err)
		}
		r.Complete(true)
		fl.Close()
		return
	}
	// The guest's side of the handshake can take as long as gVisor's SYN-ACK
	// retransmits when the guest has gone meanwhile (its link detached):
	// a flow closed in that window closes its host socket at once, not
	// when the handshake gives up. (Closing it twice below is harmless.)
	stop := context.AfterFunc(fl.Context(), func() { host.Close() })
	var wq waiter.Queue
	ep, terr := f.createEndpoint(fl.Context(), r, &wq)
	stop()
	if terr != nil {
		// The guest gave up (or the handshake failed) while we dialled.
		r.Complete(true)
		host.Close()
		fl.Close()
		return
	}
	r.Complete(false)
	flow.PumpTCP(fl, ep, &wq, host)
}

// createEndpoint is r.CreateEndpoint, which blocks until the guest
// completes the handshake or gVisor gives up on it (a minute of SYN-ACK
// retransmits), ended as soon as ctx (the flow's) is: a network closing,
// or the guest's flows released, must not wait for a guest that never
// answers, holding this goroutine and the host socket already dialled.
// After a stack's Close nothing else would end the wait at all: a
// handshake started then was left for good (found by FuzzGuestSession).
// gVisor waits for a writable event on wq and then looks whether the
// endpoint connected, so waking it aborts the handshake. The wake repeats
// until CreateEndpoint returns, because one sent before gVisor registered
// its waiter would be lost.
func (f *Forwarder) createEndpoint(ctx context.Context, r *tcp.ForwarderRequest, wq *waiter.Queue) (tcpip.Endpoint, tcpip.Error) {
	created := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		for {
			wq.Notify(waiter.WritableEvents)
			select {
			case <-created:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	})
	defer stop()
	defer close(created)
	return r.CreateEndpoint(wq)
}

// dialTCP opens the host socket of a TCP flow: through Options.DialTCP if
// set, else from the outbound address of target's family.
func (f *Forwarder) dialTCP(ctx context.Context, target netip.AddrPort) (flow.HostConn, error) {
	if f.o.DialTCP != nil {
		return f.o.DialTCP(ctx, target)
	}
	ctx, cancel := context.WithTimeout(ctx, f.o.ConnectTimeout)
	defer cancel()
	var d net.Dialer
	if la := f.localAddr(target.Addr()); la.IsValid() {
		d.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(la, 0))
	}
	c, err := d.DialContext(ctx, "tcp", target.String())
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}
