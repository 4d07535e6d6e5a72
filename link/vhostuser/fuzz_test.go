package vhostuser

import (
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/slipway-net/slipway/link"
)

// shape is what the specification says a request carries: its payload
// size (-1: variable, see below) and descriptors; written apart from
// parseMessage so that the fuzz target checks one against the other.
type shape struct{ size, fds int }

var shapes = map[uint32]shape{
	1: {0, 0}, 2: {8, 0}, 3: {0, 0}, 4: {0, 0}, 5: {-1, -1}, 6: {16, 1}, 7: {0, 1},
	8: {8, 0}, 9: {40, 0}, 10: {8, 0}, 11: {8, 0}, 12: {8, -2}, 13: {8, -2}, 14: {8, -2},
	15: {0, 0}, 16: {8, 0}, 17: {0, 0}, 18: {8, 0}, 19: {8, 0}, 20: {8, 0}, 21: {0, 1},
	24: {-1, 0}, 25: {-1, 0}, 36: {0, 0}, 37: {40, 1}, 38: {40, -3}, 39: {8, 0}, 40: {0, 0},
}

// accepts reports whether a request of this header, payload and
// descriptor count is well-formed by the table above.
func accepts(req uint32, b []byte, nfds int) bool {
	s, ok := shapes[req]
	if !ok {
		return false
	}
	switch {
	case req == 5: // memory table: n regions, n descriptors, 1 <= n <= 8
		if len(b) < 8 {
			return false
		}
		n := int(binary.NativeEndian.Uint32(b))
		return n >= 1 && n <= 8 && len(b) == 8+32*n && nfds == n
	case s.size == -1: // config: 12-byte header plus its size
		return len(b) >= 12 && len(b) == 12+int(binary.NativeEndian.Uint32(b[4:])) && nfds == 0
	case len(b) != s.size:
		return false
	case s.fds == -2: // kick, call, err: an fd unless bit 8; index in bits 0-7
		v := binary.NativeEndian.Uint64(b)
		if v>>9 != 0 {
			return false
		}
		return nfds == 1 && v&0x100 == 0 || nfds == 0 && v&0x100 != 0
	case s.fds == -3: // REM_MEM_REG: none, or one to be closed
		return nfds <= 1
	}
	return nfds == s.fds
}

// FuzzParseMessage: parseMessage accepts exactly the messages the
// specification's shapes allow, and decodes what it accepts faithfully.
func FuzzParseMessage(f *testing.F) {
	f.Add(uint32(2), []byte{1, 2, 3, 4, 5, 6, 7, 8}, uint8(0))
	f.Add(uint32(5), append(binary.NativeEndian.AppendUint64(nil, 1), make([]byte, 32)...), uint8(1))
	f.Add(uint32(9), make([]byte, 40), uint8(0))
	f.Add(uint32(12), binary.NativeEndian.AppendUint64(nil, 0x101), uint8(0))
	f.Add(uint32(24), append(binary.NativeEndian.AppendUint32(make([]byte, 4), 4), make([]byte, 8)...), uint8(0))
	f.Add(uint32(38), make([]byte, 40), uint8(1))
	f.Fuzz(func(t *testing.T, req uint32, b []byte, nfds uint8) {
		if len(b) > maxPayload {
			return
		}
		fds := make([]int, nfds%12)
		h := header{Request: req, Flags: flagVersion, Size: uint32(len(b))}
		m, err := parseMessage(h, b, fds)
		if ok := accepts(req, b, len(fds)); ok != (err == nil) {
			t.Fatalf("request %d, %d bytes, %d fds: parse error %v, the spec says well-formed %v", req, len(b), len(fds), err, ok)
		}
		if err != nil {
			return
		}
		switch {
		case len(b) == 8 && shapes[req].size == 8 && req != 8 && req != 10 && req != 11 && req != 18:
			if m.u64 != binary.NativeEndian.Uint64(b) {
				t.Fatalf("u64 %#x from %x", m.u64, b)
			}
		case req == 5 || req == 37 || req == 38:
			off := 8
			for _, r := range m.regions {
				if r.GuestAddr != binary.NativeEndian.Uint64(b[off:]) || r.MmapOffset != binary.NativeEndian.Uint64(b[off+24:]) {
					t.Fatalf("region %+v from %x", r, b[off:off+32])
				}
				off += 32
			}
		case req == 9:
			if m.addr.Desc != binary.NativeEndian.Uint64(b[8:]) || m.addr.Log != binary.NativeEndian.Uint64(b[32:]) {
				t.Fatalf("addr %+v from %x", m.addr, b)
			}
		}
	})
}

