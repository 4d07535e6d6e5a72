package flow

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/link/loopback"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// udpEndpoints returns a receiving UDP endpoint of a real gVisor stack and
// a sender connected to it.
func udpEndpoints(t *testing.T) (rx, tx tcpip.Endpoint) {
	t.Helper()
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{udp.NewProtocol},
	})
	t.Cleanup(s.Close)
	if err := s.CreateNIC(1, loopback.New()); err != nil {
		t.Fatal(err)
	}
	addr := tcpip.AddrFrom4([4]byte{10, 0, 0, 1})
	s.AddProtocolAddress(1, tcpip.ProtocolAddress{Protocol: ipv4.ProtocolNumber, AddressWithPrefix: addr.WithPrefix()}, stack.AddressProperties{})
	s.SetRouteTable([]tcpip.Route{{Destination: addr.WithPrefix().Subnet(), NIC: 1}})
	var wq1, wq2 waiter.Queue
	rx, err := s.NewEndpoint(udp.ProtocolNumber, ipv4.ProtocolNumber, &wq1)
	if err != nil {
		t.Fatal(err)
	}
	rx.SocketOptions().SetReceiveBufferSize(UDPReceiveBuffer, true)
	if err := rx.Bind(tcpip.FullAddress{Addr: addr, Port: 5000}); err != nil {
		t.Fatal(err)
	}
	tx, err = s.NewEndpoint(udp.ProtocolNumber, ipv4.ProtocolNumber, &wq2)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Connect(tcpip.FullAddress{Addr: addr, Port: 5000}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rx.Close(); tx.Close() })
	return rx, tx
}

