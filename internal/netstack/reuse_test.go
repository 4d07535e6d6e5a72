package netstack

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/slipway-net/slipway/internal/frame"
	"github.com/slipway-net/slipway/link"
)

var (
	reuseGuest    = netip.MustParseAddrPort("10.0.2.15:40123")
	reuseRemote   = netip.MustParseAddrPort("192.0.2.9:80")
	reuseGuestMAC = net.HardwareAddr{0x52, 0x54, 0x0a, 0x00, 0x02, 0x0f}
	reuseGwMAC    = net.HardwareAddr{0x52, 0x55, 0x0a, 0x00, 0x02, 0x02}
)

// segment is what the test reads of a TCP segment the stack sent the guest.
type segment struct {
	flags    header.TCPFlags
	seq, ack uint32
}

// captureOutput keeps the stack's TCP segments for the guest.
type captureOutput struct{ segs chan segment }

func (c *captureOutput) FromStack(frames []link.Frame) {
	for i := range frames {
		b := make([]byte, link.VnetHdrLen+frames[i].Len())
		frames[i].CopyTo(b)
		f := b[link.VnetHdrLen:]
		if header.Ethernet(f).Type() != header.IPv4ProtocolNumber {
			continue
		}
		ip := header.IPv4(f[header.EthernetMinimumSize:])
		if ip.TransportProtocol() != header.TCPProtocolNumber {
			continue
		}
		t := header.TCP(ip.Payload())
		c.segs <- segment{t.Flags(), t.SequenceNumber(), t.AckNumber()}
	}
}
func (c *captureOutput) AllLinksOffload() bool { return false }

// reuseStack is a stack whose forwarder completes every connection and
// hands over its endpoint, with the guest's MAC known.
func reuseStack(t *testing.T) (*Stack, *captureOutput, chan tcpip.Endpoint) {
	t.Helper()
	out := &captureOutput{segs: make(chan segment, 64)}
	st, err := New(Options{MTU: 1500, MAC: reuseGwMAC, Addresses: []netip.Prefix{netip.MustParsePrefix("10.0.2.2/24")}, Output: out})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	guest := tcpip.AddrFromSlice(reuseGuest.Addr().AsSlice())
	if terr := st.s.AddStaticNeighbor(nicID, header.IPv4ProtocolNumber, guest, tcpip.LinkAddress(reuseGuestMAC)); terr != nil {
		t.Fatal(terr)
	}
	eps := make(chan tcpip.Endpoint, 4)
	st.SetTCPForwarder(16, nil, func(r *tcp.ForwarderRequest) {
		var wq waiter.Queue
		ep, terr := r.CreateEndpoint(&wq)
		if terr != nil {
			r.Complete(true)
			return
		}
		r.Complete(false)
		eps <- ep
	})
	return st, out, eps
}

// send delivers one segment from the guest.
func send(st *Stack, flags header.TCPFlags, seq, ack uint32, payload string) {
	l4 := make([]byte, header.TCPMinimumSize+len(payload))
	t := header.TCP(l4)
	t.Encode(&header.TCPFields{SrcPort: reuseGuest.Port(), DstPort: reuseRemote.Port(), SeqNum: seq, AckNum: ack, DataOffset: header.TCPMinimumSize, Flags: flags, WindowSize: 65535})
	copy(l4[header.TCPMinimumSize:], payload)
	src, dst := tcpip.AddrFromSlice(reuseGuest.Addr().AsSlice()), tcpip.AddrFromSlice(reuseRemote.Addr().AsSlice())
	t.SetChecksum(^checksum.Checksum(l4, header.PseudoHeaderChecksum(header.TCPProtocolNumber, src, dst, uint16(len(l4)))))
	b := frame.Eth(reuseGwMAC, reuseGuestMAC, 0x0800, frame.IPv4(6, reuseGuest.Addr(), reuseRemote.Addr(), l4))
	st.Deliver([]frame.View{frame.Parse(b[:link.VnetHdrLen], b[link.VnetHdrLen:])})
}

// expect waits for a segment to the guest with the given flags (and ack
// number, unless 0), skipping others.
func expect(t *testing.T, out *captureOutput, flags header.TCPFlags, ack uint32) segment {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case s := <-out.segs:
			if s.flags == flags && (ack == 0 || s.ack == ack) {
				return s
			}
		case <-deadline:
			t.Fatalf("no segment with flags %v ack %d for the guest", flags, ack)
		}
	}
}

