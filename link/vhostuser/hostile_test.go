package vhostuser

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/slipway-net/slipway/link"
	vf "github.com/slipway-net/slipway/test/vhostfront"
)

// reading runs Read in a loop and hands over what it returns.
type reading struct {
	frames chan []byte
	hdrs   chan []byte
	err    atomic.Value
	done   chan struct{}
}

func startReading(l *Link) *reading {
	r := &reading{frames: make(chan []byte, 1024), hdrs: make(chan []byte, 1024), done: make(chan struct{})}
	go func() {
		defer close(r.done)
		bufs, sizes := link.NewBuffers(l.BatchSize())
		for {
			n, err := l.Read(bufs, sizes)
			for i := 0; i < n; i++ {
				r.hdrs <- bytes.Clone(bufs[i][:link.VnetHdrLen])
				r.frames <- bytes.Clone(bufs[i][link.VnetHdrLen : link.VnetHdrLen+sizes[i]])
			}
			if err != nil {
				r.err.Store(err)
				return
			}
		}
	}()
	return r
}

// next is the next frame read, failing the test if none comes.
func (r *reading) next(t *testing.T) []byte {
	t.Helper()
	select {
	case f := <-r.frames:
		<-r.hdrs
		return f
	case <-r.done:
		t.Fatalf("link ended: %v", r.err.Load())
	case <-time.After(20 * time.Second):
		t.Fatal("no frame read")
	}
	return nil
}

