package outbound

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/slipway-net/slipway/config"
	"github.com/slipway-net/slipway/internal/flow"
	"github.com/slipway-net/slipway/internal/frame"
	"github.com/slipway-net/slipway/link"
)

// icmpIdle closes an echo flow (and its ping socket) after this long
// without a request or reply.
const icmpIdle = 10 * time.Second

// icmpForwarder carries guests' echo requests to the host's network through
// unprivileged ICMP ("ping") sockets: one socket per guest echo session,
// whose replies are rewritten back to the guest's echo id.
type icmpForwarder struct {
	f     *Forwarder
	local map[netip.Addr]bool

	mu    sync.Mutex
	flows map[icmpKey]*icmpFlow

	// noPingSockets is set when the host refuses ping sockets
	// (net.ipv4.ping_group_range); requests are then answered with an
	// ICMP error.
	noPingSockets atomic.Bool
	warned        atomic.Bool
	Unanswered    atomic.Uint64
}

type icmpKey struct {
	guest, dst netip.Addr
	id         uint16
}

// icmpFlow is one echo session: a flow of the table (so it shows with the
// others), whose release closes its ping socket.
type icmpFlow struct {
	key      icmpKey
	flow     *flow.Flow
	file     *os.File
	guestMAC [6]byte
	ourMAC   [6]byte
	timer    *time.Timer
}

func newICMPForwarder(f *Forwarder) *icmpForwarder {
	local := map[netip.Addr]bool{}
	for _, a := range f.o.LocalAddrs {
		local[a] = true
	}
	return &icmpForwarder{f: f, local: local, flows: map[icmpKey]*icmpFlow{}}
}

// echoRequest is an echo request found in a guest frame.
type echoRequest struct {
	v6       bool
	src, dst netip.Addr
	l3       []byte // the IP packet (for quoting in errors)
	hdrLen   int    // of the IP header
	icmp     []byte // the ICMP message
}

// echoOf recognises an IPv4 or IPv6 echo request (not a fragment: those
// are the stack's to reassemble) in a parsed frame.
func echoOf(v *frame.View) (echoRequest, bool) {
	t, ok := v.ICMPType()
	icmp := v.L4()
	if !ok || v.Fragment || len(icmp) < header.ICMPv4MinimumSize || icmp[1] != 0 {
		return echoRequest{}, false
	}
	v6 := v.EtherType == header.IPv6ProtocolNumber
	if v6 && t != uint8(header.ICMPv6EchoRequest) || !v6 && t != uint8(header.ICMPv4Echo) {
		return echoRequest{}, false
	}
	return echoRequest{v6: v6, src: v.Src, dst: v.Dst, l3: v.L3, hdrLen: v.IPHdrLen, icmp: icmp}, true
}

// checksumOK verifies an echo request's checksum (IPv6 covers a
// pseudo-header).
func (r *echoRequest) checksumOK() bool {
	return frame.ICMPSum(r.icmp, r.src, r.dst) == 0xffff
}

// intercept takes echo requests to addresses the stack does not own.
// Everything else goes on to the stack.
func (x *icmpForwarder) intercept(v *frame.View) bool {
	req, ok := echoOf(v)
	// IPv6 link-local echoes are the stack's (its own fe80:: address);
	// IPv4 link-local ones (169.254.169.254, cloud metadata) go to the
	// policy like any destination, which refuses them by default.
	if !ok || x.local[req.dst] || req.dst.Is6() && req.dst.IsLinkLocalUnicast() || req.dst.IsMulticast() {
		return false // the stack answers for its own addresses
	}
	if !req.checksumOK() {
		return true // corrupt: drop it here, it is ours
	}
	var guestMAC, ourMAC [6]byte
	copy(guestMAC[:], v.Eth[6:12])
	copy(ourMAC[:], v.Eth[0:6])
	verdict := x.f.decide(config.ICMP, netip.AddrPortFrom(req.dst, 0))
	if !verdict.Allowed() {
		x.unreachable(guestMAC, ourMAC, &req, true)
		return true
	}
	key := icmpKey{guest: req.src, dst: verdict.Target.Addr(), id: binary.BigEndian.Uint16(req.icmp[4:])}
	fl := x.flow(key, req.dst, guestMAC, ourMAC)
	if fl == nil {
		x.unreachable(guestMAC, ourMAC, &req, true)
		return true
	}
	fl.flow.Touch()
	fl.flow.ToHost.Add(uint64(len(req.icmp)))
	var sa unix.Sockaddr
	if req.v6 {
		sa = &unix.SockaddrInet6{Addr: key.dst.As16()}
	} else {
		sa = &unix.SockaddrInet4{Addr: key.dst.As4()}
	}
	var serr error
	rc, err := fl.file.SyscallConn()
	if err == nil {
		// Through the RawConn so a concurrent close cannot hand us a
		// reused descriptor.
		err = rc.Write(func(fd uintptr) bool {
			serr = unix.Sendto(int(fd), req.icmp, unix.MSG_DONTWAIT, sa)
			return true
		})
	}
	if err == nil {
		err = serr
	}
	if errors.Is(err, unix.ENETUNREACH) || errors.Is(err, unix.EHOSTUNREACH) {
		// The host has no route there (often: no IPv6 at all): say so
		// at once rather than let the guest time out.
		x.unreachable(guestMAC, ourMAC, &req, false)
	} else if err != nil {
		x.Unanswered.Add(1)
		x.f.log.Debug("ping send failed", "dst", key.dst, "err", err)
	}
	return true
}