// Datagrams the guest queued leave in runs of equal sizes, one call per
// run, and the host's receiver gets every one of them whole and in order:
// a shorter datagram ends a run, a larger one starts a new one, and an
// empty one is sent on its own.
func TestGuestDatagramRunsKeepEveryDatagram(t *testing.T) {
	rx, tx := udpEndpoints(t)
	sizes := []int{1400, 1400, 1400, 500, 1400, 1472, 1472, 0, 1400, 1400}
	for i := 0; i < 60; i++ {
		sizes = append(sizes, 1000) // more than one run's worth
	}
	var want [][]byte
	for i, n := range sizes {
		d := bytes.Repeat([]byte{byte(i)}, n)
		want = append(want, d)
		var r bytes.Reader
		r.Reset(d)
		if _, err := tx.Write(&r, tcpip.WriteOptions{}); err != nil {
			t.Fatalf("datagram %d: %v", i, err)
		}
	}

	recv, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer recv.Close()
	recv.SetReadBuffer(4 << 20)
	host, err := net.DialUDP("udp4", nil, recv.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	rc, _ := host.SyscallConn()
	p := &udpPump{rc: rc}
	calls, runs := 0, 0
	r := &datagramRuns{flow: &Flow{}, send: func(b []byte) error {
		calls++
		_, err := host.Write(b)
		return err
	}}
	if sendRun := p.runSender(); sendRun != nil {
		r.sendRun = func(b []byte, size int) error { calls++; runs++; return sendRun(b, size) }
	} else {
		r.noRuns = true
	}
	if terr := r.drain(rx); terr == nil {
		t.Fatal("drain ended without the endpoint running dry")
	}
	if r.failed {
		t.Fatal("a send failed")
	}

	buf := make([]byte, 65536)
	for i, w := range want {
		recv.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := recv.Read(buf)
		if err != nil {
			t.Fatalf("datagram %d of %d never arrived: %v", i, len(want), err)
		}
		if !bytes.Equal(buf[:n], w) {
			t.Fatalf("datagram %d: got %d bytes (first %v), want %d bytes of %d", i, n, buf[:min(n, 1)], len(w), i)
		}
	}
	if got := r.flow.ToHost.Load(); got != uint64(totalLen(want)) {
		t.Errorf("flow counted %d bytes to the host, want %d", got, totalLen(want))
	}
	if udpGSO && !r.noRuns && (runs == 0 || calls >= len(want)) {
		t.Errorf("%d datagrams took %d sends (%d runs): not sent in runs", len(want), calls, runs)
	}
}

func totalLen(bs [][]byte) int {
	n := 0
	for _, b := range bs {
		n += len(b)
	}
	return n
}

// The host-to-guest UDP readers take a datagram from the socket, and for
// a published port its sender, without allocating.
func TestDatagramReaderReadsWithoutAllocating(t *testing.T) {
	for _, from := range []bool{false, true} {
		rx, txs := udpSenders(t, 1)
		tx := txs[0]
		rc, _ := rx.SyscallConn()
		r := NewDatagramReader(rc, from)
		msg := []byte("a datagram from the host")
		allocs := testing.AllocsPerRun(200, func() {
			if _, err := tx.Write(msg); err != nil {
				t.Fatal(err)
			}
			b, sender, err := r.Read()
			if err != nil || !bytes.Equal(b, msg) {
				t.Fatalf("Read = %q, %v", b, err)
			}
			if from && sender != tx.LocalAddr().(*net.UDPAddr).AddrPort() {
				t.Fatalf("sender %v, want %v", sender, tx.LocalAddr())
			}
		})
		r.Release()
		if allocs != 0 {
			t.Errorf("from=%v: %v allocations per datagram, want 0", from, allocs)
		}
	}
}

// A reader takes datagrams a batch at a time (recvmmsg on Linux) and
// hands every one out whole, in order, with its own sender, however the
// batches fall.
func TestDatagramReaderBatchesInOrder(t *testing.T) {
	for _, from := range []bool{false, true} {
		senders := 2
		if !from { // a connected socket takes one sender's datagrams
			senders = 1
		}
		rx, txs := udpSenders(t, senders)
		rx.SetReadBuffer(4 << 20)
		rc, _ := rx.SyscallConn()
		r := NewDatagramReader(rc, from)
		// Sizes that vary, a largest one and an empty one among them,
		// more than two batches' worth.
		n := 2*dgramBatch + 3
		size := func(i int) int {
			switch i {
			case 5:
				return 65507 // the largest UDP payload over IPv4
			case 9:
				return 0
			}
			return 1 + i*97
		}
		for i := range n {
			msg := bytes.Repeat([]byte{byte(i)}, size(i))
			if _, err := txs[i%len(txs)].Write(msg); err != nil {
				t.Fatal(err)
			}
		}
		for i := range n {
			var b []byte
			var sender netip.AddrPort
			var err error
			ok := true
			if from {
				b, sender, err = r.Read()
			} else {
				b, ok, err = r.TryRead()
			}
			if err != nil || !ok {
				t.Fatalf("from=%v: datagram %d: ok %v, err %v", from, i, ok, err)
			}
			if len(b) != size(i) || (len(b) > 0 && (b[0] != byte(i) || b[len(b)-1] != byte(i))) {
				t.Fatalf("from=%v: datagram %d is %d bytes of %v, want %d of %d", from, i, len(b), b[:min(len(b), 1)], size(i), i)
			}
			if from {
				if sender != txs[i%len(txs)].LocalAddr().(*net.UDPAddr).AddrPort() {
					t.Fatalf("datagram %d from %v, want %v", i, sender, txs[i%len(txs)].LocalAddr())
				}
			}
		}
		if _, ok, err := r.TryRead(); ok || err != nil {
			t.Errorf("from=%v: a datagram more than was sent (ok %v, err %v)", from, ok, err)
		}
		// A Read of an empty socket waits for the next datagram, whole.
		later := []byte("sent while the reader waited")
		go func() {
			time.Sleep(20 * time.Millisecond)
			txs[0].Write(later)
		}()
		if b, _, err := r.Read(); err != nil || !bytes.Equal(b, later) {
			t.Errorf("from=%v: Read after waiting = %q, %v", from, b, err)
		}
		r.Release()
	}
}

// udpSenders is a loopback UDP socket and n sockets connected to it, all
// closed when the test ends.
func udpSenders(t *testing.T, n int) (*net.UDPConn, []*net.UDPConn) {
	t.Helper()
	rx, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rx.Close() })
	var txs []*net.UDPConn
	for range n {
		tx, err := net.DialUDP("udp4", nil, rx.LocalAddr().(*net.UDPAddr))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tx.Close() })
		txs = append(txs, tx)
	}
	return rx, txs
}