// eventually waits for cond, failing the test after a generous while.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// Chains on the transmit ring that break the rules are each counted and
// given back, and the link goes on carrying the guest's good frames.
func TestHostileTransmitChains(t *testing.T) {
	const n = 256
	last := uint16(n - 1) // a descriptor of the last transmit slot: unused here
	rxc := func(c *link.Counters) uint64 { return c.RxBadRing.Load() }
	hdrc := func(c *link.Counters) uint64 { return c.RxBadHeader.Load() }
	bigc := func(c *link.Counters) uint64 { return c.RxOversized.Load() }
	half := uint64(32 << 20) // the default 64 MiB, in two regions
	for _, tc := range []struct {
		name    string
		o       vf.Options
		counter func(*link.Counters) uint64
		build   func(f *vf.Frontend, q *vf.Queue) uint16 // returns the head to publish
	}{
		{"outside memory", vf.Options{}, rxc, func(f *vf.Frontend, q *vf.Queue) uint16 {
			q.SetDesc(last, 1<<40, 100, 0, 0)
			return last
		}},
		{"across two regions", vf.Options{Regions: 2}, rxc, func(f *vf.Frontend, q *vf.Queue) uint16 {
			q.SetDesc(last, half-50, 100, 0, 0)
			return last
		}},
		{"in the hole between regions", vf.Options{Regions: 2, Gap: true}, rxc, func(f *vf.Frontend, q *vf.Queue) uint16 {
			q.SetDesc(last, half+4096, 100, 0, 0)
			return last
		}},
		{"length wraps the address space", vf.Options{}, rxc, func(f *vf.Frontend, q *vf.Queue) uint16 {
			q.SetDesc(last, ^uint64(0)-10, 0xffffffff, 0, 0)
			return last
		}},
		{"loop", vf.Options{}, rxc, func(f *vf.Frontend, q *vf.Queue) uint16 {
			q.SetDesc(last-1, f.GPA(40<<20), 100, 1, last)
			q.SetDesc(last, f.GPA(40<<20), 100, 1, last-1)
			return last
		}},
		{"next outside the table", vf.Options{}, rxc, func(f *vf.Frontend, q *vf.Queue) uint16 {
			q.SetDesc(last, f.GPA(40<<20), 100, 1, 5000)
			return last
		}},
		{"head outside the ring", vf.Options{}, rxc, func(f *vf.Frontend, q *vf.Queue) uint16 {
			return 5000
		}},
		{"writable buffer", vf.Options{}, rxc, func(f *vf.Frontend, q *vf.Queue) uint16 {
			q.SetDesc(last, f.GPA(40<<20), 100, 2, 0)
			return last
		}},
		{"indirect in indirect", vf.Options{Features: vf.Linux}, rxc, func(f *vf.Frontend, q *vf.Queue) uint16 {
			table := 40 << 20
			vf.PutDesc(f.Mem[table:], f.GPA(table), 16, 4, 0)
			q.SetDesc(last, f.GPA(table), 16, 4, 0)
			return last
		}},
		{"indirect not negotiated", vf.Options{Features: vf.Linux &^ vf.FIndirectDesc}, rxc, func(f *vf.Frontend, q *vf.Queue) uint16 {
			table := 40 << 20
			vf.PutDesc(f.Mem[table:], f.GPA(table+4096), 100, 0, 0)
			q.SetDesc(last, f.GPA(table), 16, 4, 0)
			return last
		}},
		{"indirect with next", vf.Options{Features: vf.Linux}, rxc, func(f *vf.Frontend, q *vf.Queue) uint16 {
			q.SetDesc(last, f.GPA(40<<20), 16, 4|1, 0)
			return last
		}},
		{"indirect table of odd length", vf.Options{Features: vf.Linux}, rxc, func(f *vf.Frontend, q *vf.Queue) uint16 {
			q.SetDesc(last, f.GPA(40<<20), 17, 4, 0)
			return last
		}},
		{"indirect table longer than a chain may be", vf.Options{Features: vf.Linux}, rxc, func(f *vf.Frontend, q *vf.Queue) uint16 {
			q.SetDesc(last, f.GPA(40<<20), 16*2000, 4, 0)
			return last
		}},
		{"indirect chain that loops", vf.Options{Features: vf.Linux}, rxc, func(f *vf.Frontend, q *vf.Queue) uint16 {
			table := 40 << 20
			vf.PutDesc(f.Mem[table:], f.GPA(table+4096), 100, 1, 1)
			vf.PutDesc(f.Mem[table+16:], f.GPA(table+4096), 100, 1, 0)
			q.SetDesc(last, f.GPA(table), 32, 4, 0)
			return last
		}},
		{"larger than a frame", vf.Options{}, bigc, func(f *vf.Frontend, q *vf.Queue) uint16 {
			q.SetDesc(last, f.GPA(40<<20), 70000, 0, 0)
			return last
		}},
		{"shorter than the header", vf.Options{Features: vf.Linux}, hdrc, func(f *vf.Frontend, q *vf.Queue) uint16 {
			q.SetDesc(last, f.GPA(40<<20), 5, 0, 0)
			return last
		}},
		{"partial checksum not negotiated", vf.Options{Features: vf.FVersion1}, hdrc, withHeader(link.VnetHdr{
			Flags: link.FlagNeedsCsum, CsumStart: 34, CsumOffset: 16})},
		{"checksum offsets outside the frame", vf.Options{Features: vf.Linux}, hdrc, withHeader(link.VnetHdr{
			Flags: link.FlagNeedsCsum, CsumStart: 90, CsumOffset: 16})},
		{"super-frame without a partial checksum", vf.Options{Features: vf.Linux}, hdrc, withHeader(link.VnetHdr{
			GSOType: link.GSOTCPv4, GSOSize: 1448})},
		{"UDP super-frame", vf.Options{Features: vf.Linux}, hdrc, withHeader(link.VnetHdr{
			Flags: link.FlagNeedsCsum, GSOType: link.GSOUDP, GSOSize: 1448, CsumStart: 34, CsumOffset: 6})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, fe := started(t, tc.o)
			r := startReading(l)
			var usedBefore uint16
			fe.RawTX(func(q *vf.Queue) {
				usedBefore = q.UsedIdx()
				q.Publish(tc.build(fe, q))
			})
			eventually(t, "the chain counted", func() bool { return tc.counter(l.Counters()) == 1 })
			// Counted as it is taken; given back with the batch.
			eventually(t, "the bad chain given back", func() bool {
				var used uint16
				fe.RawTX(func(q *vf.Queue) { used = q.UsedIdx() })
				return used == usedBefore+1
			})
			want := testFrame(200, 7)
			if err := fe.Send(want); err != nil {
				t.Fatal(err)
			}
			if got := r.next(t); !bytes.Equal(got, want) {
				t.Fatalf("next frame: %d bytes, want the %d sent", len(got), len(want))
			}
		})
	}
}

// withHeader builds a chain of a 100-byte frame behind virtio-net header h.
func withHeader(h link.VnetHdr) func(f *vf.Frontend, q *vf.Queue) uint16 {
	return func(f *vf.Frontend, q *vf.Queue) uint16 {
		at := 40 << 20
		copy(f.Mem[at:], make([]byte, 12+100))
		h.Encode(f.Mem[at:])
		q.SetDesc(255, f.GPA(at), 12+100, 0, 0)
		return 255
	}
}

