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

// pair returns a stream link over one end of a unix socketpair and the
// other end for the test to play the VMM.
func pair(t *testing.T) (*Link, net.Conn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conns := make([]net.Conn, 2)
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "sock")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		conns[i] = c
	}
	return New(conns[0], "test"), conns[1]
}

func prefixed(frames ...[]byte) []byte {
	var b []byte
	for _, f := range frames {
		b = binary.BigEndian.AppendUint32(b, uint32(len(f)))
		b = append(b, f...)
	}
	return b
}

func TestRoundTrip(t *testing.T) {
	l, peer := pair(t)
	f1, f2 := bytes.Repeat([]byte{1}, 60), bytes.Repeat([]byte{2}, MaxFrame)
	go peer.Write(prefixed(f1, f2))
	bufs, sizes := link.NewBuffers(l.BatchSize())
	var got [][]byte
	for len(got) < 2 {
		n, err := l.Read(bufs, sizes)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < n; i++ {
			got = append(got, append([]byte(nil), bufs[i][link.VnetHdrLen:link.VnetHdrLen+sizes[i]]...))
		}
	}
	if !bytes.Equal(got[0], f1) || !bytes.Equal(got[1], f2) {
		t.Fatal("frames changed on the way")
	}

	out := [][]byte{append(make([]byte, link.VnetHdrLen), f1...), make([]byte, link.VnetHdrLen+MaxFrame+1)}
	go func() {
		if n, err := l.Write(out); err != nil || n != 1 {
			t.Errorf("Write = %d, %v; want the oversized frame dropped", n, err)
		}
		l.Close()
	}()
	wire, err := io.ReadAll(peer)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(wire, prefixed(f1)) {
		t.Errorf("peer received %d bytes, want one framed 60-byte frame", len(wire))
	}
	if c := l.Counters().TxTooLarge.Load(); c != 1 {
		t.Errorf("TxTooLarge = %d, want 1", c)
	}
}

// A length prefix of 0 or 70000 cannot be resynchronised: the link ends
// with ErrBadLength, counted, after the good frame before it.
func TestBadLength(t *testing.T) {
	for _, size := range []uint32{0, 13, 70000, 0xffffffff} {
		l, peer := pair(t)
		wire := prefixed(bytes.Repeat([]byte{1}, 60))
		wire = binary.BigEndian.AppendUint32(wire, size)
		go peer.Write(append(wire, make([]byte, 100)...))
		bufs, sizes := link.NewBuffers(l.BatchSize())
		frames := 0
		var err error
		for err == nil {
			var n int
			n, err = l.Read(bufs, sizes)
			frames += n
		}
		if !errors.Is(err, ErrBadLength) || frames != 1 {
			t.Errorf("length %d: %d frames then %v, want 1 frame then ErrBadLength", size, frames, err)
		}
		if c := l.Counters().RxBadFraming.Load(); c != 1 {
			t.Errorf("length %d: RxBadFraming = %d, want 1", size, c)
		}
	}
}

// A peer that vanishes mid-frame ends the link with ErrUnexpectedEOF,
// counted; one that leaves between frames ends it with plain EOF.
func TestPeerVanishes(t *testing.T) {
	for _, tc := range []struct {
		name    string
		wire    []byte
		want    error
		counted uint64
	}{
		{"mid-frame", prefixed(make([]byte, 100))[:50], io.ErrUnexpectedEOF, 1},
		{"mid-prefix", []byte{0, 0}, io.ErrUnexpectedEOF, 1},
		{"between frames", prefixed(make([]byte, 100)), io.EOF, 0},
	} {
		l, peer := pair(t)
		peer.Write(tc.wire)
		peer.Close()
		bufs, sizes := link.NewBuffers(l.BatchSize())
		var err error
		for err == nil {
			_, err = l.Read(bufs, sizes)
		}
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
		if c := l.Counters().RxBadFraming.Load(); c != tc.counted {
			t.Errorf("%s: RxBadFraming = %d, want %d", tc.name, c, tc.counted)
		}
	}
}

// FuzzRead feeds arbitrary bytes as the VMM's side of the stream: the
// link returns exactly the frames a plain reading of the protocol finds,
// then an error, and never more than MaxFrame bytes a frame.
func FuzzRead(f *testing.F) {
	f.Add(prefixed(make([]byte, 14), make([]byte, 60)))
	f.Add([]byte{0, 0, 0, 0})
	f.Add([]byte{0, 1, 0x11, 0x70})
	f.Add(append(prefixed(make([]byte, 20)), 0, 0, 0))
	f.Fuzz(func(t *testing.T, data []byte) {
		var want [][]byte
		rest := data
		for len(rest) >= 4 {
			size := int(binary.BigEndian.Uint32(rest))
			if size < link.MinFrameLen || size > MaxFrame || len(rest) < 4+size {
				break
			}
			want = append(want, rest[4:4+size])
			rest = rest[4+size:]
		}
		l, peer := pair(t)
		go func() {
			peer.Write(data)
			peer.Close()
		}()
		bufs, sizes := link.NewBuffers(l.BatchSize())
		var got [][]byte
		for {
			n, err := l.Read(bufs, sizes)
			for i := 0; i < n; i++ {
				got = append(got, append([]byte(nil), bufs[i][link.VnetHdrLen:link.VnetHdrLen+sizes[i]]...))
			}
			if err != nil {
				break
			}
		}
		if len(got) != len(want) {
			t.Fatalf("%d frames, want %d", len(got), len(want))
		}
		for i := range want {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("frame %d differs", i)
			}
		}
	})
}
