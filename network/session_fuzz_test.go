package network

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/slipway-net/slipway/config"
	"github.com/slipway-net/slipway/internal/frame"
	"github.com/slipway-net/slipway/link"
	"github.com/slipway-net/slipway/link/pipe"
)

// FuzzGuestSession is the stateful fuzz target: one input is a script of
// steps — guest frames, clock advances, host-side socket events, the
// guest's VMM not reading for a while (its ring fills and refuses frames,
// as a datagram VM's EAGAIN or ENOBUFS does) — played
// through the real path (in-process link → switch → stack → forwarders →
// real loopback sockets) of a network built for that input alone.
//
// Go's fuzzer mutates bytes, not frames, so the bytes only choose: each
// 4-byte step names an operation and its fields (a guest port out of four,
// a host target out of a few, flags, a payload length), and the harness
// builds the frame with valid lengths and checksums around them; an
// input that died at validation would test nothing past it. The guest
// keeps TCP state per port (its next sequence number and what slipway
// sent last), so a SYN, an ACK with data and a FIN make a real
// connection through to a host server.
//
// The invariants, checked after every step and at the end:
//   - nothing panics, and the gateway still answers ARP after the script;
//   - every frame slipway sends toward the guest parses and carries valid
//     IPv4 header, TCP, UDP, ICMP and ICMPv6 checksums, complete (the link
//     takes no offloads) and within the MTU;
//   - the flow table holds at most MaxFlows flows, a guest at most
//     MaxUDPFlowsPerGuest UDP flows and MaxICMPFlows ping sessions;
//   - after Network.Close no flow is left, and the process's goroutines and
//     descriptors come back to what they were before the network was built
//     (waited for within a bound, never timed).
func FuzzGuestSession(f *testing.F) {
	host := newHostSide(f)
	f.Fuzz(func(t *testing.T, script []byte) {
		if len(script) > sessionMaxSteps*4 {
			script = script[:sessionMaxSteps*4]
		}
		runSession(t, host, script)
	})
}

// TestGuestSessionReachesHost checks the harness: its handshake, data and
// host events are real, so the fuzzer's inputs get past the handshake.
func TestGuestSessionReachesHost(t *testing.T) {
	host := newHostSide(t)
	// SYN to the echo server, 128 bytes, a wait: the echo is acknowledged.
	s := runSession(t, host, []byte{opSYN, 0, 0, 0, opSync, 0, 0, 0, opACK, 0, 16, 0, opSync, 4, 0, 0, opSync, 4, 0, 0})
	if got := s.tcp[0].received(); got != 128 {
		t.Fatalf("the guest saw %d bytes of the echo, want 128", got)
	}
	// SYN to the holding server, the handshake's ACK, then the host
	// writes 161 bytes.
	s = runSession(t, host, []byte{opSYN, 3 << 2, 0, 0, opSync, 0, 0, 0, opACK, 0, 0, 0, opSync, 4, 0, 0, opHost, 0, 0, 10, opSync, 4, 0, 0, opSync, 4, 0, 0})
	if got := s.tcp[0].received(); got != 161 {
		t.Fatalf("the guest saw %d bytes from the host, want 161", got)
	}
}

// TestGuestSessionStalledGuest checks the harness's stall: a guest that
// stops reading while the gateway answers 24 ARP requests takes nothing
// meanwhile and its ring of 16 fills; the switch counts what the ring
// refused, and what the ring kept reaches the guest once it reads.
func TestGuestSessionStalledGuest(t *testing.T) {
	host := newHostSide(t)
	script := []byte{opSync, 0, 0, 0x80 | 7} // a 160ms stall
	for range 24 {
		script = append(script, opARP, 0, 0, 0)
	}
	// The stall is wall-clock time, and a loaded machine (a -race run
	// beside other packages) may take longer than it to answer 24 ARP
	// requests: hold it until the ring has refused what it must.
	s := runSession(t, host, script, func(s *session) bool { return s.linkTxFull() < 24-sessionRing-1 })
	if n := s.readInStall.Load(); n > 1 {
		t.Errorf("the guest took %d frames while it was not reading (one may be in flight)", n)
	}
	if s.txFull < 24-sessionRing-1 {
		t.Errorf("the stalled guest's ring refused %d frames, want at least %d", s.txFull, 24-sessionRing-1)
	}
	// The first sync's reply, then the 16 the ring kept through the
	// stall, delivered once the guest read again.
	if s.arpReply < 1+sessionRing {
		t.Errorf("the guest saw %d ARP replies, want the ring's %d after the stall", s.arpReply, sessionRing)
	}
}

