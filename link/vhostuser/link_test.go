package vhostuser

import (
	"bytes"
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/slipway-net/slipway/link"
	"github.com/slipway-net/slipway/test/vhostfront"
)

// pair connects a Link and a test front-end over a socketpair; the front
// end is prepared but has sent nothing.
func pair(t *testing.T, o vhostfront.Options) (*Link, *vhostfront.Frontend) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "sock")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		return c.(*net.UnixConn)
	}
	l := New(conn(fds[0]), Options{Name: "test"})
	fe, err := vhostfront.New(conn(fds[1]), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fe.Close(); l.Close() })
	return l, fe
}

// started is pair with the front-end's whole set-up done.
func started(t *testing.T, o vhostfront.Options) (*Link, *vhostfront.Frontend) {
	t.Helper()
	l, fe := pair(t, o)
	if err := fe.Start(); err != nil {
		t.Fatal(err)
	}
	return l, fe
}

// testFrame is an Ethernet frame of n bytes with a recognisable pattern.
func testFrame(n int, seed byte) []byte {
	f := make([]byte, n)
	copy(f, []byte{0x52, 0x54, 0, 0, 0, 2, 0x52, 0x54, 0, 0, 0, 1, 0x08, 0x00})
	for i := 14; i < n; i++ {
		f[i] = seed + byte(i)
	}
	return f
}

// readFrames reads until want frames came or the link fails.
func readFrames(t *testing.T, l *Link, want int) ([][]byte, [][]byte) {
	t.Helper()
	bufs, sizes := link.NewBuffers(l.BatchSize())
	var hdrs, frames [][]byte
	done := make(chan error, 1)
	go func() {
		for len(frames) < want {
			n, err := l.Read(bufs, sizes)
			for i := 0; i < n; i++ {
				hdrs = append(hdrs, bytes.Clone(bufs[i][:link.VnetHdrLen]))
				frames = append(frames, bytes.Clone(bufs[i][link.VnetHdrLen:link.VnetHdrLen+sizes[i]]))
			}
			if err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Read after %d frames: %v", len(frames), err)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("only %d of %d frames arrived", len(frames), want)
	}
	return hdrs, frames
}

// Frames in both directions, for guests that negotiate everything and
// nothing, and for the chain layouts drivers use.
func TestFramesBothWays(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    vhostfront.Options
	}{
		{"linux", vhostfront.Options{Features: vhostfront.Linux}},
		{"nothing", vhostfront.Options{RxSegs: 17}},
		{"legacy-mrg", vhostfront.Options{Features: vhostfront.FMrgRxbuf}},
		{"split-header", vhostfront.Options{Features: vhostfront.Linux, SplitHeader: true}},
		{"indirect", vhostfront.Options{Features: vhostfront.Linux, Indirect: true, SplitHeader: true}},
		{"no-event-idx", vhostfront.Options{Features: vhostfront.Linux &^ vhostfront.FEventIdx}},
		{"big-packets", vhostfront.Options{Features: vhostfront.Linux &^ vhostfront.FMrgRxbuf}},
		{"two-regions", vhostfront.Options{Features: vhostfront.Linux, Regions: 2, Gap: true}},
		{"add-mem-reg", vhostfront.Options{Features: vhostfront.Linux, AddMemReg: true, Regions: 2}},
		{"small-ring", vhostfront.Options{Features: vhostfront.Linux, QueueSize: 16}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, fe := started(t, tc.o)
			const count = 300 // more than a ring holds
			sizes := []int{14, 60, 1514, 9000, 65000}
			go func() {
				for i := 0; i < count; i++ {
					if err := fe.Send(testFrame(sizes[i%len(sizes)], byte(i))); err != nil {
						t.Errorf("send %d: %v", i, err)
						return
					}
				}
			}()
			_, frames := readFrames(t, l, count)
			for i, f := range frames {
				if want := testFrame(sizes[i%len(sizes)], byte(i)); !bytes.Equal(f, want) {
					t.Fatalf("frame %d: %d bytes, want %d bytes as sent", i, len(f), len(want))
				}
			}
			// And to the guest: more than its ring holds, so the
			// writer must wait for the guest to give buffers back.
			buf := make([]byte, 70000)
			for i := 0; i < count; i++ {
				want := testFrame(sizes[i%len(sizes)], byte(i))
				for {
					n, err := l.Write(link.Frames(append(make([]byte, link.VnetHdrLen), want...)))
					if err == nil && n == 1 {
						break
					}
					if !errors.Is(err, link.ErrQueueFull) {
						t.Fatalf("write %d: %d, %v", i, n, err)
					}
					time.Sleep(time.Millisecond)
				}
				_, n, err := fe.RecvTimeout(buf, 10*time.Second)
				if err != nil {
					t.Fatalf("frame %d to the guest: %v", i, err)
				}
				if len(want) < 60 {
					want = append(want, make([]byte, 60-len(want))...)
				}
				if !bytes.Equal(buf[:n], want) {
					t.Fatalf("frame %d to the guest: %d bytes, want %d as written", i, n, len(want))
				}
			}
		})
	}
}