// flow returns the echo session for key (an echo to remote, which the
// policy sent to key.dst), opening a ping socket for it.
func (x *icmpForwarder) flow(key icmpKey, remote netip.Addr, guestMAC, ourMAC [6]byte) *icmpFlow {
	x.mu.Lock()
	fl := x.flows[key]
	full := len(x.flows) >= x.f.o.MaxICMPFlows
	x.mu.Unlock()
	if fl != nil {
		return fl
	}
	if x.noPingSockets.Load() || full {
		return nil
	}
	open := pingSocket
	if x.f.o.PingSocket != nil {
		open = x.f.o.PingSocket
	}
	fd, err := open(key.dst.Is6())
	if err != nil {
		if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) {
			x.noPingSockets.Store(true)
			if !x.warned.Swap(true) {
				x.f.log.Warn("the host does not allow unprivileged ping sockets; guests' pings to the outside get ICMP errors. Enable with: sysctl -w net.ipv4.ping_group_range='0 2147483647' (it covers IPv6 too)")
			}
		} else {
			x.f.log.Debug("ping socket failed", "err", err)
		}
		return nil
	}
	ff, err := x.f.reserve(flow.Ends{
		Proto: config.ICMP,
		// The guest's echo id stands where a port would.
		Guest:  netip.AddrPortFrom(key.guest, key.id),
		Remote: netip.AddrPortFrom(remote, 0),
		Host:   netip.AddrPortFrom(key.dst, 0),
	})
	if err != nil {
		unix.Close(fd)
		return nil
	}
	fl = &icmpFlow{key: key, flow: ff, file: os.NewFile(uintptr(fd), "ping"), guestMAC: guestMAC, ourMAC: ourMAC}
	x.mu.Lock()
	// Another link's reader may have opened the same session meanwhile,
	// or others to the limit.
	if other := x.flows[key]; other != nil || len(x.flows) >= x.f.o.MaxICMPFlows {
		x.mu.Unlock()
		fl.file.Close()
		ff.Close()
		return other
	}
	x.flows[key] = fl
	x.mu.Unlock()
	fl.timer = ff.CloseWhenIdle(icmpIdle)
	if !ff.Start(func() { x.release(fl) }) {
		return nil
	}
	ff.SetState("active")
	go x.readReplies(fl)
	return fl
}

// release undoes an echo session; its flow's Close runs it.
func (x *icmpForwarder) release(fl *icmpFlow) {
	x.mu.Lock()
	if x.flows[fl.key] == fl {
		delete(x.flows, fl.key)
	}
	x.mu.Unlock()
	fl.timer.Stop()
	fl.file.Close()
}

// readReplies turns each echo reply on the ping socket into a frame for the
// guest, restoring the guest's echo id (the kernel replaced it).
func (x *icmpForwarder) readReplies(fl *icmpFlow) {
	defer fl.flow.Close()
	rc, err := fl.file.SyscallConn()
	if err != nil {
		return
	}
	buf := make([]byte, 65536)
	for {
		var n int
		var rerr error
		if err := rc.Read(func(fd uintptr) bool {
			n, _, rerr = unix.Recvfrom(int(fd), buf, 0)
			return rerr != unix.EAGAIN
		}); err != nil {
			return
		}
		if rerr != nil {
			continue
		}
		want := uint8(header.ICMPv4EchoReply)
		if fl.key.dst.Is6() {
			want = uint8(header.ICMPv6EchoReply)
		}
		if n < 8 || buf[0] != want {
			continue
		}
		fl.flow.Touch()
		fl.flow.ToGuest.Add(uint64(n))
		reply := buf[:n]
		binary.BigEndian.PutUint16(reply[4:], fl.key.id)
		x.send(fl.guestMAC, fl.ourMAC, fl.key.dst, fl.key.guest, reply)
	}
}

