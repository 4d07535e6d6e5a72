package forwarder

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

	"github.com/slipway-net/slipway/link"
	"github.com/slipway-net/slipway/policy"
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
	ipProtoICMP        = 1
	etherTypeIPv4      = 0x0800
	ipv4HdrLen         = 20
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

type icmpFlow struct {
	key      icmpKey
	file     *os.File
	guestMAC [6]byte
	ourMAC   [6]byte
	last     atomic.Int64
	timer    *time.Timer
	once     sync.Once
}

func newICMPForwarder(f *Forwarder) *icmpForwarder {
	local := map[netip.Addr]bool{}
	for _, a := range f.o.LocalAddrs {
		local[a] = true
	}
	return &icmpForwarder{f: f, local: local, flows: map[icmpKey]*icmpFlow{}}
}

// intercept takes IPv4 echo requests to addresses the stack does not own.
// Everything else goes on to the stack.
func (x *icmpForwarder) intercept(buf []byte) bool {
	frame := buf[link.VnetHdrLen:]
	if len(frame) < link.EthHdrLen+ipv4HdrLen+8 || binary.BigEndian.Uint16(frame[12:]) != etherTypeIPv4 {
		return false
	}
	ip := frame[link.EthHdrLen:]
	hl := int(ip[0]&0xf) * 4
	total := int(binary.BigEndian.Uint16(ip[2:]))
	if ip[9] != ipProtoICMP || hl < ipv4HdrLen || total < hl+8 || total > len(ip) {
		return false
	}
	if binary.BigEndian.Uint16(ip[6:])&0x3fff != 0 {
		return false // fragments are the stack's to reassemble
	}
	icmp := ip[hl:total]
	if icmp[0] != icmpEcho || icmp[1] != 0 {
		return false
	}
	dst := netip.AddrFrom4([4]byte(ip[16:20]))
	if x.local[dst] {
		return false // the stack answers for its own addresses
	}
	if checksum.Checksum(icmp, 0) != 0xffff {
		return true // corrupt: drop it here, it is ours
	}
	src := netip.AddrFrom4([4]byte(ip[12:16]))
	v := x.f.decide(policy.ICMP, netip.AddrPortFrom(dst, 0))
	if !v.Allowed() {
		x.unreachable(frame, hl, total)
		return true
	}
	key := icmpKey{guest: src, dst: v.Target.Addr(), id: binary.BigEndian.Uint16(icmp[4:])}
	fl := x.flow(key, frame)
	if fl == nil {
		x.unreachable(frame, hl, total)
		return true
	}
	fl.last.Store(time.Now().UnixNano())
	sa := &unix.SockaddrInet4{Addr: key.dst.As4()}
	var serr error
	rc, err := fl.file.SyscallConn()
	if err == nil {
		// Through the RawConn so a concurrent close cannot hand us a
		// reused descriptor.
		err = rc.Write(func(fd uintptr) bool {
			serr = unix.Sendto(int(fd), icmp, unix.MSG_DONTWAIT, sa)
			return true
		})
	}
	if err == nil {
		err = serr
	}
	if err != nil {
		x.Unanswered.Add(1)
		x.f.log.Debug("ping send failed", "dst", key.dst, "err", err)
	}
	return true
}

// flow returns the echo session for key, opening a ping socket for it.
func (x *icmpForwarder) flow(key icmpKey, frame []byte) *icmpFlow {
	x.mu.Lock()
	defer x.mu.Unlock()
	if fl := x.flows[key]; fl != nil {
		return fl
	}
	if x.noPingSockets.Load() || len(x.flows) >= x.f.o.MaxICMPFlows {
		return nil
	}
	fd, err := pingSocket()
	if err != nil {
		if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) {
			x.noPingSockets.Store(true)
			if !x.warned.Swap(true) {
				x.f.log.Warn("the host does not allow unprivileged ping sockets; guests' pings to the outside get ICMP errors. Enable with: sysctl -w net.ipv4.ping_group_range='0 2147483647'")
			}
		} else {
			x.f.log.Debug("ping socket failed", "err", err)
		}
		return nil
	}
	fl := &icmpFlow{key: key, file: os.NewFile(uintptr(fd), "ping")}
	copy(fl.guestMAC[:], frame[6:12])
	copy(fl.ourMAC[:], frame[0:6])
	fl.last.Store(time.Now().UnixNano())
	x.flows[key] = fl
	fl.timer = time.AfterFunc(icmpIdle, func() { x.expire(fl) })
	go x.readReplies(fl)
	return fl
}