const (
	sessionMaxSteps = 32
	// The limits are small so that a short script can reach them.
	sessionMaxFlows  = 6
	sessionMaxUDP    = 3
	sessionMaxICMP   = 2
	sessionRate      = 5
	sessionGuestPort = 40000
	sessionRing      = 16
)

var (
	sessionGuest  = netip.MustParseAddr("10.0.2.15")
	sessionGuest6 = netip.MustParseAddr("fd00::15")
	// sessionSync is the sender address of sync's ARP requests, so that
	// their answers tell themselves apart from those to the script's.
	sessionSync = netip.MustParseAddr("10.0.2.14")
)

// The operations a step can name (its first byte, modulo opCount).
const (
	opSYN = iota
	opACK
	opFIN
	opRST
	opTCPRaw
	opUDP
	opDNS
	opDHCP
	opEcho
	opARP
	opHost
	opClock
	opSync
	opCount
)

// hostSide holds the real loopback sockets guests' flows meet, shared by
// every input of a process: an echo server, one that closes each
// connection at once, one that resets it (SO_LINGER 0), one that holds
// connections for the script's host events, a closed TCP port, a UDP echo,
// a closed UDP port and a DNS upstream answering every query.
type hostSide struct {
	tcpPorts [5]uint16 // echo, close, reset, hold, closed
	udpEcho  uint16
	udpShut  uint16
	dns      uint16

	mu   sync.Mutex
	held []*net.TCPConn
}

func newHostSide(tb testing.TB) *hostSide {
	h := &hostSide{}
	// The servers' sockets get small receive buffers (accepted ones
	// inherit them), so a few steps of a guest's data fill a connection
	// the hold server never reads: slipway's writes to it come out short,
	// then would block.
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 2048) })
	}}
	listen := func() *net.TCPListener {
		l, err := lc.Listen(context.Background(), "tcp4", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { l.Close() })
		return l.(*net.TCPListener)
	}
	serve := func(i int, each func(c *net.TCPConn)) {
		l := listen()
		h.tcpPorts[i] = uint16(l.Addr().(*net.TCPAddr).Port)
		go func() {
			for {
				c, err := l.AcceptTCP()
				if err != nil {
					return
				}
				each(c)
			}
		}()
	}
	serve(0, func(c *net.TCPConn) {
		// Not io.Copy: between two TCP sockets it splices through a
		// pooled pipe pair that outlives the connection (until a GC),
		// which the descriptor check would take for a leak.
		go func() {
			buf := make([]byte, 4096)
			for {
				n, err := c.Read(buf)
				if n > 0 {
					c.Write(buf[:n])
				}
				if err != nil {
					break
				}
			}
			c.Close()
		}()
	})
	serve(1, func(c *net.TCPConn) { c.Close() })
	serve(2, func(c *net.TCPConn) { c.SetLinger(0); c.Close() })
	serve(3, func(c *net.TCPConn) {
		h.mu.Lock()
		h.held = append(h.held, c)
		h.mu.Unlock()
	})
	closed := listen()
	h.tcpPorts[4] = uint16(closed.Addr().(*net.TCPAddr).Port)
	closed.Close()

	udp := func() *net.UDPConn {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { c.Close() })
		return c
	}
	answer := func(c *net.UDPConn, reply func([]byte) []byte) {
		go func() {
			buf := make([]byte, 65536)
			for {
				n, from, err := c.ReadFromUDP(buf)
				if err != nil {
					return
				}
				if r := reply(buf[:n]); r != nil {
					c.WriteToUDP(r, from)
				}
			}
		}()
	}
	echo := udp()
	h.udpEcho = uint16(echo.LocalAddr().(*net.UDPAddr).Port)
	answer(echo, func(b []byte) []byte { return b })
	dns := udp()
	h.dns = uint16(dns.LocalAddr().(*net.UDPAddr).Port)
	answer(dns, func(q []byte) []byte {
		if len(q) < 12 {
			return nil
		}
		r := append([]byte(nil), q...)
		r[2] |= 0x80 // QR: a response, no answers (NODATA)
		r[3] = 0x80  // RA
		return r
	})
	shut := udp()
	h.udpShut = uint16(shut.LocalAddr().(*net.UDPAddr).Port)
	shut.Close()
	return h
}