// unreachable answers a request with an ICMP destination unreachable
// error from the gateway: "administratively prohibited" when the guest may
// not send it, "no route" when the host cannot.
func (x *icmpForwarder) unreachable(guestMAC, ourMAC [6]byte, req *echoRequest, prohibited bool) {
	x.Unanswered.Add(1)
	var msg []byte
	src := x.f.o.Gateway4
	if req.v6 {
		// Quote as much of the request as fits the minimum IPv6 MTU.
		quote := min(len(req.l3), header.IPv6MinimumMTU-header.IPv6MinimumSize-header.ICMPv6ErrorHeaderSize)
		msg = make([]byte, 8+quote)
		msg[0], msg[1] = uint8(header.ICMPv6DstUnreachable), uint8(header.ICMPv6NetworkUnreachable)
		if prohibited {
			msg[1] = uint8(header.ICMPv6Prohibited)
		}
		copy(msg[8:], req.l3[:quote])
		src = x.f.o.Gateway6
	} else {
		quote := min(req.hdrLen+8, len(req.l3))
		msg = make([]byte, 8+quote)
		msg[0], msg[1] = uint8(header.ICMPv4DstUnreachable), uint8(header.ICMPv4NetUnreachable)
		if prohibited {
			msg[1] = uint8(header.ICMPv4AdminProhibited)
		}
		copy(msg[8:], req.l3[:quote])
	}
	if !src.IsValid() {
		src = req.dst
	}
	x.send(guestMAC, ourMAC, src, req.src, msg)
}

// portUnreachable tells the guest at guest that nothing listens at remote
// (where it sent UDP datagrams), with the ICMP error a host would send:
// port unreachable, quoting the IP header of the flow's first datagram and
// its UDP header udp as the guest sent it. The guest's stack matches its
// socket by the ports; tools such as scapy match the quote byte for byte
// (with a rebuilt length and checksum they took it for someone else's).
func (x *icmpForwarder) portUnreachable(guest, remote netip.AddrPort, udp [header.UDPMinimumSize]byte) {
	guestMAC, ok := x.f.o.Stack.LinkAddressOf(guest.Addr())
	if !ok {
		return // the guest's address is not known on the link (any more)
	}
	ipLen := header.IPv4MinimumSize
	typ, code := uint8(header.ICMPv4DstUnreachable), uint8(header.ICMPv4PortUnreachable)
	if guest.Addr().Is6() {
		ipLen = header.IPv6MinimumSize
		typ, code = uint8(header.ICMPv6DstUnreachable), uint8(header.ICMPv6PortUnreachable)
	}
	msg := make([]byte, 8+ipLen+header.UDPMinimumSize)
	msg[0], msg[1] = typ, code
	quoted := msg[8:]
	// The IP header tells the datagram's whole length; the quote holds
	// its first 8 bytes, as RFC 792 asks.
	length := int(header.UDP(udp[:]).Length())
	var l4 []byte
	if guest.Addr().Is6() {
		l4 = frame.PutIPv6(quoted, header.UDPProtocolNumber, 64, guest.Addr(), remote.Addr(), length)
	} else {
		l4 = frame.PutIPv4(quoted, header.UDPProtocolNumber, 64, guest.Addr(), remote.Addr(), length)
	}
	copy(l4, udp[:])
	x.send(guestMAC, x.f.o.Stack.MAC(), remote.Addr(), guest.Addr(), msg)
}

// send builds an Ethernet+IP frame around an ICMP or ICMPv6 message
// (checksum recomputed) and injects it towards the guest.
func (x *icmpForwarder) send(dstMAC, srcMAC [6]byte, src, dst netip.Addr, icmp []byte) {
	hl, etherType, proto := header.IPv4MinimumSize, header.IPv4ProtocolNumber, header.ICMPv4ProtocolNumber
	if dst.Is6() {
		hl, etherType, proto = header.IPv6MinimumSize, header.IPv6ProtocolNumber, header.ICMPv6ProtocolNumber
	}
	total := hl + len(icmp)
	if total > 65535 {
		return
	}
	buf := make([]byte, link.VnetHdrLen+link.EthHdrLen+total)
	ip := frame.PutEth(buf[link.VnetHdrLen:], dstMAC, srcMAC, etherType)
	var m []byte
	if dst.Is6() {
		m = frame.PutIPv6(ip, proto, 64, src, dst, len(icmp))
	} else {
		m = frame.PutIPv4(ip, proto, 64, src, dst, len(icmp))
	}
	copy(m, icmp)
	frame.SetICMPChecksum(m, src, dst)
	if x.f.o.Inject != nil {
		x.f.o.Inject([]link.Frame{link.Contiguous(buf)})
	}
}

func (x *icmpForwarder) close() {
	x.mu.Lock()
	flows := make([]*icmpFlow, 0, len(x.flows))
	for _, fl := range x.flows {
		flows = append(flows, fl)
	}
	x.mu.Unlock()
	for _, fl := range flows {
		fl.flow.Close()
	}
}
