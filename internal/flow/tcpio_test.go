package flow

import (
	"io"
	"net"
	"testing"
	"time"
)

// tcpPair returns two ends of a real loopback TCP connection.
func tcpPair(t *testing.T) (*net.TCPConn, *net.TCPConn) {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	a, err := net.Dial("tcp4", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a.(*net.TCPConn), b.(*net.TCPConn)
}

// The guest-to-host writer puts large chunks straight into the socket and
// allocates nothing per chunk.
func TestHostWriterWritesWithoutAllocating(t *testing.T) {
	a, b := tcpPair(t)
	rc, _ := a.SyscallConn()
	w := newHostWriter(rc, a)
	chunk := make([]byte, 32<<10)
	for i := range chunk {
		chunk[i] = byte(i)
	}
	got := make([]byte, len(chunk))
	allocs := testing.AllocsPerRun(100, func() {
		if n, err := w.Write(chunk); err != nil || n != len(chunk) {
			t.Fatalf("Write = %d, %v", n, err)
		}
		if err := w.flush(); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(b, got); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per chunk, want 0", allocs)
	}
	if string(got) != string(chunk) {
		t.Fatal("bytes changed on the way")
	}
}

// The host-to-guest payload reads the socket into the stack's buffer and
// allocates nothing per read.
func TestSockPayloadReadsWithoutAllocating(t *testing.T) {
	a, b := tcpPair(t)
	rc, _ := b.SyscallConn()
	src := newSockPayload(rc)
	msg := make([]byte, 8<<10)
	buf := make([]byte, len(msg))
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := a.Write(msg); err != nil {
			t.Fatal(err)
		}
		for got := 0; got < len(msg); {
			n, err := src.Read(buf[got:])
			if err == errNoData {
				time.Sleep(time.Millisecond)
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			got += n
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per read, want 0", allocs)
	}
}

// The probe tells data, an empty socket and a closed peer apart without
// waiting.
func TestProbeSeesDataEmptyAndEOF(t *testing.T) {
	a, b := tcpPair(t)
	rc, _ := b.SyscallConn()
	var r probeResult
	probe := func() probeResult {
		if err := rc.Read(r.poll); err != nil {
			t.Fatal(err)
		}
		return r
	}
	if got := probe(); !got.empty || got.avail != 0 || got.eof {
		t.Fatalf("empty socket: %+v", got)
	}
	a.Write([]byte("hello"))
	deadline := time.Now().Add(5 * time.Second)
	for probe().avail == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got := probe(); got.avail != 5 {
		t.Fatalf("5 bytes queued: %+v", got)
	}
	io.ReadFull(b, make([]byte, 5))
	a.CloseWrite()
	for !probe().eof && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got := probe(); !got.eof {
		t.Fatalf("after the peer's FIN: %+v", got)
	}
}

// A segment's payload starts with a few bytes in the view of its headers:
// those are coalesced, but the large rest of the segment must take them
// along in one direct write, not be copied behind them, and the order of
// the bytes must hold.
func TestHostWriterSendsSmallThenLargeDirectly(t *testing.T) {
	a, b := tcpPair(t)
	rc, _ := a.SyscallConn()
	w := newHostWriter(rc, a)
	small := []byte("first bytes of the segment")
	large := make([]byte, 48<<10)
	for i := range large {
		large[i] = byte(i % 251)
	}
	if _, err := w.Write(small); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(large); err != nil {
		t.Fatal(err)
	}
	if w.pend != nil && len(*w.pend) > 0 {
		t.Fatalf("%d bytes were copied aside although the socket took them", len(*w.pend))
	}
	if err := w.flush(); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(small)+len(large))
	if _, err := io.ReadFull(b, got); err != nil {
		t.Fatal(err)
	}
	if string(got[:len(small)]) != string(small) || string(got[len(small):]) != string(large) {
		t.Fatal("bytes changed or reordered on the way")
	}
}

// When the socket takes only part of a write, the rest waits in order:
// what was coalesced first, then the large chunk's remainder, then later
// chunks.
func TestHostWriterKeepsOrderWhenTheSocketIsFull(t *testing.T) {
	a, b := tcpPair(t) // b reads nothing until the flush: the 8 MiB cannot all fit
	rc, _ := a.SyscallConn()
	w := newHostWriter(rc, a)
	var want []byte
	for i, n := range []int{100, 8 << 20, 10, 64 << 10, 7, 32 << 10} {
		chunk := make([]byte, n)
		for j := range chunk {
			chunk[j] = byte(i*31 + j%199)
		}
		want = append(want, chunk...)
		if _, err := w.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	got := make([]byte, len(want))
	done := make(chan error, 1)
	go func() { _, err := io.ReadFull(b, got); done <- err }()
	if err := w.flush(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Fatal("bytes changed or reordered on the way")
	}
}
