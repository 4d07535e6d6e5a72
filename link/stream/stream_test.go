package stream

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/slipway-net/slipway/link"
)

// socketPair returns two connected unix stream sockets, the transport QEMU
// uses for -netdev stream and -netdev socket,fd=.
func socketPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) net.Conn {
		f := os.NewFile(uintptr(fd), "sp")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	return conn(fds[0]), conn(fds[1])
}

func ethFrame(n int, fill byte) []byte {
	f := bytes.Repeat([]byte{fill}, n)
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	return f
}

func withHdr(f []byte) []byte { return append(make([]byte, link.VnetHdrLen), f...) }

func TestWriteIsQEMUFraming(t *testing.T) {
	a, b := socketPair(t)
	l := New(a, "test")
	frames := [][]byte{withHdr(ethFrame(60, 1)), withHdr(ethFrame(1514, 2)), withHdr(ethFrame(65535, 3))}
	go func() {
		if _, err := l.Write(link.Frames(frames...)); err != nil {
			t.Error(err)
		}
	}()
	for i, f := range frames {
		var hdr [4]byte
		if _, err := io.ReadFull(b, hdr[:]); err != nil {
			t.Fatal(err)
		}
		want := f[link.VnetHdrLen:]
		if n := binary.BigEndian.Uint32(hdr[:]); int(n) != len(want) {
			t.Fatalf("frame %d: length prefix %d, want %d", i, n, len(want))
		}
		got := make([]byte, len(want))
		if _, err := io.ReadFull(b, got); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("frame %d differs", i)
		}
	}
}

func TestWriteDropsFramesQEMUWouldReject(t *testing.T) {
	a, b := socketPair(t)
	l := New(a, "test")
	n, err := l.Write(link.Frames(withHdr(ethFrame(70000, 1)), withHdr(ethFrame(100, 2))))
	if err != nil || n != 1 {
		t.Fatalf("Write = %d, %v; want 1 frame sent", n, err)
	}
	var hdr [4]byte
	io.ReadFull(b, hdr[:])
	if got := binary.BigEndian.Uint32(hdr[:]); got != 100 {
		t.Fatalf("first frame on the wire has length %d, want 100", got)
	}
}

func feed(t *testing.T, w net.Conn, chunks ...[]byte) {
	t.Helper()
	go func() {
		for _, c := range chunks {
			if _, err := w.Write(c); err != nil {
				return
			}
		}
	}()
}

func prefixed(f []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(f)))
	return append(b, f...)
}

func TestReadBatchesBufferedFrames(t *testing.T) {
	a, b := socketPair(t)
	l := New(a, "test")
	var all []byte
	for i := 0; i < 5; i++ {
		all = append(all, prefixed(ethFrame(100+i, byte(i)))...)
	}
	feed(t, b, all)
	bufs, sizes := link.NewBuffers(l.BatchSize())
	got := 0
	for got < 5 {
		n, err := l.Read(bufs, sizes)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < n; i++ {
			if sizes[i] != 100+got {
				t.Fatalf("frame %d has size %d", got, sizes[i])
			}
			if bufs[i][link.VnetHdrLen+20] != byte(got) || bufs[i][0] != 0 {
				t.Fatalf("frame %d content or header wrong", got)
			}
			got++
		}
	}
}

func TestReadRejectsBadLengths(t *testing.T) {
	for _, size := range []uint32{0, 13, 70000} {
		a, b := socketPair(t)
		l := New(a, "test")
		feed(t, b, binary.BigEndian.AppendUint32(nil, size), make([]byte, 64))
		bufs, sizes := link.NewBuffers(4)
		_, err := l.Read(bufs, sizes)
		if !errors.Is(err, ErrBadLength) {
			t.Fatalf("length %d: got %v, want ErrBadLength", size, err)
		}
	}
}

func TestReadPeerVanishesMidFrame(t *testing.T) {
	a, b := socketPair(t)
	l := New(a, "test")
	go func() {
		b.Write(prefixed(ethFrame(60, 1)))
		b.Write(binary.BigEndian.AppendUint32(nil, 500))
		b.Write(make([]byte, 100))
		b.Close()
	}()
	bufs, sizes := link.NewBuffers(4)
	n, err := l.Read(bufs, sizes)
	if n == 1 && err == nil {
		n, err = l.Read(bufs, sizes)
	}
	if n != 0 || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("got %d frames, err %v; want io.ErrUnexpectedEOF", n, err)
	}
}

