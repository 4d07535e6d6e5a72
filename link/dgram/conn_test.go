//go:build linux

package dgram

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/slipway-net/slipway/link"
)

// socketpair returns our end as a *net.UnixConn and the peer's raw fd.
func socketpair(t *testing.T, typ int) (*net.UnixConn, int) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fds[0]), "ours")
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	peer := fds[1]
	t.Cleanup(func() { unix.Close(peer) })
	return c.(*net.UnixConn), peer
}

// frame builds an Ethernet frame of size bytes whose payload is fill.
func frame(size int, fill byte) []byte {
	f := bytes.Repeat([]byte{fill}, size)
	copy(f, []byte{2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00})
	return f
}

// withHeader prefixes a frame with an empty virtio-net header, the layout
// Write takes.
func withHeader(f []byte) []byte {
	return append(make([]byte, link.VnetHdrLen), f...)
}

func newConn(t *testing.T, typ int, o Options) (*Conn, int) {
	t.Helper()
	c, peer := socketpair(t, typ)
	l, err := NewConn(c, o)
	if err != nil {
		t.Fatal(err)
	}
	return l, peer
}

// readAll reads until want frames arrived or the link fails.
func readAll(t *testing.T, l link.Link, want int) ([][]byte, []byte) {
	t.Helper()
	bufs, sizes := link.NewBuffers(l.BatchSize())
	var frames [][]byte
	var hdrFlags []byte
	for len(frames) < want {
		n, err := l.Read(bufs, sizes)
		for i := 0; i < n; i++ {
			frames = append(frames, append([]byte(nil), bufs[i][link.VnetHdrLen:link.VnetHdrLen+sizes[i]]...))
			hdrFlags = append(hdrFlags, bufs[i][0])
		}
		if err != nil {
			t.Fatalf("read after %d frames: %v", len(frames), err)
		}
	}
	return frames, hdrFlags
}

func TestConnSeqpacketBothWays(t *testing.T) {
	l, peer := newConn(t, unix.SOCK_SEQPACKET, Options{Name: "test"})
	sent := [][]byte{frame(60, 1), frame(1514, 2), frame(14, 3)}
	for _, f := range sent {
		if err := unix.Sendmsg(peer, f, nil, nil, unix.MSG_EOR); err != nil {
			t.Fatal(err)
		}
	}
	got, flags := readAll(t, l, len(sent))
	for i := range sent {
		if !bytes.Equal(got[i], sent[i]) {
			t.Errorf("frame %d: got %d bytes, want %d", i, len(got[i]), len(sent[i]))
		}
		if flags[i] != 0 {
			t.Errorf("frame %d: header flags %#x on a seqpacket link, want 0", i, flags[i])
		}
	}

	out := link.Frames(withHeader(frame(100, 7)), withHeader(frame(2000, 8)))
	n, err := l.Write(out)
	if err != nil || n != 2 {
		t.Fatalf("Write = %d, %v", n, err)
	}
	buf := make([]byte, 4096)
	for i, f := range out {
		m, _, rflags, _, err := unix.Recvmsg(peer, buf, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf[:m], f.Segs[0]) {
			t.Errorf("message %d: got %d bytes, want the %d-byte frame", i, m, f.Len())
		}
		if rflags&unix.MSG_TRUNC != 0 {
			t.Errorf("message %d truncated", i)
		}
	}
}

// Bad messages from the peer are dropped or passed on as runts, the good
// ones around them arrive intact, and the link keeps working.
func TestConnBadMessages(t *testing.T) {
	l, peer := newConn(t, unix.SOCK_SEQPACKET, Options{Name: "test"})
	good1, good2 := frame(100, 1), frame(200, 2)
	for _, m := range [][]byte{good1, make([]byte, link.MaxFrameLen+100), {}, {1, 2, 3}, good2} {
		if err := unix.Sendmsg(peer, m, nil, nil, 0); err != nil {
			t.Fatal(err)
		}
	}
	got, _ := readAll(t, l, 4)
	if !bytes.Equal(got[0], good1) || !bytes.Equal(got[3], good2) {
		t.Errorf("good frames around the bad ones were damaged")
	}
	if len(got[1]) != 0 || len(got[2]) != 3 {
		t.Errorf("short messages arrive as runts of their size for the switch to count: got sizes %d and %d, want 0 and 3", len(got[1]), len(got[2]))
	}
	if c := l.Counters().RxOversized.Load(); c != 1 {
		t.Errorf("RxOversized = %d, want 1", c)
	}
}

