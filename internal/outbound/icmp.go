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
	"gvisor.dev/gvisor/pkg/tcpip/checksum"

	"github.com/slipway-net/slipway/config"
	"github.com/slipway-net/slipway/internal/flow"
	"github.com/slipway-net/slipway/link"
)

// icmpIdle closes an echo flow (and its ping socket) after this long
// without a request or reply.
const icmpIdle = 10 * time.Second

const (
	icmpEchoReply   = 0
	icmpUnreachable = 3
	icmpEcho        = 8
	// icmpCodeProhibited is "communication administratively prohibited".
	icmpCodeProhibited = 13
	// icmpCodeNetUnreachable is "net unreachable".
	icmpCodeNetUnreachable = 0
	ipProtoICMP            = 1
	etherTypeIPv4          = 0x0800
	ipv4HdrLen             = 20

	icmp6Unreachable = 1
	icmp6Echo        = 128
	icmp6EchoReply   = 129
	// icmp6CodeProhibited is "communication with destination
	// administratively prohibited".
	icmp6CodeProhibited = 1
	// icmp6CodeNoRoute is "no route to destination".
	icmp6CodeNoRoute = 0
	ipProtoICMPv6    = 58
	etherTypeIPv6    = 0x86dd
	ipv6HdrLen       = 40
)

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

// parseEcho recognises an IPv4 or IPv6 echo request (no fragments, no
// IPv6 extension headers) in a frame.
func parseEcho(frame []byte) (echoRequest, bool) {
	if len(frame) < link.EthHdrLen+ipv4HdrLen+8 {
		return echoRequest{}, false
	}
	ip := frame[link.EthHdrLen:]
	switch binary.BigEndian.Uint16(frame[12:]) {
	case etherTypeIPv4:
		hl := int(ip[0]&0xf) * 4
		total := int(binary.BigEndian.Uint16(ip[2:]))
		if ip[9] != ipProtoICMP || hl < ipv4HdrLen || total < hl+8 || total > len(ip) {
			return echoRequest{}, false
		}
		if binary.BigEndian.Uint16(ip[6:])&0x3fff != 0 {
			return echoRequest{}, false // fragments are the stack's to reassemble
		}
		icmp := ip[hl:total]
		if icmp[0] != icmpEcho || icmp[1] != 0 {
			return echoRequest{}, false
		}
		return echoRequest{src: netip.AddrFrom4([4]byte(ip[12:16])), dst: netip.AddrFrom4([4]byte(ip[16:20])), l3: ip[:total], hdrLen: hl, icmp: icmp}, true
	case etherTypeIPv6:
		if len(ip) < ipv6HdrLen+8 || ip[6] != ipProtoICMPv6 {
			return echoRequest{}, false
		}
		total := ipv6HdrLen + int(binary.BigEndian.Uint16(ip[4:]))
		if total > len(ip) || total < ipv6HdrLen+8 {
			return echoRequest{}, false
		}
		icmp := ip[ipv6HdrLen:total]
		if icmp[0] != icmp6Echo || icmp[1] != 0 {
			return echoRequest{}, false
		}
		return echoRequest{v6: true, src: netip.AddrFrom16([16]byte(ip[8:24])), dst: netip.AddrFrom16([16]byte(ip[24:40])), l3: ip[:total], hdrLen: ipv6HdrLen, icmp: icmp}, true
	}
	return echoRequest{}, false
}

// icmpChecksumOK verifies an echo request's checksum (IPv6 covers a
// pseudo-header).
func (r *echoRequest) checksumOK() bool {
	var sum uint16
	if r.v6 {
		sum = pseudoSum6(r.src, r.dst, len(r.icmp))
	}
	return checksum.Checksum(r.icmp, sum) == 0xffff
}