// event applies a host-side event to one held connection: data toward the
// guest, a half close, a close, or a reset.
func (h *hostSide) event(which, what, size byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.held) == 0 {
		return
	}
	i := int(which) % len(h.held)
	c := h.held[i]
	switch what % 4 {
	case 0:
		c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		c.Write(make([]byte, 1+int(size)*16))
		return
	case 1:
		c.CloseWrite()
		return
	case 2:
		c.Close()
	case 3:
		c.SetLinger(0)
		c.Close()
	}
	h.held = append(h.held[:i], h.held[i+1:]...)
}

// release closes every held connection.
func (h *hostSide) release() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, c := range h.held {
		c.Close()
	}
	h.held = nil
}

// tcpState is one guest port's view of its connection.
type tcpState struct {
	seq  uint32 // the guest's next sequence number
	ack  uint32 // the next sequence number slipway will send
	seen int    // TCP segments slipway sent to this port
	// synAck is ack just after the last SYN-ACK: its sequence number+1;
	// fin says a FIN came since.
	synAck uint32
	fin    bool
}

// received is how many bytes of data came since the SYN-ACK.
func (st tcpState) received() uint32 {
	n := st.ack - st.synAck
	if st.fin {
		n--
	}
	return n
}

// session is one input's network and the guest's side of it.
type session struct {
	t     *testing.T
	host  *hostSide
	n     *Network
	guest *pipe.End
	gwMAC net.HardwareAddr
	cfg   config.Config
	clock atomic.Int64 // the flow table's clock, in Unix nanoseconds
	// stallUntil (Unix nanoseconds) stops the guest's reader until then:
	// a VMM that stopped reading, whose socket refuses more (EAGAIN,
	// or ENOBUFS on macOS), which the link reports as link.ErrQueueFull.
	stallUntil  atomic.Int64
	readInStall atomic.Int64 // frames the reader took during a stall
	// holdStall, when set, makes the first stall last (up to
	// stallHoldLimit) past its time while it returns true: for tests of
	// the harness itself, which must not depend on how fast the machine
	// answers. Set before the reader starts; only the reader reads it.
	holdStall func(*session) bool

	mu  sync.Mutex
	tcp [4]tcpState
	// connTarget is where each guest port's last SYN went (only step
	// touches it).
	connTarget [4]netip.AddrPort
	waited     time.Duration // of waitBudget (only step touches it)
	problems   []string
	arpReply   int // ARP replies to the guest seen
	syncReply  int // of which answered sync's requests
	// txFull is the frames the guest's ring refused (its link's tx_full
	// at the end of the script).
	txFull uint64
	done   chan struct{}
}

// runSession plays script on a new network, checks the invariants and
// returns the guest's side, for tests of the harness itself.
func runSession(t *testing.T, host *hostSide, script []byte, holdStall ...func(*session) bool) *session {
	runtime.GC()
	goroutines, fds := runtime.NumGoroutine(), openFDs()

	s := &session{t: t, host: host, done: make(chan struct{})}
	if len(holdStall) > 0 {
		s.holdStall = holdStall[0]
	}
	s.clock.Store(time.Now().UnixNano())
	cfg := config.Default()
	dns, _ := config.ParseDNSServer(fmt.Sprintf("127.0.0.1:%d", host.dns))
	cfg.DNSUpstreams = []config.DNSServer{dns}
	cfg.LogLevel = "error"
	cfg.Limits.MaxFlows = sessionMaxFlows
	cfg.Limits.MaxUDPFlowsPerGuest = sessionMaxUDP
	cfg.Limits.MaxICMPFlows = sessionMaxICMP
	cfg.Limits.MaxNewFlowsPerSecond = sessionRate
	n, err := build(cfg, nil, Host{}, seams{now: func() time.Time { return time.Unix(0, s.clock.Load()) }})
	if err != nil {
		t.Fatal(err)
	}
	s.n, s.cfg, s.gwMAC = n, n.Config(), n.gwMAC
	// A small ring (QEMU's datagram socket queues 10), so that a guest
	// not reading (opSync's stall) fills it within a few steps.
	near, far := pipe.NewDepth("guest", false, sessionRing)
	s.guest = far
	n.Attach(near)
	go s.read()
	for i := range s.tcp {
		s.tcp[i].seq = uint32(i+1) * 0x10000000
		s.connTarget[i] = s.tcpTarget(0)
	}

	s.sync()
	for i := 0; i+4 <= len(script); i += 4 {
		s.step(script[i : i+4])
		s.check()
	}
	s.sync()
	s.check()
	s.txFull = s.linkTxFull()

	host.release()
	n.Close()
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the guest's link did not end with the network")
	}
	if l := n.flows.Len(); l != 0 {
		t.Fatalf("%d flows left after Close", l)
	}
	// The host's servers end their side as slipway's sockets close; a
	// connection the hold server accepts late is closed here.
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		host.release()
		if runtime.NumGoroutine() <= goroutines && openFDs() <= fds {
			return s
		}
		time.Sleep(5 * time.Millisecond)
	}
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	t.Fatalf("after Close: goroutines %d (before %d), fds %d (before %d) %v\n%s",
		runtime.NumGoroutine(), goroutines, openFDs(), fds, fdList(), buf)
	return nil
}