// A seqpacket peer hanging up ends the link with ErrPeerClosed, after the
// frames it sent before are delivered.
func TestConnSeqpacketHangup(t *testing.T) {
	l, peer := newConn(t, unix.SOCK_SEQPACKET, Options{Name: "test"})
	last := frame(64, 9)
	if err := unix.Sendmsg(peer, last, nil, nil, 0); err != nil {
		t.Fatal(err)
	}
	unix.Close(peer)
	bufs, sizes := link.NewBuffers(l.BatchSize())
	n, err := l.Read(bufs, sizes)
	if n != 1 || !bytes.Equal(bufs[0][link.VnetHdrLen:link.VnetHdrLen+sizes[0]], last) {
		t.Fatalf("Read = %d frames (%v), want the last frame before the hang-up", n, err)
	}
	if err == nil {
		n, err = l.Read(bufs, sizes)
	}
	if !errors.Is(err, ErrPeerClosed) || n != 0 {
		t.Fatalf("Read after hang-up = %d, %v; want ErrPeerClosed", n, err)
	}
}

// A datagram socketpair never reads end-of-file; a send to the closed peer
// ends the link instead.
func TestConnDgramPeerGone(t *testing.T) {
	l, peer := newConn(t, unix.SOCK_DGRAM, Options{Name: "test", TrustChecksums: true})
	if err := unix.Send(peer, frame(80, 4), 0); err != nil {
		t.Fatal(err)
	}
	_, flags := readAll(t, l, 1)
	if flags[0] != link.FlagDataValid {
		t.Errorf("header flags %#x, want DATA_VALID from a trusted peer", flags[0])
	}
	readErr := make(chan error, 1)
	go func() {
		bufs, sizes := link.NewBuffers(l.BatchSize())
		_, err := l.Read(bufs, sizes)
		readErr <- err
	}()
	unix.Close(peer)
	if _, err := l.Write(link.Frames(withHeader(frame(60, 1)))); !errors.Is(err, unix.ECONNREFUSED) {
		t.Fatalf("Write to a closed datagram peer: %v, want ECONNREFUSED", err)
	}
	select {
	case err := <-readErr:
		if err == nil {
			t.Fatal("Read returned no error after the peer was gone")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Read still blocked after the peer was found gone")
	}
}

// Frames larger than the peer takes are dropped and counted; the rest of
// the batch goes out.
func TestConnMaxFrame(t *testing.T) {
	l, peer := newConn(t, unix.SOCK_SEQPACKET, Options{Name: "bhyve", MaxFrame: 2048})
	n, err := l.Write(link.Frames(withHeader(frame(3000, 1)), withHeader(frame(2048, 2))))
	if err != nil || n != 1 {
		t.Fatalf("Write = %d, %v; want 1 frame sent", n, err)
	}
	if c := l.Counters().TxTooLarge.Load(); c != 1 {
		t.Errorf("TxTooLarge = %d, want 1", c)
	}
	buf := make([]byte, 4096)
	m, err := unix.Read(peer, buf)
	if err != nil || m != 2048 {
		t.Fatalf("peer read %d bytes (%v), want the 2048-byte frame", m, err)
	}
}

// A peer that stops reading never makes a writer wait: its frames queue
// (up to queueLimit), then are reported as ErrQueueFull; a peer that takes
// nothing for the stall timeout has its queue dropped and counted.
func TestConnPeerNotReading(t *testing.T) {
	l, _ := newConn(t, unix.SOCK_DGRAM, Options{Name: "test", StallTimeout: time.Second})
	batch := make([]link.Frame, 64)
	for i := range batch {
		batch[i] = link.Contiguous(withHeader(frame(1500, byte(i))))
	}
	sent, full := 0, false
	start := time.Now()
	for i := 0; i < 200 && !full; i++ {
		n, err := l.Write(batch)
		switch {
		case errors.Is(err, link.ErrQueueFull):
			full = true
		case err != nil:
			t.Fatal(err)
		}
		sent += n
	}
	if !full {
		t.Fatalf("sent %d frames to a peer that never reads and none were reported dropped", sent)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("writing to a full peer took %v: writers must not wait", d)
	}
	deadline := time.Now().Add(10 * time.Second)
	for l.Counters().TxStalled.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if l.Counters().TxStalled.Load() == 0 {
		t.Error("the queue of a peer that took nothing was never dropped")
	}
}

// A peer that was full and reads again gets every queued frame, in order.
func TestConnQueuedFramesArriveInOrder(t *testing.T) {
	l, peer := newConn(t, unix.SOCK_DGRAM, Options{Name: "test"})
	const frames = 300 // more than the socket holds: the rest queue
	for i := 0; i < frames; i++ {
		f := withHeader(frame(1500, byte(i)))
		binary.BigEndian.PutUint16(f[link.VnetHdrLen+20:], uint16(i))
		if _, err := l.Write(link.Frames(f)); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
	}
	buf := make([]byte, 2000)
	for i := 0; i < frames; i++ {
		unix.SetsockoptTimeval(peer, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 5})
		n, err := unix.Read(peer, buf)
		if err != nil || n != 1500 {
			t.Fatalf("frame %d: read %d bytes, %v", i, n, err)
		}
		if got := binary.BigEndian.Uint16(buf[20:]); got != uint16(i) {
			t.Fatalf("frame %d arrived as number %d: out of order", i, got)
		}
	}
}

