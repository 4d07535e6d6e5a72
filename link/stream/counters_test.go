package stream

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"

	"github.com/slipway-net/slipway/link"
)

// Bad framing ends the link and is counted, for the control API: a length
// prefix out of range, or the peer leaving mid-prefix or mid-frame. A peer
// leaving between frames is a clean end, not counted.
func TestBadFramingCounted(t *testing.T) {
	for _, tc := range []struct {
		name    string
		wire    []byte
		want    error
		counted uint64
	}{
		{"length 0", binary.BigEndian.AppendUint32(nil, 0), ErrBadLength, 1},
		{"length 70000", binary.BigEndian.AppendUint32(nil, 70000), ErrBadLength, 1},
		{"mid-frame", prefixed(ethFrame(100, 1))[:50], io.ErrUnexpectedEOF, 1},
		{"mid-prefix", []byte{0, 0}, io.ErrUnexpectedEOF, 1},
		{"between frames", prefixed(ethFrame(100, 1)), io.EOF, 0},
	} {
		a, b := socketPair(t)
		l := New(a, "test")
		b.Write(tc.wire)
		b.Close()
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

func TestOversizedWriteCounted(t *testing.T) {
	a, _ := socketPair(t)
	l := New(a, "test")
	if n, err := l.Write(link.Frames(withHdr(ethFrame(MaxFrame+1, 1)))); n != 0 || err != nil {
		t.Fatalf("Write = %d, %v; want the frame dropped", n, err)
	}
	if c := l.Counters().TxTooLarge.Load(); c != 1 {
		t.Errorf("TxTooLarge = %d, want 1", c)
	}
}

// FuzzReadMatchesProtocol feeds arbitrary bytes as the VMM's side of the
// stream: the link returns exactly the frames a plain reading of the
// protocol finds, in order, and then an error.
func FuzzReadMatchesProtocol(f *testing.F) {
	f.Add(append(prefixed(ethFrame(14, 0)), prefixed(ethFrame(60, 1))...))
	f.Add([]byte{0, 0, 0, 0})
	f.Add([]byte{0, 1, 0x11, 0x70})
	f.Add(append(prefixed(ethFrame(20, 2)), 0, 0, 0))
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
		a, b := socketPair(t)
		l := New(a, "fuzz")
		go func() {
			b.Write(data)
			b.Close()
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
