//go:build linux

package dgram

import (
	"bytes"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/slipway-net/slipway/link"
)

// boundDgram is an unconnected unix datagram socket bound to path, as a
// Mux's socket and its VMs' sockets are.
func boundDgram(t *testing.T, path string) int {
	t.Helper()
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		t.Fatal(err)
	}
	return fd
}

func pathAddr(path string) addr {
	var a addr
	a.n = uint8(copy(a.path[:], path))
	return a
}

// The one-message-a-call path of macOS and the BSDs, run here on Linux:
// frames go out whole (gathered from their pieces) to a named peer and
// come in with their sender's name, and once its buffers exist a
// datagram costs no allocation either way.
func TestMsgBatchNoAllocs(t *testing.T) {
	dir := t.TempDir()
	vmPath, muxPath := filepath.Join(dir, "vm.sock"), filepath.Join(dir, "mux.sock")
	vm := boundDgram(t, vmPath)
	mux := boundDgram(t, muxPath)

	f1, f2 := frame(1000, 1), frame(1514, 2)
	frames := []link.Frame{
		link.Contiguous(withHeader(f1)),
		vecFrame(f2, 14, 34, 54),
		link.Contiguous(withHeader(frame(2000, 3))), // over maxFrame: skipped
	}
	var tx msgTx
	rx := newMsgRx(DefaultBatch, true)
	to := newSockname(pathAddr(muxPath))
	bufs, _ := link.NewBuffers(DefaultBatch)
	msgs := make([]rxMsg, DefaultBatch)
	want := pathAddr(vmPath)

	exchange := func() {
		if skipped := tx.prepare(frames, 1514, to); skipped != 1 {
			t.Fatalf("prepare skipped %d frames, want 1 (the one over maxFrame)", skipped)
		}
		if tx.count() != 2 {
			t.Fatalf("prepare laid out %d messages, want 2", tx.count())
		}
		n, err := tx.send(vm, 0, 0)
		tx.release()
		if n != 2 || err != nil {
			t.Fatalf("send = %d, %v; want 2 messages", n, err)
		}
		got, err := rx.recv(mux, bufs, msgs)
		if got != 2 || err != nil {
			t.Fatalf("recv = %d, %v; want 2 messages", got, err)
		}
		for i, f := range [][]byte{f1, f2} {
			m := msgs[i]
			if m.trunc || !bytes.Equal(bufs[i][link.VnetHdrLen:link.VnetHdrLen+m.size], f) {
				t.Fatalf("message %d: %d bytes (cut short: %v), want the %d-byte frame whole", i, m.size, m.trunc, len(f))
			}
			if m.from != want {
				t.Fatalf("message %d from %q, want %q", i, m.from, vmPath)
			}
		}
	}
	exchange() // the iovecs grow to the batch here, once
	if allocs := testing.AllocsPerRun(200, exchange); allocs > 0 {
		t.Errorf("%v allocations per two datagrams sent and received, want 0", allocs)
	}
	// Nothing is left waiting: each exchange took exactly what it sent.
	if got, err := rx.recv(mux, bufs, msgs); got != 0 || err != unix.EAGAIN {
		t.Errorf("recv on an empty socket = %d, %v; want 0, EAGAIN", got, err)
	}
}

// A message larger than its buffer is flagged, not passed on as a frame;
// a connected socket's reader, asking no names, gets none.
func TestMsgBatchTruncatedAndUnnamed(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	if _, err := unix.Write(fds[1], frame(200, 4)); err != nil {
		t.Fatal(err)
	}
	if _, err := unix.Write(fds[1], frame(60, 5)); err != nil {
		t.Fatal(err)
	}
	rx := newMsgRx(DefaultBatch, false)
	bufs := [][]byte{make([]byte, link.VnetHdrLen+100), make([]byte, link.BufSize)}
	msgs := make([]rxMsg, 2)
	got, err := rx.recv(fds[0], bufs, msgs)
	if got != 2 || err != nil {
		t.Fatalf("recv = %d, %v; want 2 messages", got, err)
	}
	if !msgs[0].trunc {
		t.Errorf("a 200-byte message in a 100-byte buffer was not flagged as cut short")
	}
	if msgs[1].trunc || msgs[1].size != 60 {
		t.Errorf("second message: %d bytes, cut short %v; want 60, whole", msgs[1].size, msgs[1].trunc)
	}
	if msgs[0].from.n != 0 || msgs[1].from.n != 0 {
		t.Errorf("a reader asking no names got %q, %q", msgs[0].from, msgs[1].from)
	}
}