// linkTxFull sums the tx_full counters of the network's links.
func (s *session) linkTxFull() uint64 {
	var sum uint64
	for _, l := range s.n.Links() {
		for _, c := range l.Counters {
			if c.Name == "tx_full" {
				sum += c.Value
			}
		}
	}
	return sum
}

// stallHoldLimit bounds a held stall, so a broken network fails the test
// instead of hanging it.
const stallHoldLimit = 5 * time.Second

func openFDs() int {
	es, _ := os.ReadDir("/proc/self/fd")
	return len(es)
}

// fdList names the open descriptors, for a failure message.
func fdList() []string {
	es, _ := os.ReadDir("/proc/self/fd")
	var out []string
	for _, e := range es {
		target, _ := os.Readlink("/proc/self/fd/" + e.Name())
		out = append(out, e.Name()+"->"+target)
	}
	return out
}

// read takes every frame slipway sends toward the guest: it checks it,
// keeps the TCP state, and answers ARP and neighbour solicitations for the
// guest's addresses as a guest would.
func (s *session) read() {
	defer close(s.done)
	bufs, sizes := link.NewBuffers(32)
	for {
		for w := time.Until(time.Unix(0, s.stallUntil.Load())); w > 0; w = time.Until(time.Unix(0, s.stallUntil.Load())) {
			time.Sleep(w)
		}
		if s.holdStall != nil && s.stallUntil.Load() != 0 {
			for end := time.Now().Add(stallHoldLimit); s.holdStall(s) && time.Now().Before(end); {
				time.Sleep(time.Millisecond)
			}
			s.holdStall = nil
		}
		// One frame a call: a stall that begins while the reader waits
		// in Read lets at most that one frame through.
		n, err := s.guest.Read(bufs[:1], sizes[:1])
		if err != nil {
			return
		}
		if time.Now().UnixNano() < s.stallUntil.Load() {
			s.readInStall.Add(1)
		}
		for i := 0; i < n; i++ {
			b := bufs[i][:link.VnetHdrLen+sizes[i]]
			s.take(b[:link.VnetHdrLen], b[link.VnetHdrLen:])
		}
	}
}