// An available index that moves further than the ring holds breaks the
// ring: counted, and the ring is not used again until the front-end sets
// it up anew, which brings it back.
func TestAvailIndexJump(t *testing.T) {
	l, fe := started(t, vf.Options{Features: vf.Linux})
	r := startReading(l)
	fe.RawTX(func(q *vf.Queue) {
		q.SetAvailIdx(q.AvailIdx() + q.N + 1)
		q.Kick()
	})
	eventually(t, "the broken ring counted", func() bool { return l.Counters().RxBadRing.Load() == 1 })
	// The front-end stops the ring, resets it as a driver would and
	// starts it again.
	fe.RawTX(func(q *vf.Queue) {
		rep, err := fe.Call(vf.GetVringBase, 0, vf.State(1, 0))
		if err != nil {
			t.Fatal(err)
		}
		base := binary.NativeEndian.Uint32(rep.Payload[4:])
		if base != uint32(q.UsedIdx()) {
			t.Errorf("GET_VRING_BASE = %d, the used index is %d", base, q.UsedIdx())
		}
		q.SetAvailIdx(q.UsedIdx())
	})
	restartTX(t, fe)
	want := testFrame(100, 1)
	if err := fe.Send(want); err != nil {
		t.Fatal(err)
	}
	if got := r.next(t); !bytes.Equal(got, want) {
		t.Fatalf("after the restart: %d bytes, want %d", len(got), len(want))
	}
}

// restartTX sets the transmit ring up again after GET_VRING_BASE, with new
// eventfds as QEMU sends.
func restartTX(t *testing.T, fe *vf.Frontend) {
	t.Helper()
	q := fe.TX
	kick, _ := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	defer unix.Close(kick)
	for _, m := range []struct {
		req uint32
		p   []byte
		fds []int
	}{
		{vf.SetVringBase, vf.State(1, uint32(q.UsedIdx())), nil},
		{vf.SetVringKick, vf.U64(1), []int{q.KickFD()}},
	} {
		if _, err := fe.Call(m.req, vf.FlagNeedReply, m.p, m.fds...); err != nil {
			t.Fatal(err)
		}
	}
}

// A receive buffer chain that breaks the rules is given back empty and
// counted; the frame goes into the next good buffer.
func TestHostileReceiveChain(t *testing.T) {
	l, fe := pair(t, vf.Options{Features: vf.Linux &^ vf.FMrgRxbuf, NoFill: true})
	for _, step := range []func() error{fe.Negotiate, fe.SetupMemory, fe.SetupRings} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	// 256 descriptors hold 15 buffers of 17: the last one is spare.
	q := fe.RX
	q.SetDesc(255, fe.GPA(40<<20), 4096, 0, 0) // read-only: not a receive buffer
	q.Publish(255)
	q.Fill()
	fe.Run()
	want := testFrame(1000, 3)
	if n, err := l.Write(link.Frames(append(make([]byte, link.VnetHdrLen), want...))); n != 1 || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	buf := make([]byte, 70000)
	_, n, err := fe.RecvTimeout(buf, 20*time.Second)
	if err != nil || !bytes.Equal(buf[:n], want) {
		t.Fatalf("received %d bytes (%v), want the %d written", n, err, len(want))
	}
	if got := l.Counters().TxBadRing.Load(); got != 1 {
		t.Errorf("tx_bad_ring = %d, want 1", got)
	}
}

// A front-end that shrinks guest memory under the mapping makes the next
// access fault: the ring stops and slipway goes on (it would die of
// SIGBUS otherwise).
func TestMemoryShrunkUnderMapping(t *testing.T) {
	l, fe := pair(t, vf.Options{Features: vf.Linux})
	for _, step := range []func() error{fe.Negotiate, fe.SetupMemory, fe.SetupRings} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	r := startReading(l)
	// No receive loop runs in this process: nothing here touches the
	// memory after this.
	if err := unix.Ftruncate(fe.MemFD(), 0); err != nil {
		t.Fatal(err)
	}
	fe.TX.Kick()
	eventually(t, "the fault counted", func() bool { return l.Counters().RxBadRing.Load() == 1 })
	if n, err := l.Write(link.Frames(append(make([]byte, link.VnetHdrLen), testFrame(100, 1)...))); n != 0 || err != nil {
		t.Errorf("Write into faulting memory = %d, %v", n, err)
	}
	eventually(t, "the receive fault counted", func() bool { return l.Counters().TxBadRing.Load() == 1 })
	select {
	case <-r.done:
		t.Fatalf("the link ended: %v", r.err.Load())
	default:
	}
}