// The virtio-net header may be split anywhere across descriptors, even in
// its middle (passt once assumed it was not).
func TestHeaderSplitAnywhere(t *testing.T) {
	l, fe := started(t, vhostfront.Options{Features: vhostfront.Linux})
	r := startReading(l)
	want := testFrame(300, 9)
	at := 40 << 20
	copy(fe.Mem[at:], make([]byte, 12))
	copy(fe.Mem[at+12:], want)
	fe.RawTX(func(q *vhostfront.Queue) {
		q.SetDesc(250, fe.GPA(at), 5, 1, 251)
		q.SetDesc(251, fe.GPA(at+5), 7+100, 1, 252)
		q.SetDesc(252, fe.GPA(at+112), uint32(len(want)-100), 0, 0)
		q.Publish(250)
	})
	if got := r.next(t); !bytes.Equal(got, want) {
		t.Fatalf("got %d bytes, want the %d sent", len(got), len(want))
	}
}

// After GET_VRING_BASE the ring is stopped: frames for it are dropped and
// its old call eventfd is never signalled (passt once wrote to one QEMU
// had closed).
func TestNoInterruptAfterStop(t *testing.T) {
	l, fe := pair(t, vhostfront.Options{Features: vhostfront.Linux})
	for _, step := range []func() error{fe.Negotiate, fe.SetupMemory, fe.SetupRings} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := fe.Call(vhostfront.GetVringBase, 0, vhostfront.State(0, 0)); err != nil {
		t.Fatal(err)
	}
	fe.RX.Interrupts() // the one SET_VRING_CALL gives
	frame := link.Frames(append(make([]byte, link.VnetHdrLen), testFrame(100, 1)...))
	if n, err := l.Write(frame); n != 0 || !errors.Is(err, link.ErrQueueFull) {
		t.Errorf("Write to a stopped ring = %d, %v; want ErrQueueFull", n, err)
	}
	if got := fe.RX.Interrupts(); got != 0 {
		t.Errorf("%d interrupts after GET_VRING_BASE", got)
	}
}

// Rings the front-end has not enabled (PROTOCOL_FEATURES) take nothing:
// a frame for the guest is refused at once, without spinning; the guest's
// frames are taken off the ring and dropped. Enabled, both carry frames.
func TestDisabledRings(t *testing.T) {
	l, fe := started(t, vhostfront.Options{Features: vhostfront.Linux, NoEnable: true})
	r := startReading(l)
	frame := link.Frames(append(make([]byte, link.VnetHdrLen), testFrame(100, 1)...))
	if n, err := l.Write(frame); n != 0 || !errors.Is(err, link.ErrQueueFull) {
		t.Errorf("Write to a disabled ring = %d, %v; want ErrQueueFull", n, err)
	}
	var before uint16
	fe.RawTX(func(q *vhostfront.Queue) { before = q.UsedIdx() })
	if err := fe.Send(testFrame(100, 2)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the disabled ring drained", func() bool {
		var now uint16
		fe.RawTX(func(q *vhostfront.Queue) { now = q.UsedIdx() })
		return now == before+1
	})
	for i := uint32(0); i < 2; i++ {
		if _, err := fe.Call(vhostfront.SetVringEnable, vhostfront.FlagNeedReply, vhostfront.State(i, 1)); err != nil {
			t.Fatal(err)
		}
	}
	want := testFrame(100, 3)
	if err := fe.Send(want); err != nil {
		t.Fatal(err)
	}
	if got := r.next(t); !bytes.Equal(got, want) {
		t.Fatalf("after enabling: %d bytes, want %d (the frame sent while disabled must not come through)", len(got), len(want))
	}
	if n, err := l.Write(frame); n != 1 || err != nil {
		t.Errorf("Write after enabling = %d, %v", n, err)
	}
}