func (s *session) take(hdr, eth []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := checkToGuest(hdr, eth, s.gwMAC, s.cfg.MTU); err != nil {
		s.problems = append(s.problems, fmt.Sprintf("%v: % x", err, eth))
		return
	}
	v := frame.Parse(hdr, eth)
	switch {
	case v.EtherType == header.ARPProtocolNumber:
		a := header.ARP(v.L3)
		target, _ := netip.AddrFromSlice(a.ProtocolAddressTarget())
		switch {
		case a.Op() == header.ARPReply:
			s.arpReply++
			if target == sessionSync {
				s.syncReply++
			}
		case a.Op() == header.ARPRequest && target == sessionGuest:
			sender, _ := netip.AddrFromSlice(a.ProtocolAddressSender())
			s.write(frame.ARPReply(probeMAC, sessionGuest, net.HardwareAddr(a.HardwareAddressSender()), sender))
		}
	case v.Proto == header.ICMPv6ProtocolNumber && v.L4Off > 0:
		m := v.L3[v.L4Off:]
		if m[0] == uint8(header.ICMPv6NeighborSolicit) && len(m) >= 24 {
			if target, _ := netip.AddrFromSlice(m[8:24]); target == sessionGuest6 {
				body := append([]byte{0x60, 0, 0, 0}, target.AsSlice()...)
				body = append(body, 2, 1)
				body = append(body, probeMAC...)
				s.write(frame.ICMPv6(s.gwMAC, probeMAC, sessionGuest6, v.Src, uint8(header.ICMPv6NeighborAdvert), body))
			}
		}
	case v.Proto == header.TCPProtocolNumber && v.L4Off > 0:
		tcp := header.TCP(v.L3[v.L4Off:])
		p := int(tcp.DestinationPort()) - sessionGuestPort
		if p < 0 || p >= len(s.tcp) {
			return
		}
		st := &s.tcp[p]
		st.seen++
		next := tcp.SequenceNumber() + uint32(len(tcp)-int(tcp.DataOffset()))
		if tcp.Flags().Contains(header.TCPFlagSyn) || tcp.Flags().Contains(header.TCPFlagFin) {
			next++
		}
		if !tcp.Flags().Contains(header.TCPFlagRst) {
			st.ack = next
		}
		if tcp.Flags().Contains(header.TCPFlagSyn) {
			st.synAck, st.fin = next, false
		}
		if tcp.Flags().Contains(header.TCPFlagFin) {
			st.fin = true
		}
	}
}

// write sends a frame from the guest (a full ring drops it, as a NIC
// would; the sync below asks again).
// write sends one guest frame. The guest's ring toward slipway is as
// small as the other way; like a VMM's TX ring, it waits (within a
// bound) for room rather than lose the frame.
func (s *session) write(b []byte) {
	for range 200 {
		if _, err := s.guest.Write(link.Frames(b)); !errors.Is(err, link.ErrQueueFull) {
			return
		}
		time.Sleep(50 * time.Microsecond)
	}
}

// checkToGuest is what a guest's NIC and stack would check of a frame from
// slipway: it parses, its checksums are right and complete, it fits.
func checkToGuest(hdr, eth []byte, gw net.HardwareAddr, mtu int) error {
	if hdr[0]&link.FlagNeedsCsum != 0 || hdr[1] != link.GSONone {
		return fmt.Errorf("offloads on a link that takes none (flags %#x, gso %d)", hdr[0], hdr[1])
	}
	v := frame.Parse(hdr, eth)
	if v.Bad != frame.OK {
		return fmt.Errorf("does not parse (problem %d)", v.Bad)
	}
	if string(header.Ethernet(eth).SourceAddress()) != string(gw) {
		return fmt.Errorf("source MAC %v is not the gateway's", net.HardwareAddr(header.Ethernet(eth).SourceAddress()))
	}
	switch v.EtherType {
	case header.ARPProtocolNumber:
		if !header.ARP(v.L3).IsValid() {
			return fmt.Errorf("bad ARP")
		}
		return nil
	case header.IPv4ProtocolNumber:
		if !header.IPv4(v.L3).IsChecksumValid() {
			return fmt.Errorf("bad IPv4 header checksum")
		}
	case header.IPv6ProtocolNumber:
	default:
		return fmt.Errorf("EtherType %#x", v.EtherType)
	}
	if len(v.L3) > mtu {
		return fmt.Errorf("a %d-byte packet over a %d MTU", len(v.L3), mtu)
	}
	if v.Fragment || v.L4Off == 0 {
		return nil
	}
	l4 := v.L3[v.L4Off:]
	src, dst := tcpip.AddrFromSlice(v.Src.AsSlice()), tcpip.AddrFromSlice(v.Dst.AsSlice())
	pseudo := func() uint16 { return header.PseudoHeaderChecksum(v.Proto, src, dst, uint16(len(l4))) }
	switch v.Proto {
	case header.TCPProtocolNumber:
		if checksum.Checksum(l4, pseudo()) != 0xffff {
			return fmt.Errorf("bad TCP checksum")
		}
	case header.UDPProtocolNumber:
		u := header.UDP(l4)
		if int(u.Length()) != len(l4) {
			return fmt.Errorf("UDP length %d in a %d-byte datagram", u.Length(), len(l4))
		}
		if (u.Checksum() != 0 || v.EtherType == header.IPv6ProtocolNumber) && checksum.Checksum(l4, pseudo()) != 0xffff {
			return fmt.Errorf("bad UDP checksum")
		}
	case header.ICMPv4ProtocolNumber:
		if checksum.Checksum(l4, 0) != 0xffff {
			return fmt.Errorf("bad ICMP checksum")
		}
	case header.ICMPv6ProtocolNumber:
		if checksum.Checksum(l4, pseudo()) != 0xffff {
			return fmt.Errorf("bad ICMPv6 checksum")
		}
	}
	return nil
}