// FuzzMessages feeds a byte stream (with descriptors on its first byte)
// to a Link's message loop. Whatever it holds, every reply has the flags
// QEMU insists on, the link ends once the stream does, and every
// descriptor it was given is closed again: nothing leaks.
func FuzzMessages(f *testing.F) {
	msg := func(req, flags uint32, payload []byte) []byte {
		b := make([]byte, 12, 12+len(payload))
		header{Request: req, Flags: flags, Size: uint32(len(payload))}.encode(b)
		return append(b, payload...)
	}
	u64 := func(v uint64) []byte { return binary.NativeEndian.AppendUint64(nil, v) }
	region := func(gpa, size uint64) []byte {
		b := binary.NativeEndian.AppendUint32(nil, 1)
		b = binary.NativeEndian.AppendUint32(b, 0)
		for _, v := range []uint64{gpa, size, 0x1000, 0} {
			b = binary.NativeEndian.AppendUint64(b, v)
		}
		return b
	}
	var setup []byte
	for _, m := range [][]byte{
		msg(reqGetFeatures, 1, nil),
		msg(reqGetProtocolFeatures, 1, nil),
		msg(reqSetProtocolFeatures, 1, u64(pReplyAck)),
		msg(reqSetFeatures, 1|flagNeedReply, u64(fVersion1|fMrgRxbuf)),
		msg(reqSetMemTable, 1|flagNeedReply, region(0, 1<<20)),
		msg(reqSetVringNum, 1, append(binary.NativeEndian.AppendUint32(nil, 1), 0, 1, 0, 0)),
		msg(reqGetVringBase, 1, make([]byte, 8)),
	} {
		setup = append(setup, m...)
	}
	f.Add(setup, uint8(1))
	f.Add(msg(reqSetVringKick, 1, u64(1)), uint8(1))
	f.Add(msg(reqSetVringCall, 1, u64(0x100)), uint8(0))
	f.Add(msg(99, 1, nil), uint8(3))
	f.Add([]byte{1, 0, 0}, uint8(0))
	// The runtime's poller opens its descriptors with the first
	// pollable file: before the count, not during it.
	if fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0); err == nil {
		file := os.NewFile(uintptr(fds[0]), "warm-up")
		if c, err := net.FileConn(file); err == nil {
			c.Close()
		}
		file.Close()
		unix.Close(fds[1])
	}
	baseline := openFDs(f)
	f.Fuzz(func(t *testing.T, stream []byte, nfds uint8) {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		file := os.NewFile(uintptr(fds[0]), "backend")
		c, err := net.FileConn(file)
		file.Close()
		if err != nil {
			t.Fatal(err)
		}
		l := New(c.(*net.UnixConn), Options{Logger: slog.New(slog.DiscardHandler)})
		// Memfds and eventfds, as a front-end passes them.
		var pass []int
		for i := 0; i < int(nfds%10); i++ {
			var fd int
			if i%2 == 0 {
				fd, _ = unix.MemfdCreate("fuzz", unix.MFD_CLOEXEC)
				unix.Ftruncate(fd, 1<<20)
			} else {
				fd, _ = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
			}
			pass = append(pass, fd)
		}
		if len(stream) > 0 {
			var oob []byte
			if len(pass) > 0 {
				oob = unix.UnixRights(pass...)
			}
			unix.Sendmsg(fds[1], stream, oob, nil, 0)
		}
		closeFDs(pass)
		unix.Shutdown(fds[1], unix.SHUT_WR)
		peer := os.NewFile(uintptr(fds[1]), "frontend")
		for {
			var h [hdrSize]byte
			if _, err := io.ReadFull(peer, h[:]); err != nil {
				break
			}
			rh := decodeHeader(h[:])
			if rh.Flags != flagVersion|flagReply || rh.Size > maxPayload {
				t.Fatalf("reply %+v", rh)
			}
			if _, err := io.CopyN(io.Discard, peer, int64(rh.Size)); err != nil {
				break
			}
		}
		peer.Close()
		<-l.loopDone
		l.Close()
		if n := openFDs(t); n != baseline {
			t.Fatalf("%d descriptors open after the link ended, %d before", n, baseline)
		}
	})
}