// Every message the front-end gets wrong is refused: the connection
// closes (after a failure reply where one is awaited), the link ends.
func TestHostileMessages(t *testing.T) {
	memfd := func(t *testing.T, size int64) int {
		fd, err := unix.MemfdCreate("m", unix.MFD_CLOEXEC)
		if err != nil {
			t.Fatal(err)
		}
		unix.Ftruncate(fd, size)
		t.Cleanup(func() { unix.Close(fd) })
		return fd
	}
	evfd := func(t *testing.T) int {
		fd, _ := unix.Eventfd(0, unix.EFD_CLOEXEC)
		t.Cleanup(func() { unix.Close(fd) })
		return fd
	}
	region := func(gpa, size uint64) vf.Region {
		return vf.Region{GuestAddr: gpa, Size: size, UserAddr: 0x10000 + gpa}
	}
	for _, tc := range []struct {
		name string
		// negotiate first (REPLY_ACK on), so failures are answered
		negotiate bool
		send      func(t *testing.T, fe *vf.Frontend) error
		// awaited: the request expects an answer, which must say failed
		awaited bool
		// logShm: negotiate LOG_SHMFD too
		logShm bool
	}{
		{"unknown request", false, func(t *testing.T, fe *vf.Frontend) error {
			return fe.Request(99, 0, nil)
		}, false, false},
		{"version 2", false, func(t *testing.T, fe *vf.Frontend) error {
			return fe.SendRaw(vf.GetFeatures, 2, 0, nil)
		}, false, false},
		{"reply flag in a request", false, func(t *testing.T, fe *vf.Frontend) error {
			return fe.Request(vf.GetFeatures, vf.FlagReply, nil)
		}, false, false},
		{"payload larger than any", false, func(t *testing.T, fe *vf.Frontend) error {
			return fe.SendRaw(vf.SetFeatures, 1, 1<<20, nil)
		}, false, false},
		{"payload of the wrong size", true, func(t *testing.T, fe *vf.Frontend) error {
			return fe.Request(vf.SetFeatures, vf.FlagNeedReply, []byte{1, 2, 3, 4})
		}, true, false},
		{"truncated", false, func(t *testing.T, fe *vf.Frontend) error {
			if err := fe.SendRaw(vf.SetVringAddr, 1, 40, make([]byte, 8)); err != nil {
				return err
			}
			return fe.C.CloseWrite()
		}, false, false},
		{"header cut short", false, func(t *testing.T, fe *vf.Frontend) error {
			if _, err := fe.C.Write([]byte{1, 0, 0, 0, 1}); err != nil {
				return err
			}
			return fe.C.CloseWrite()
		}, false, false},
		{"descriptor where none belongs", false, func(t *testing.T, fe *vf.Frontend) error {
			return fe.Request(vf.GetFeatures, 0, nil, evfd(t))
		}, true, false},
		{"kick without its descriptor", true, func(t *testing.T, fe *vf.Frontend) error {
			return fe.Request(vf.SetVringKick, vf.FlagNeedReply, vf.U64(0))
		}, true, false},
		{"memory table with too few descriptors", true, func(t *testing.T, fe *vf.Frontend) error {
			return fe.Request(vf.SetMemTable, vf.FlagNeedReply, vf.MemTable(region(0, 1<<20), region(2<<20, 1<<20)), memfd(t, 4<<20))
		}, true, false},
		{"too many descriptors", false, func(t *testing.T, fe *vf.Frontend) error {
			fds := make([]int, 12)
			for i := range fds {
				fds[i] = evfd(t)
			}
			return fe.Request(vf.SetMemTable, 0, vf.MemTable(region(0, 1<<20)), fds...)
		}, false, false},
		{"overlapping regions", true, func(t *testing.T, fe *vf.Frontend) error {
			m := memfd(t, 4<<20)
			return fe.Request(vf.SetMemTable, vf.FlagNeedReply, vf.MemTable(region(0, 2<<20), region(1<<20, 2<<20)), m, m)
		}, true, false},
		{"region larger than its file", true, func(t *testing.T, fe *vf.Frontend) error {
			return fe.Request(vf.SetMemTable, vf.FlagNeedReply, vf.MemTable(region(0, 8<<20)), memfd(t, 1<<20))
		}, true, false},
		{"region that wraps", true, func(t *testing.T, fe *vf.Frontend) error {
			return fe.Request(vf.SetMemTable, vf.FlagNeedReply, vf.MemTable(region(^uint64(0)-4095, 1<<20)), memfd(t, 1<<20))
		}, true, false},
		{"region not a file", true, func(t *testing.T, fe *vf.Frontend) error {
			return fe.Request(vf.SetMemTable, vf.FlagNeedReply, vf.MemTable(region(0, 4096)), evfd(t))
		}, true, false},
		{"ring addresses before the ring size", true, func(t *testing.T, fe *vf.Frontend) error {
			return fe.Request(vf.SetVringAddr, vf.FlagNeedReply, vf.Addr(0, 0, 0x10000, 0x11000, 0x12000, 0))
		}, true, false},
		{"ring outside memory", true, func(t *testing.T, fe *vf.Frontend) error {
			if _, err := fe.Call(vf.SetVringNum, vf.FlagNeedReply, vf.State(0, 256)); err != nil {
				return err
			}
			return fe.Request(vf.SetVringAddr, vf.FlagNeedReply, vf.Addr(0, 0, 0x10000, 0x11000, 0x12000, 0))
		}, true, false},
		{"ring size not a power of two", true, func(t *testing.T, fe *vf.Frontend) error {
			return fe.Request(vf.SetVringNum, vf.FlagNeedReply, vf.State(0, 300))
		}, true, false},
		{"no such ring", true, func(t *testing.T, fe *vf.Frontend) error {
			return fe.Request(vf.SetVringEnable, vf.FlagNeedReply, vf.State(7, 1))
		}, true, false},
		{"features not offered", true, func(t *testing.T, fe *vf.Frontend) error {
			return fe.Request(vf.SetFeatures, vf.FlagNeedReply, vf.U64(1<<62))
		}, true, false},
		{"removing a region never added", true, func(t *testing.T, fe *vf.Frontend) error {
			return fe.Request(vf.RemMemReg, vf.FlagNeedReply, vf.SingleRegion(region(0, 4096)))
		}, true, false},
		{"dirty log without LOG_SHMFD", true, func(t *testing.T, fe *vf.Frontend) error {
			return fe.Request(vf.SetLogBase, 0, logBase(4096, 0), memfd(t, 4096))
		}, true, false},
		{"dirty log larger than its file", true, func(t *testing.T, fe *vf.Frontend) error {
			return fe.Request(vf.SetLogBase, 0, logBase(1<<20, 0), memfd(t, 4096))
		}, true, true},
		{"dirty log at an unaligned offset", true, func(t *testing.T, fe *vf.Frontend) error {
			return fe.Request(vf.SetLogBase, 0, logBase(4096, 100), memfd(t, 8192))
		}, true, true},
		{"dirty log without its descriptor", true, func(t *testing.T, fe *vf.Frontend) error {
			return fe.Request(vf.SetLogBase, 0, logBase(4096, 0))
		}, true, true},
		{"dirty log not a file", true, func(t *testing.T, fe *vf.Frontend) error {
			return fe.Request(vf.SetLogBase, 0, logBase(8, 0), evfd(t))
		}, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := vf.Options{Features: vf.Linux}
			if tc.logShm {
				o.Protocol = vf.PReplyAck | vf.PLogShmFD
			}
			l, fe := pair(t, o)
			r := startReading(l)
			if tc.negotiate {
				if err := fe.Negotiate(); err != nil {
					t.Fatal(err)
				}
			}
			if err := tc.send(t, fe); err != nil {
				t.Fatal(err)
			}
			rep, err := fe.ReadReply()
			if tc.awaited {
				if err != nil {
					t.Fatalf("no failure reply: %v", err)
				}
				if v, _ := rep.U64(); v == 0 {
					t.Fatalf("reply %+v says success", rep)
				}
				_, err = fe.ReadReply()
			}
			if !errors.Is(err, io.EOF) && !errors.Is(err, unix.ECONNRESET) {
				t.Fatalf("after the bad message: %v, %+v; want the connection closed", err, rep)
			}
			select {
			case <-r.done:
			case <-time.After(20 * time.Second):
				t.Fatal("the link did not end")
			}
		})
	}
}

// logBase is SET_LOG_BASE's payload: the log's size and offset in its file.
func logBase(size, offset uint64) []byte {
	return binary.NativeEndian.AppendUint64(vf.U64(size), offset)
}