// check fails the input on a bad frame or a limit not held.
func (s *session) check() {
	s.t.Helper()
	s.mu.Lock()
	problems := s.problems
	s.mu.Unlock()
	if len(problems) > 0 {
		s.t.Fatalf("slipway sent a bad frame toward the guest: %s", problems[0])
	}
	flows := s.n.Flows()
	if len(flows) > sessionMaxFlows {
		s.t.Fatalf("%d flows over a limit of %d", len(flows), sessionMaxFlows)
	}
	var udp, icmp int
	for _, f := range flows {
		switch f.Proto {
		case config.UDP:
			udp++
		case config.ICMP:
			icmp++
		}
	}
	if udp > sessionMaxUDP || icmp > sessionMaxICMP {
		s.t.Fatalf("%d UDP and %d ICMP flows, over limits of %d and %d", udp, icmp, sessionMaxUDP, sessionMaxICMP)
	}
}

// sync asks the gateway for its MAC and waits for the answer: every frame
// the guest sent before has been through the input path, and the network
// still answers.
func (s *session) sync() {
	s.t.Helper()
	s.mu.Lock()
	before := s.syncReply
	s.mu.Unlock()
	// The stack answers a guest's frames in order, so the answer to this
	// request comes after those to everything the script sent before
	// it. A stalled guest's full ring may drop it: ask again now and
	// then. The bound is far above what an answer takes on a loaded
	// machine; reaching it means the network stopped answering.
	start := time.Now()
	for try := 0; time.Since(start) < syncLimit; try++ {
		if try%20 == 0 {
			s.write(frame.ARPRequest(probeMAC, sessionSync, s.cfg.Gateway))
		}
		time.Sleep(time.Millisecond * time.Duration(min(try, 10)/2))
		s.mu.Lock()
		got := s.syncReply > before
		s.mu.Unlock()
		if got {
			return
		}
	}
	s.t.Fatal("the gateway stopped answering ARP")
}

// syncLimit bounds one sync.
const syncLimit = 5 * time.Second

// pause sleeps for d out of the input's budget of waiting, and says
// whether any was left. The budget keeps every input well under a second
// of waiting: the fuzzer's worker must answer its coordinator, and a slow
// input makes few executions.
func (s *session) pause(d time.Duration) bool {
	if s.waited >= waitBudget {
		return false
	}
	d = min(d, waitBudget-s.waited)
	s.waited += d
	time.Sleep(d)
	return true
}

// stall stops the guest's reader for d, within the wait budget.
func (s *session) stall(d time.Duration) {
	if s.waited >= waitBudget {
		return
	}
	d = min(d, waitBudget-s.waited)
	s.waited += d
	s.stallUntil.Store(time.Now().Add(d).UnixNano())
}

// waitBudget is how long one input may spend in pacing waits.
const waitBudget = 300 * time.Millisecond

// waitSegment waits, within a bound, for slipway to send port p a segment
// after its seen count was before: the answer to a SYN is a SYN-ACK once
// the host dial succeeded, or a RST. Pacing only: nothing fails if none
// comes.
func (s *session) waitSegment(p, before int) {
	for s.pause(5 * time.Millisecond) {
		s.mu.Lock()
		seen := s.tcp[p].seen
		s.mu.Unlock()
		if seen > before {
			return
		}
	}
}

func (s *session) tcpTarget(i byte) netip.AddrPort {
	if i%8 == 7 {
		return netip.AddrPortFrom(s.cfg.DNSAddress, 53)
	}
	if i%8 == 6 { // a service address, where only DNS listens
		return netip.AddrPortFrom(s.cfg.DNSAddress, 80)
	}
	return netip.AddrPortFrom(s.cfg.Gateway, s.host.tcpPorts[int(i%8)%5])
}

