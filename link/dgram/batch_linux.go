//go:build linux && !dgramportable

package dgram

import (
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/slipway-net/slipway/link"
)

// On Linux a batch is one recvmmsg or sendmmsg call: the kernel fills or
// drains many messages per system call. The headers, iovecs and address
// slots live in the batch and are reused, so a call allocates nothing.

// rxBatch receives messages into frame buffers (after their virtio-net
// header room). Owned by one reader.
type rxBatch struct {
	hdrs  []unix.Mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrUnix // nil if senders' addresses are not wanted
}

func newRxBatch(n int, wantNames bool) *rxBatch {
	b := &rxBatch{hdrs: make([]unix.Mmsghdr, n), iovs: make([]unix.Iovec, n)}
	if wantNames {
		b.names = make([]unix.RawSockaddrUnix, n)
	}
	return b
}

// recv reads up to len(bufs) (at most the batch size) waiting messages
// without blocking. Message i lands in bufs[i][link.VnetHdrLen:]; out[i]
// says how long it was, whether it was cut short and who sent it.
func (b *rxBatch) recv(fd int, bufs [][]byte, out []rxMsg) (int, error) {
	n := min(len(bufs), len(b.hdrs))
	for i := 0; i < n; i++ {
		b.iovs[i].Base = &bufs[i][link.VnetHdrLen]
		b.iovs[i].SetLen(len(bufs[i]) - link.VnetHdrLen)
		h := &b.hdrs[i]
		h.Hdr = unix.Msghdr{Iov: &b.iovs[i]}
		h.Hdr.SetIovlen(1)
		if b.names != nil {
			h.Hdr.Name = (*byte)(unsafe.Pointer(&b.names[i]))
			h.Hdr.Namelen = unix.SizeofSockaddrUnix
		}
		h.Len = 0
	}
	r, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&b.hdrs[0])), uintptr(n), unix.MSG_DONTWAIT, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	got := int(r)
	for i := 0; i < got; i++ {
		h := &b.hdrs[i]
		out[i] = rxMsg{size: int(h.Len), trunc: h.Hdr.Flags&unix.MSG_TRUNC != 0}
		if b.names != nil {
			out[i].from = addrFromRaw(&b.names[i], h.Hdr.Namelen)
		}
	}
	return got, nil
}

// txBatch sends frames with sendmmsg. Owned by one writer at a time.
type txBatch struct {
	hdrs []unix.Mmsghdr
	iovs []unix.Iovec
	n    int // messages prepared
	niov int // iovecs in use
}

// prepare lays out the frames as messages to to (nil on a connected
// socket): each message gathers its frame from the pieces with one iovec
// each, so nothing is copied (the header is not sent). Frames longer than
// maxFrame are skipped; prepare returns how many.
func (b *txBatch) prepare(frames []link.Frame, maxFrame int, to *sockname) (skipped int) {
	if cap(b.hdrs) < len(frames) {
		b.hdrs = make([]unix.Mmsghdr, len(frames))
	}
	b.hdrs = b.hdrs[:cap(b.hdrs)]
	pieces := 0
	for i := range frames {
		pieces += len(frames[i].Segs)
	}
	if cap(b.iovs) < pieces {
		b.iovs = make([]unix.Iovec, pieces)
	}
	b.iovs = b.iovs[:cap(b.iovs)]
	k, next := 0, 0
	for i := range frames {
		f := &frames[i]
		if len(f.Segs) == 0 || len(f.Segs) > maxIOV || f.Len() > maxFrame {
			skipped++
			continue
		}
		first := next
		for _, seg := range f.Segs {
			b.setIov(next, seg)
			next++
		}
		b.setMessage(k, first, len(f.Segs), to)
		k++
	}
	b.n = k
	b.niov = next
	return skipped
}

// setIov points iovec i at p.
func (b *txBatch) setIov(i int, p []byte) {
	iov := &b.iovs[i]
	iov.Base = nil
	if len(p) > 0 {
		iov.Base = &p[0]
	}
	iov.SetLen(len(p))
}

// setMessage makes message k the n iovecs from first, sent to to (nil on
// a connected socket).
func (b *txBatch) setMessage(k, first, n int, to *sockname) {
	h := &b.hdrs[k]
	h.Hdr = unix.Msghdr{Iov: &b.iovs[first]}
	h.Hdr.SetIovlen(n)
	if to != nil {
		h.Hdr.Name = (*byte)(unsafe.Pointer(&to.raw))
		h.Hdr.Namelen = to.len
	}
	h.Len = 0
}

// count is how many messages prepare laid out.
func (b *txBatch) count() int { return b.n }

// send transmits prepared messages from index from on, without blocking,
// and returns how many went out.
func (b *txBatch) send(fd int, from int, flags int) (int, error) {
	if from >= b.n {
		return 0, nil
	}
	r, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&b.hdrs[from])), uintptr(b.n-from), uintptr(flags|unix.MSG_DONTWAIT), 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(r), nil
}

// release drops the batch's references to the frames, which belong to
// the caller once send returns.
func (b *txBatch) release() {
	for i := 0; i < b.niov; i++ {
		b.iovs[i].Base = nil
	}
	for i := 0; i < b.n; i++ {
		b.hdrs[i].Hdr = unix.Msghdr{}
	}
	b.n, b.niov = 0, 0
}
