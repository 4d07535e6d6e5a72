package stream

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"testing"

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
		if _, err := l.Write(frames); err != nil {
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
	n, err := l.Write([][]byte{withHdr(ethFrame(70000, 1)), withHdr(ethFrame(100, 2))})
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
