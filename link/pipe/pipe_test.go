package pipe

import (
	"testing"

	"github.com/slipway-net/slipway/link"
)

// TestTryReadAndOnReadable: OnReadable fires on the edge from empty to
// non-empty only, and TryRead never blocks.
func TestTryReadAndOnReadable(t *testing.T) {
	a, b := New("t", false)
	calls := 0
	b.OnReadable(func() { calls++ })
	bufs, sizes := link.NewBuffers(4)
	if n, err := b.TryRead(bufs, sizes); n != 0 || err != nil {
		t.Fatalf("empty TryRead: %d, %v", n, err)
	}
	frame := make([]byte, link.VnetHdrLen+60)
	a.Write(link.Frames(frame))
	a.Write(link.Frames(frame, frame))
	if calls != 1 {
		t.Errorf("OnReadable called %d times for one edge, want 1", calls)
	}
	if n, _ := b.TryRead(bufs, sizes); n != 3 || sizes[0] != 60 {
		t.Errorf("TryRead: %d frames, size %d", n, sizes[0])
	}
	a.Write(link.Frames(frame))
	if calls != 2 {
		t.Errorf("OnReadable called %d times after a second edge, want 2", calls)
	}
	b.OnReadable(nil)
	b.TryRead(bufs, sizes)
	a.Write(link.Frames(frame))
	if calls != 2 {
		t.Error("OnReadable(nil) did not remove the function")
	}
	a.Close()
	b.TryRead(bufs, sizes)
	if _, err := b.TryRead(bufs, sizes); err == nil {
		t.Error("TryRead on a closed, drained pipe returned no error")
	}
}