// step plays one 4-byte step.
func (s *session) step(b []byte) {
	op, a, c, d := b[0]%opCount, b[1], b[2], b[3]
	p := int(a % 4)
	gp := netip.AddrPortFrom(sessionGuest, uint16(sessionGuestPort+p))
	s.mu.Lock()
	st := s.tcp[p]
	s.mu.Unlock()
	dst := s.connTarget[p]
	switch op {
	case opSYN:
		dst = s.tcpTarget(a >> 2)
		s.connTarget[p] = dst
		s.mu.Lock()
		s.tcp[p].seq += 0x01000000
		st = s.tcp[p]
		s.tcp[p].seq++
		s.mu.Unlock()
		s.write(tcpFrame(s.gwMAC, gp, dst, header.TCPFlagSyn, st.seq, 0, nil))
		s.waitSegment(p, st.seen)
	case opACK:
		payload := make([]byte, int(c)*8)
		s.write(tcpFrame(s.gwMAC, gp, dst, header.TCPFlagAck|header.TCPFlagPsh, st.seq, st.ack, payload))
		s.advance(p, len(payload))
	case opFIN:
		s.write(tcpFrame(s.gwMAC, gp, dst, header.TCPFlagAck|header.TCPFlagFin, st.seq, st.ack, nil))
		s.advance(p, 1)
	case opRST:
		s.write(tcpFrame(s.gwMAC, gp, dst, header.TCPFlagRst|header.TCPFlagAck, st.seq, st.ack, nil))
	case opTCPRaw:
		// Any flags, a sequence number off by a multiple of 64 KiB
		// either way (out of the window), a short payload.
		seq := st.seq + uint32(int32(int8(d))*65536)
		s.write(tcpFrame(s.gwMAC, gp, dst, header.TCPFlags(c&0x3f), seq, st.ack, make([]byte, int(d%32))))
	case opUDP:
		targets := []netip.AddrPort{
			netip.AddrPortFrom(s.cfg.Gateway, s.host.udpEcho),
			netip.AddrPortFrom(s.cfg.Gateway, s.host.udpShut),
			netip.AddrPortFrom(s.cfg.DNSAddress, 53), // not a DNS message
			netip.AddrPortFrom(s.cfg.Gateway, 67),
		}
		to := targets[int(c)%len(targets)]
		s.write(frame.UDP4(s.gwMAC, probeMAC, gp, to, make([]byte, int(d)*4)))
	case opDNS:
		if c&1 == 0 {
			s.write(frame.UDP4(s.gwMAC, probeMAC, gp, netip.AddrPortFrom(s.cfg.DNSAddress, 53), dnsQuery(a, c, d)))
		} else {
			s.write(udp6Frame(s.gwMAC, netip.AddrPortFrom(sessionGuest6, gp.Port()), netip.AddrPortFrom(s.cfg.IPv6DNS, 53), dnsQuery(a, c, d)))
		}
	case opDHCP:
		s.write(frame.UDP4(frame.Broadcast(), probeMAC, netip.MustParseAddrPort("0.0.0.0:68"),
			netip.MustParseAddrPort("255.255.255.255:67"), dhcpMessage(a%2 == 0, c, s.cfg)))
	case opEcho:
		payload := make([]byte, int(d))
		if c&1 == 0 {
			s.write(frame.Echo4(s.gwMAC, probeMAC, sessionGuest, s.cfg.Gateway, uint16(a), uint16(c), payload))
		} else {
			s.write(frame.ICMPv6(s.gwMAC, probeMAC, sessionGuest6, s.cfg.IPv6Gateway, uint8(header.ICMPv6EchoRequest),
				append([]byte{0, a, 0, c}, payload...)))
		}
	case opARP:
		targets := []netip.Addr{s.cfg.Gateway, s.cfg.DNSAddress, netip.MustParseAddr("10.0.2.77"), sessionGuest}
		s.write(frame.ARPRequest(probeMAC, sessionGuest, targets[int(c)%len(targets)]))
		if d&1 == 1 { // and a router solicitation
			s.write(frame.ICMPv6(frame.Broadcast(), probeMAC, netip.MustParseAddr("fe80::15"), netip.MustParseAddr("ff02::2"),
				uint8(header.ICMPv6RouterSolicit), make([]byte, 4)))
		}
	case opHost:
		s.host.event(a, c, d)
	case opClock:
		s.clock.Add(int64(a) * int64(20*time.Millisecond))
	case opSync:
		// d's top bit: the guest stops reading first, for up to 160ms.
		if d&0x80 != 0 {
			s.stall(time.Duration(d&7+1) * 20 * time.Millisecond)
			return // a sync would wait for the stall to end
		}
		s.sync()
		s.pause(time.Duration(a%8) * 5 * time.Millisecond)
	}
}