func (x *icmpForwarder) expire(fl *icmpFlow) {
	since := time.Since(time.Unix(0, fl.last.Load()))
	if since < icmpIdle {
		fl.timer.Reset(icmpIdle - since)
		return
	}
	x.closeFlow(fl)
}

func (x *icmpForwarder) closeFlow(fl *icmpFlow) {
	fl.once.Do(func() {
		x.mu.Lock()
		if x.flows[fl.key] == fl {
			delete(x.flows, fl.key)
		}
		x.mu.Unlock()
		fl.timer.Stop()
		fl.file.Close()
	})
}

// readReplies turns each echo reply on the ping socket into a frame for the
// guest, restoring the guest's echo id (the kernel replaced it).
func (x *icmpForwarder) readReplies(fl *icmpFlow) {
	defer x.closeFlow(fl)
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
		if n < 8 || buf[0] != icmpEchoReply {
			continue
		}
		fl.last.Store(time.Now().UnixNano())
		reply := buf[:n]
		binary.BigEndian.PutUint16(reply[4:], fl.key.id)
		x.send(fl.guestMAC, fl.ourMAC, fl.key.dst, fl.key.guest, reply)
	}
}

// unreachable answers a request the guest may not send with an ICMP
// "administratively prohibited" error from the gateway.
func (x *icmpForwarder) unreachable(frame []byte, hl, total int) {
	x.Unanswered.Add(1)
	ip := frame[link.EthHdrLen:]
	quote := hl + 8
	if quote > total {
		quote = total
	}
	msg := make([]byte, 8+quote)
	msg[0], msg[1] = icmpUnreachable, icmpCodeProhibited
	copy(msg[8:], ip[:quote])
	var guestMAC, ourMAC [6]byte
	copy(guestMAC[:], frame[6:12])
	copy(ourMAC[:], frame[0:6])
	src := x.f.o.Gateway4
	if !src.IsValid() {
		src = netip.AddrFrom4([4]byte(ip[16:20]))
	}
	x.send(guestMAC, ourMAC, src, netip.AddrFrom4([4]byte(ip[12:16])), msg)
}

// send builds an Ethernet+IPv4 frame around an ICMP message (checksum
// recomputed) and injects it towards the guest.
func (x *icmpForwarder) send(dstMAC, srcMAC [6]byte, src, dst netip.Addr, icmp []byte) {
	total := ipv4HdrLen + len(icmp)
	if total > 65535 {
		return
	}
	buf := make([]byte, link.VnetHdrLen+link.EthHdrLen+total)
	frame := buf[link.VnetHdrLen:]
	copy(frame[0:6], dstMAC[:])
	copy(frame[6:12], srcMAC[:])
	binary.BigEndian.PutUint16(frame[12:], etherTypeIPv4)
	ip := frame[link.EthHdrLen:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(total))
	ip[8] = 64
	ip[9] = ipProtoICMP
	s4, d4 := src.As4(), dst.As4()
	copy(ip[12:16], s4[:])
	copy(ip[16:20], d4[:])
	binary.BigEndian.PutUint16(ip[10:], ^checksum.Checksum(ip[:ipv4HdrLen], 0))
	m := ip[ipv4HdrLen:]
	copy(m, icmp)
	m[2], m[3] = 0, 0
	binary.BigEndian.PutUint16(m[2:], ^checksum.Checksum(m, 0))
	if x.f.o.Inject != nil {
		x.f.o.Inject([][]byte{buf})
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
		x.closeFlow(fl)
	}
}