func FuzzRead(f *testing.F) {
	f.Add(prefixed(ethFrame(60, 1)))
	f.Add(append(prefixed(ethFrame(14, 0)), 0, 0, 0xff, 0xff))
	f.Add([]byte{0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, stream []byte) {
		r, w := net.Pipe()
		defer r.Close()
		go func() {
			w.Write(stream)
			w.Close()
		}()
		l := New(r, "fuzz")
		bufs, sizes := link.NewBuffers(4)
		for {
			n, err := l.Read(bufs, sizes)
			for i := 0; i < n; i++ {
				if sizes[i] < link.MinFrameLen || sizes[i] > MaxFrame {
					t.Fatalf("returned a frame of %d bytes", sizes[i])
				}
			}
			if err != nil {
				return
			}
		}
	})
}

// TestWriteNeverBlocksOnAPeerThatStopsReading: a paused VM must cost
// dropped frames, not a stuck writer.
func TestWriteNeverBlocksOnAPeerThatStopsReading(t *testing.T) {
	a, _ := socketPair(t) // the peer never reads
	l := New(a, "test")
	frame := withHdr(ethFrame(60000, 1))
	done := make(chan struct{})
	var full int
	go func() {
		defer close(done)
		// More than the socket buffer and the transmit queue hold.
		for i := 0; i < 600; i++ {
			if _, err := l.Write(link.Frames(frame)); errors.Is(err, link.ErrQueueFull) {
				full++
			} else if err != nil {
				return // mid-frame stall: the link gave up, also not a hang
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Write blocked on a peer that does not read")
	}
	if full == 0 {
		t.Fatal("no write reported ErrQueueFull although the peer never read")
	}
}

// TestPausedPeerResumesWithIntactFraming: frames dropped while the peer
// did not read never leave a broken frame behind; when it reads again every
// frame it gets is whole and later frames flow.
func TestPausedPeerResumesWithIntactFraming(t *testing.T) {
	a, b := socketPair(t)
	l := New(a, "test")
	sent := 0
	const frames = 800 // 32 MB: more than the socket buffer and the queue
	for i := 0; i < frames; i++ {
		if _, err := l.Write(link.Frames(withHdr(ethFrame(40000+i%250, byte(i%250))))); err == nil {
			sent++
		}
	}
	if sent == frames {
		t.Fatal("the socket and queue took 32 MB with nobody reading: the test proves nothing")
	}
	// The peer resumes: read frames and check each is intact.
	reader := New(b, "peer")
	bufs, sizes := link.NewBuffers(4)
	got := 0
	go func() {
		time.Sleep(200 * time.Millisecond)
		for {
			if _, err := l.Write(link.Frames(withHdr(ethFrame(100, 0xee)))); err == nil {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	for {
		n, err := reader.Read(bufs, sizes)
		if err != nil {
			t.Fatalf("after %d intact frames: %v", got, err)
		}
		for i := 0; i < n; i++ {
			f := bufs[i][link.VnetHdrLen : link.VnetHdrLen+sizes[i]]
			if sizes[i] == 100 && f[20] == 0xee {
				if got != sent {
					t.Fatalf("only %d of the %d accepted frames arrived", got, sent)
				}
				return
			}
			if sizes[i] < 40000 || sizes[i] >= 40250 || f[20] != byte(sizes[i]-40000) {
				t.Fatalf("frame %d is corrupt (size %d)", got, sizes[i])
			}
			got++
		}
	}
}

func TestConsume(t *testing.T) {
	iov := net.Buffers{[]byte("abc"), []byte("de"), []byte("fgh")}
	got := consume(iov, 4)
	if len(got) != 2 || string(got[0]) != "e" || string(got[1]) != "fgh" {
		t.Fatalf("consume(4) = %q", got)
	}
	if got := consume(net.Buffers{[]byte("ab")}, 2); len(got) != 0 {
		t.Fatalf("consume all = %q", got)
	}
}

// Writing a batch of frames to a peer that keeps up allocates nothing.
func TestWriteDoesNotAllocate(t *testing.T) {
	a, b := socketPair(t)
	l := New(a, "test")
	frames := link.Frames(withHdr(ethFrame(1500, 1)), withHdr(ethFrame(60, 2)))
	sink := make([]byte, 4+1500+4+60)
	allocs := testing.AllocsPerRun(200, func() {
		if n, err := l.Write(frames); n != 2 || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
		if _, err := io.ReadFull(b, sink); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per Write, want 0", allocs)
	}
}