// intercept takes echo requests to addresses the stack does not own.
// Everything else goes on to the stack.
func (x *icmpForwarder) intercept(frame []byte) bool {
	req, ok := parseEcho(frame)
	if !ok || x.local[req.dst] || req.dst.IsLinkLocalUnicast() || req.dst.IsMulticast() {
		return false // the stack answers for its own addresses
	}
	if !req.checksumOK() {
		return true // corrupt: drop it here, it is ours
	}
	var guestMAC, ourMAC [6]byte
	copy(guestMAC[:], frame[6:12])
	copy(ourMAC[:], frame[0:6])
	v := x.f.decide(config.ICMP, netip.AddrPortFrom(req.dst, 0))
	if !v.Allowed() {
		x.unreachable(guestMAC, ourMAC, &req, true)
		return true
	}
	key := icmpKey{guest: req.src, dst: v.Target.Addr(), id: binary.BigEndian.Uint16(req.icmp[4:])}
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
	fd, err := pingSocket(key.dst.Is6())
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
	ff := x.f.flows.Reserve(flow.Ends{
		Proto: config.ICMP,
		// The guest's echo id stands where a port would.
		Guest:  netip.AddrPortFrom(key.guest, key.id),
		Remote: netip.AddrPortFrom(remote, 0),
		Host:   netip.AddrPortFrom(key.dst, 0),
	})
	if ff == nil {
		unix.Close(fd)
		return nil
	}
	fl = &icmpFlow{key: key, flow: ff, file: os.NewFile(uintptr(fd), "ping"), guestMAC: guestMAC, ourMAC: ourMAC}
	x.mu.Lock()
	if other := x.flows[key]; other != nil {
		// Another link's reader opened the same session meanwhile.
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
		want := byte(icmpEchoReply)
		if fl.key.dst.Is6() {
			want = icmp6EchoReply
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
		quote := min(len(req.l3), 1280-ipv6HdrLen-8)
		msg = make([]byte, 8+quote)
		msg[0], msg[1] = icmp6Unreachable, icmp6CodeNoRoute
		if prohibited {
			msg[1] = icmp6CodeProhibited
		}
		copy(msg[8:], req.l3[:quote])
		src = x.f.o.Gateway6
	} else {
		quote := min(req.hdrLen+8, len(req.l3))
		msg = make([]byte, 8+quote)
		msg[0], msg[1] = icmpUnreachable, icmpCodeNetUnreachable
		if prohibited {
			msg[1] = icmpCodeProhibited
		}
		copy(msg[8:], req.l3[:quote])
	}
	if !src.IsValid() {
		src = req.dst
	}
	x.send(guestMAC, ourMAC, src, req.src, msg)
}

// send builds an Ethernet+IP frame around an ICMP or ICMPv6 message
// (checksum recomputed) and injects it towards the guest.
func (x *icmpForwarder) send(dstMAC, srcMAC [6]byte, src, dst netip.Addr, icmp []byte) {
	hl := ipv4HdrLen
	if dst.Is6() {
		hl = ipv6HdrLen
	}
	total := hl + len(icmp)
	if total > 65535 {
		return
	}
	buf := make([]byte, link.VnetHdrLen+link.EthHdrLen+total)
	frame := buf[link.VnetHdrLen:]
	if dst.Is6() {
		m := link.PutEthIPv6(frame, dstMAC, srcMAC, ipProtoICMPv6, 64, src, dst, len(icmp))
		copy(m, icmp)
		m[2], m[3] = 0, 0
		binary.BigEndian.PutUint16(m[2:], ^checksum.Checksum(m, pseudoSum6(src, dst, len(m))))
	} else {
		copy(frame[0:6], dstMAC[:])
		copy(frame[6:12], srcMAC[:])
		binary.BigEndian.PutUint16(frame[12:], etherTypeIPv4)
		ip := frame[link.EthHdrLen:]
		m := ip[hl:]
		copy(m, icmp)
		m[2], m[3] = 0, 0
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(total))
		ip[8] = 64
		ip[9] = ipProtoICMP
		s4, d4 := src.As4(), dst.As4()
		copy(ip[12:16], s4[:])
		copy(ip[16:20], d4[:])
		binary.BigEndian.PutUint16(ip[10:], ^checksum.Checksum(ip[:ipv4HdrLen], 0))
		binary.BigEndian.PutUint16(m[2:], ^checksum.Checksum(m, 0))
	}
	if x.f.o.Inject != nil {
		x.f.o.Inject([]link.Frame{link.Contiguous(buf)})
	}
}

// pseudoSum6 is the ICMPv6 pseudo-header sum (RFC 8200 8.1).
func pseudoSum6(src, dst netip.Addr, length int) uint16 {
	s16, d16 := src.As16(), dst.As16()
	var p [40]byte
	copy(p[0:16], s16[:])
	copy(p[16:32], d16[:])
	binary.BigEndian.PutUint32(p[32:], uint32(length))
	p[39] = ipProtoICMPv6
	return checksum.Checksum(p[:], 0)
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