func TestConnRejectsStream(t *testing.T) {
	c, _ := socketpair(t, unix.SOCK_STREAM)
	if _, err := NewConn(c, Options{Name: "x"}); err == nil {
		t.Fatal("NewConn accepted a stream socket")
	}
}

// The frame path allocates nothing per batch.
func TestConnNoAllocs(t *testing.T) {
	l, peer := newConn(t, unix.SOCK_SEQPACKET, Options{Name: "test"})
	bufs, sizes := link.NewBuffers(l.BatchSize())
	out := link.Frames(withHeader(frame(1000, 1)), withHeader(frame(1000, 2)))
	in := frame(1000, 3)
	sink := make([]byte, 2000)
	allocs := testing.AllocsPerRun(200, func() {
		unix.Write(peer, in)
		unix.Write(peer, in)
		if n, err := l.Read(bufs, sizes); err != nil || n == 0 {
			t.Fatalf("Read = %d, %v", n, err)
		}
		if _, err := l.Write(out); err != nil {
			t.Fatal(err)
		}
		unix.Read(peer, sink)
		unix.Read(peer, sink)
	})
	if allocs > 0 {
		t.Errorf("%v allocations per read+write batch, want 0", allocs)
	}
}

// A silent connected datagram peer is probed; once it is gone the probe
// fails and the link ends on its own.
func TestConnDgramProbe(t *testing.T) {
	l, peer := newConn(t, unix.SOCK_DGRAM, Options{Name: "test", ProbeIdle: 20 * time.Millisecond})
	buf := make([]byte, 100)
	n, err := unix.Read(peer, buf)
	if err != nil || n != 60 || buf[12] != 0x88 || buf[13] != 0xb5 || buf[0]|buf[1]|buf[2]|buf[3]|buf[4]|buf[5] != 0 {
		t.Fatalf("silent peer got %d bytes %x (%v), want a 60-byte probe to 00:00:00:00:00:00, EtherType 88b5", n, buf[:n], err)
	}
	unix.Close(peer)
	done := make(chan error, 1)
	go func() {
		bufs, sizes := link.NewBuffers(l.BatchSize())
		_, err := l.Read(bufs, sizes)
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Read ended without an error")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the link outlived its datagram peer")
	}
}

// vecFrame splits a frame into pieces, the way the stack hands them over.
func vecFrame(f []byte, cuts ...int) link.Frame {
	v := link.Frame{Hdr: make([]byte, link.VnetHdrLen)}
	prev := 0
	for _, c := range append(cuts, len(f)) {
		v.Segs = append(v.Segs, f[prev:c])
		prev = c
	}
	return v
}

// Write gathers each message from its pieces: the peer sees whole
// frames, one a message, and too-large ones are skipped and counted.
func TestConnWriteInPieces(t *testing.T) {
	l, peer := newConn(t, unix.SOCK_SEQPACKET, Options{Name: "test", MaxFrame: 2048})
	f1, f2, big := frame(100, 1), frame(1500, 2), frame(3000, 3)
	n, err := l.Write([]link.Frame{vecFrame(f1, 14, 34), vecFrame(big, 14), vecFrame(f2, 14, 34, 54, 1000)})
	if err != nil || n != 2 {
		t.Fatalf("Write = %d, %v; want 2 sent", n, err)
	}
	if c := l.Counters().TxTooLarge.Load(); c != 1 {
		t.Errorf("TxTooLarge = %d, want 1", c)
	}
	buf := make([]byte, 4096)
	for _, want := range [][]byte{f1, f2} {
		m, err := unix.Read(peer, buf)
		if err != nil || !bytes.Equal(buf[:m], want) {
			t.Fatalf("peer read %d bytes (%v), want the %d-byte frame whole", m, err, len(want))
		}
	}
	allocs := testing.AllocsPerRun(100, func() {
		l.Write([]link.Frame{vecFrame(f1, 14, 34)})
		unix.Read(peer, buf)
	})
	// vecFrame itself allocates the piece slices; the link adds nothing.
	if base := testing.AllocsPerRun(100, func() { _ = vecFrame(f1, 14, 34) }); allocs > base {
		t.Errorf("Write allocates %v per call beyond building its argument (%v)", allocs-base, base)
	}
}