// waitState waits until ep is in state want.
func waitState(t *testing.T, ep tcpip.Endpoint, want tcp.EndpointState) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); tcp.EndpointState(ep.State()) != want; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("endpoint in state %v, want %v", tcp.EndpointState(ep.State()), want)
		}
	}
}

// connect opens a connection from the guest (first sequence number 1000)
// and returns the stack's endpoint and its first sequence number.
func connect(t *testing.T, st *Stack, out *captureOutput, eps chan tcpip.Endpoint) (tcpip.Endpoint, uint32) {
	t.Helper()
	send(st, header.TCPFlagSyn, 1000, 0, "")
	synack := expect(t, out, header.TCPFlagSyn|header.TCPFlagAck, 1001)
	send(st, header.TCPFlagAck, 1001, synack.seq+1, "")
	select {
	case ep := <-eps:
		return ep, synack.seq
	case <-time.After(30 * time.Second):
		t.Fatal("the forwarder never got the connection")
		return nil, 0
	}
}

// A guest whose connection ended may connect again from the same port at
// once: while the stack still held the old connection (its final ACK
// queued but not yet processed, or TIME-WAIT not yet over), the new SYN
// went to the old endpoint, never to the forwarder; the guest got a RST
// (connection refused) or nothing (a 1 s stall).
func TestSYNReplacesClosingConnection(t *testing.T) {
	t.Run("last-ack", func(t *testing.T) {
		st, out, eps := reuseStack(t)
		ep, iss := connect(t, st, out, eps)
		send(st, header.TCPFlagFin|header.TCPFlagAck, 1001, iss+1, "")
		expect(t, out, header.TCPFlagAck, 1002)
		ep.Close()
		expect(t, out, header.TCPFlagFin|header.TCPFlagAck, 1002)
		waitState(t, ep, tcp.StateLastAck)
		// The guest's final ACK is still in the stack's queue when its
		// next SYN comes: here it never comes at all.
		send(st, header.TCPFlagSyn, 5000, 0, "")
		expect(t, out, header.TCPFlagSyn|header.TCPFlagAck, 5001)
	})
	t.Run("time-wait", func(t *testing.T) {
		st, out, eps := reuseStack(t)
		// timeWait is 0, so TIME-WAIT lasts only until a timer runs;
		// make it last for the test.
		tw := tcpip.TCPTimeWaitTimeoutOption(time.Hour)
		if terr := st.s.SetTransportProtocolOption(tcp.ProtocolNumber, &tw); terr != nil {
			t.Fatal(terr)
		}
		ep, iss := connect(t, st, out, eps)
		ep.Close()
		expect(t, out, header.TCPFlagFin|header.TCPFlagAck, 1001)
		send(st, header.TCPFlagFin|header.TCPFlagAck, 1001, iss+2, "")
		expect(t, out, header.TCPFlagAck, 1002)
		waitState(t, ep, tcp.StateTimeWait)
		send(st, header.TCPFlagSyn, 5000, 0, "")
		expect(t, out, header.TCPFlagSyn|header.TCPFlagAck, 5001)
	})
}

// The old connection is not dropped for a new SYN while it holds bytes the
// guest sent that its reader has not taken yet.
func TestSYNKeepsUnreadData(t *testing.T) {
	st, out, eps := reuseStack(t)
	ep, iss := connect(t, st, out, eps)
	send(st, header.TCPFlagPsh|header.TCPFlagAck, 1001, iss+1, "hello")
	send(st, header.TCPFlagFin|header.TCPFlagAck, 1006, iss+1, "")
	expect(t, out, header.TCPFlagAck, 1007)
	ep.Shutdown(tcpip.ShutdownWrite)
	expect(t, out, header.TCPFlagFin|header.TCPFlagAck, 1007)
	waitState(t, ep, tcp.StateLastAck)
	send(st, header.TCPFlagSyn, 5000, 0, "")
	var got bytes.Buffer
	if _, terr := ep.Read(&got, tcpip.ReadOptions{}); terr != nil {
		t.Fatalf("the guest's last bytes are gone: %v", terr)
	}
	if s := got.String(); s != "hello" {
		t.Fatalf("read %q, want hello", s)
	}
}