// advance moves port p's sequence number past n sent bytes.
func (s *session) advance(p, n int) {
	s.mu.Lock()
	s.tcp[p].seq += uint32(n)
	s.mu.Unlock()
}

func tcpFrame(gw net.HardwareAddr, src, dst netip.AddrPort, flags header.TCPFlags, seq, ack uint32, payload []byte) []byte {
	l4 := make([]byte, header.TCPMinimumSize+len(payload))
	tcp := header.TCP(l4)
	tcp.Encode(&header.TCPFields{SrcPort: src.Port(), DstPort: dst.Port(), SeqNum: seq, AckNum: ack,
		DataOffset: header.TCPMinimumSize, Flags: flags, WindowSize: 65535})
	copy(l4[header.TCPMinimumSize:], payload)
	tcp.SetChecksum(^checksum.Checksum(l4, pseudo(header.TCPProtocolNumber, src.Addr(), dst.Addr(), len(l4))))
	return frame.Eth(gw, probeMAC, uint16(header.IPv4ProtocolNumber), frame.IPv4(uint8(header.TCPProtocolNumber), src.Addr(), dst.Addr(), l4))
}

func udp6Frame(gw net.HardwareAddr, src, dst netip.AddrPort, payload []byte) []byte {
	l4 := make([]byte, header.UDPMinimumSize+len(payload))
	u := header.UDP(l4)
	u.Encode(&header.UDPFields{SrcPort: src.Port(), DstPort: dst.Port(), Length: uint16(len(l4))})
	copy(l4[header.UDPMinimumSize:], payload)
	u.SetChecksum(^checksum.Checksum(l4, pseudo(header.UDPProtocolNumber, src.Addr(), dst.Addr(), len(l4))))
	return frame.Eth(gw, probeMAC, uint16(header.IPv6ProtocolNumber), frame.IPv6(uint8(header.UDPProtocolNumber), src.Addr(), dst.Addr(), l4))
}

func pseudo(proto tcpip.TransportProtocolNumber, src, dst netip.Addr, n int) uint16 {
	return header.PseudoHeaderChecksum(proto, tcpip.AddrFromSlice(src.AsSlice()), tcpip.AddrFromSlice(dst.AsSlice()), uint16(n))
}

// dnsQuery is a query for one of a few names and types, id from id.
func dnsQuery(id, name, qtype byte) []byte {
	names := [][]string{{"example", "com"}, {"localhost"}, {"a", "b", "c", "d"}, {"x"}}
	types := []uint16{1, 28, 15, 16, 255, 33, 12, 65}
	q := []byte{id, id ^ 0x5a, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0}
	for _, l := range names[int(name>>1)%len(names)] {
		q = append(q, byte(len(l)))
		q = append(q, l...)
	}
	q = append(q, 0)
	q = binary.BigEndian.AppendUint16(q, types[int(qtype)%len(types)])
	return binary.BigEndian.AppendUint16(q, 1)
}

// dhcpMessage is a DHCPDISCOVER, or a DHCPREQUEST for the first address of
// the pool, from the guest's MAC.
func dhcpMessage(discover bool, xid byte, cfg config.Config) []byte {
	m := make([]byte, 240)
	m[0], m[1], m[2] = 1, 1, 6
	m[4], m[7] = xid, 1
	m[10] = 0x80 // broadcast
	copy(m[28:], probeMAC)
	copy(m[236:], []byte{99, 130, 83, 99})
	if discover {
		m = append(m, 53, 1, 1)
	} else {
		m = append(m, 53, 1, 3, 50, 4)
		m = append(m, cfg.DHCPStart.AsSlice()...)
		m = append(m, 54, 4)
		m = append(m, cfg.Gateway.AsSlice()...)
	}
	return append(m, 55, 3, 1, 3, 6, 255)
}