func openFDs(t testing.TB) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// Ring layout for FuzzRing, in a 64 KiB region at guest address 0 (user
// address ringUVA): the transmit ring's parts, the receive ring's, then
// room for buffers. The fuzzer fills all of it.
const (
	fuzzMem  = 64 << 10
	ringUVA  = 0x7000_0000
	fuzzRing = 16
)

// fuzzMemory maps the region FuzzRing's rings live in; one serves every
// input.
func fuzzMemory(t testing.TB) *memory {
	fd, err := unix.MemfdCreate("ring", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	unix.Ftruncate(fd, fuzzMem)
	m, err := buildTable([]region{{GuestAddr: 0, Size: fuzzMem, UserAddr: ringUVA}}, []int{fd})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// fuzzLink is a Link with both rings laid over m, filled with mem.
func fuzzLink(t *testing.T, m *memory, mem []byte, features uint64) *Link {
	d := m.regions[0].data
	clear(d[copy(d, mem):])
	l := &Link{log: slog.New(slog.DiscardHandler), name: "fuzz", features: features, hdrLen: link.VnetHdrLen, mem: m,
		ended: make(chan struct{})}
	if features&(fVersion1|fMrgRxbuf) == 0 {
		l.hdrLen = 10
	}
	for i, base := range []uint64{1024, 0} { // receive, transmit
		r, err := newRing(m, fuzzRing, vringAddr{Desc: ringUVA + base, Avail: ringUVA + base + 256, Used: ringUVA + base + 512})
		if err != nil {
			t.Fatal(err)
		}
		r.eventIdx, r.indirect = features&fEventIdx != 0, features&fIndirectDesc != 0
		r.start()
		l.queues = append(l.queues, &queue{index: i, kickFD: -1, call: -1, errFD: -1, ring: r, enabled: true, wake: make(chan struct{}, 1)})
	}
	return l
}

// within reports whether b lies inside the region's bytes.
func within(m *memory, b []byte) bool {
	if len(b) == 0 {
		return true
	}
	d := m.regions[0].data
	start, end := uintptr(unsafe.Pointer(&d[0])), uintptr(unsafe.Pointer(&d[0]))+uintptr(len(d))
	p := uintptr(unsafe.Pointer(&b[0]))
	return p >= start && p+uintptr(len(b)) <= end
}

// FuzzRing: rings whose every byte the fuzzer chose (descriptors, indices,
// indirect tables, headers). Whatever they hold, the walker hands out
// only memory inside the region and never more than a chain may hold,
// Read takes no more than was made available and passes on only headers
// the features allow, and Write either delivers the whole frame or takes
// nothing.
func FuzzRing(f *testing.F) {
	// A transmit ring with one good chain and one that loops.
	seed := make([]byte, 4096)
	binary.LittleEndian.PutUint64(seed[0:], 8192) // desc 0: 12+60 bytes at 8192
	binary.LittleEndian.PutUint32(seed[8:], 72)
	binary.LittleEndian.PutUint64(seed[16:], 8192) // desc 1 -> 2 -> 1
	binary.LittleEndian.PutUint32(seed[24:], 72)
	binary.LittleEndian.PutUint16(seed[28:], descFNext)
	binary.LittleEndian.PutUint16(seed[30:], 2)
	binary.LittleEndian.PutUint64(seed[32:], 8192)
	binary.LittleEndian.PutUint32(seed[40:], 72)
	binary.LittleEndian.PutUint16(seed[44:], descFNext)
	binary.LittleEndian.PutUint16(seed[46:], 1)
	binary.LittleEndian.PutUint16(seed[256+2:], 2) // avail idx
	binary.LittleEndian.PutUint16(seed[256+4:], 0)
	binary.LittleEndian.PutUint16(seed[256+6:], 1)
	// A receive ring with one writable 2 KiB buffer.
	binary.LittleEndian.PutUint64(seed[1024:], 16384)
	binary.LittleEndian.PutUint32(seed[1024+8:], 2048)
	binary.LittleEndian.PutUint16(seed[1024+12:], descFWrite)
	binary.LittleEndian.PutUint16(seed[1280+2:], 1)
	f.Add(seed, uint64(fVersion1|fMrgRxbuf|fCsum|fHostTSO4|fIndirectDesc), uint16(100))
	f.Add(seed, uint64(0), uint16(1500))
	f.Add(seed, uint64(fVersion1|fEventIdx|fGuestCsum|fGuestTSO4), uint16(60000))
	// Set up once: the fuzzer runs inputs back to back, and each one's
	// cost decides how far it gets.
	m := fuzzMemory(f)
	defer m.unmapAll()
	bufs, sizes := link.NewBuffers(batchSize)
	f.Fuzz(func(t *testing.T, mem []byte, features uint64, frameLen uint16) {
		features &= offeredFeatures
		l := fuzzLink(t, m, mem, features)
		tx := l.txq(0).ring
		pending, perr := tx.pending()
		if perr == nil {
			var c chain
			for i := uint16(0); i < pending; i++ {
				tx.walk(tx.headAt(i), &c, false, l.hdrLen+link.MaxFrameLen)
				if c.err == nil && c.size > l.hdrLen+link.MaxFrameLen {
					t.Fatalf("chain of %d bytes accepted", c.size)
				}
				for _, b := range c.bufs {
					if !within(m, b) {
						t.Fatal("walk handed out memory outside the region")
					}
				}
			}
		}
		usedBefore := tx.usedIdx
		n, _, err := l.readRing(l.txq(0), bufs, sizes)
		if err != nil {
			t.Fatal(err)
		}
		if perr == nil && (tx.usedIdx-usedBefore > pending || n > int(pending)) {
			t.Fatalf("took %d chains and %d frames of %d available", tx.usedIdx-usedBefore, n, pending)
		}
		for i := 0; i < n; i++ {
			h := link.DecodeVnetHdr(bufs[i])
			if sizes[i] > link.MaxFrameLen || h.Flags&^link.FlagNeedsCsum != 0 ||
				h.Flags != 0 && features&fCsum == 0 ||
				h.GSOType == link.GSOTCPv4 && features&fHostTSO4 == 0 ||
				h.GSOType != link.GSONone && h.GSOType != link.GSOTCPv4 && h.GSOType != link.GSOTCPv6 {
				t.Fatalf("frame %d of %d bytes with header %+v under features %#x", i, sizes[i], h, features)
			}
		}

		rx := l.rxq(0).ring
		rxBefore := rx.usedIdx
		frame := make([]byte, link.VnetHdrLen+int(frameLen))
		wrote, err := l.Write(link.Frames(frame))
		if err != nil && !errors.Is(err, link.ErrQueueFull) || wrote > 1 {
			t.Fatalf("Write = %d, %v", wrote, err)
		}
		if wrote == 1 {
			total := 0
			for i := rxBefore; i != rx.usedIdx; i++ {
				e := rx.used[4+8*int(i&(rx.num-1)):]
				total += int(binary.LittleEndian.Uint32(e[4:]))
			}
			if want := l.hdrLen + max(int(frameLen), minGuestFrame); total != want {
				t.Fatalf("wrote %d bytes into the guest's buffers for a frame of %d", total, want)
			}
		}
	})
}
