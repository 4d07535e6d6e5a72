package dgram

import (
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/slipway-net/slipway/link"
)

// Where there is no recvmmsg or sendmmsg (macOS, the BSDs) a batch is a
// loop of recvmsg or sendmsg calls in one poller wake-up. Like the Linux
// batch it owns its message header, iovecs and address slot and reuses
// them, so a datagram costs a system call and no allocation. It is built
// on every system so that its tests run on Linux too; `go test -tags
// dgramportable` runs the whole package on it.

// x/sys's exported Recvmsg and SendmsgBuffers cannot serve here: the
// first turns every sender's address into a new Sockaddr and string, the
// second makes a new iovec slice per call. A raw unix.Syscall cannot
// either: macOS (and OpenBSD) only support system calls through libc, and
// the libc syscall() behind unix.Syscall is variadic, which Go on
// darwin/arm64 does not call correctly. x/sys's own unexported recvmsg and
// sendmsg take a Msghdr as is and call libc where it must and the kernel
// elsewhere; they are linked to here. The cross-build test links the
// command for every target, so a change of theirs fails there, not at run
// time.

//go:linkname sysRecvmsg golang.org/x/sys/unix.recvmsg
func sysRecvmsg(s int, msg *unix.Msghdr, flags int) (n int, err error)

//go:linkname sysSendmsg golang.org/x/sys/unix.sendmsg
func sysSendmsg(s int, msg *unix.Msghdr, flags int) (n int, err error)

// msgRx receives one message per recvmsg into frame buffers (after their
// virtio-net header room). Owned by one reader.
type msgRx struct {
	n     int // messages per call at most
	hdr   unix.Msghdr
	iov   unix.Iovec
	name  unix.RawSockaddrUnix
	names bool
}

func newMsgRx(n int, wantNames bool) *msgRx {
	return &msgRx{n: n, names: wantNames}
}

// recv reads up to len(bufs) (at most the batch size) waiting messages
// without blocking. Message i lands in bufs[i][link.VnetHdrLen:]; out[i]
// says how long it was, whether it was cut short and who sent it.
func (b *msgRx) recv(fd int, bufs [][]byte, out []rxMsg) (int, error) {
	n := min(len(bufs), b.n)
	got := 0
	for got < n {
		buf := bufs[got][link.VnetHdrLen:]
		b.iov.Base = &buf[0]
		b.iov.SetLen(len(buf))
		b.hdr = unix.Msghdr{Iov: &b.iov}
		b.hdr.SetIovlen(1)
		if b.names {
			b.hdr.Name = (*byte)(unsafe.Pointer(&b.name))
			b.hdr.Namelen = unix.SizeofSockaddrUnix
		}
		size, err := sysRecvmsg(fd, &b.hdr, unix.MSG_DONTWAIT)
		if err != nil {
			b.iov.Base = nil
			if got > 0 {
				return got, nil // report the error with the next call
			}
			return 0, err
		}
		out[got] = rxMsg{size: size, trunc: truncated(&b.hdr)}
		if b.names {
			out[got].from = addrFromRaw(&b.name, b.hdr.Namelen)
		}
		got++
	}
	b.iov.Base = nil // the buffers are the caller's again
	return got, nil
}

// msgTx sends prepared frames one sendmsg each. Owned by one writer at a
// time.
type msgTx struct {
	iovs []unix.Iovec
	msgs []msgSpan
	hdr  unix.Msghdr
	to   *sockname
	niov int
}

// msgSpan is one message: iovecs [first, first+n).
type msgSpan struct{ first, n int }

// prepare lays out the frames as messages to to (nil on a connected
// socket), one iovec per piece, so nothing is copied (the header is not
// sent). Frames longer than maxFrame are skipped; prepare returns how many.
// The iovecs and spans grow to the largest batch seen and are kept.
func (b *msgTx) prepare(frames []link.Frame, maxFrame int, to *sockname) (skipped int) {
	pieces := 0
	for i := range frames {
		pieces += len(frames[i].Segs)
	}
	if cap(b.iovs) < pieces {
		b.iovs = make([]unix.Iovec, pieces)
	}
	b.iovs = b.iovs[:cap(b.iovs)]
	b.msgs = b.msgs[:0]
	next := 0
	for i := range frames {
		f := &frames[i]
		if len(f.Segs) == 0 || len(f.Segs) > maxIOV || f.Len() > maxFrame {
			skipped++
			continue
		}
		first := next
		for _, seg := range f.Segs {
			iov := &b.iovs[next]
			iov.Base = nil
			if len(seg) > 0 {
				iov.Base = &seg[0]
			}
			iov.SetLen(len(seg))
			next++
		}
		b.msgs = append(b.msgs, msgSpan{first, len(f.Segs)})
	}
	b.niov = next
	b.to = to
	return skipped
}

// count is how many messages prepare laid out.
func (b *msgTx) count() int { return len(b.msgs) }

// send transmits prepared messages from index from on, without blocking,
// and returns how many went out. An error after some went out is left for
// the next call to meet.
func (b *msgTx) send(fd int, from int, flags int) (int, error) {
	sent := 0
	for i := from; i < len(b.msgs); i++ {
		m := b.msgs[i]
		b.hdr = unix.Msghdr{Iov: &b.iovs[m.first]}
		b.hdr.SetIovlen(m.n)
		if b.to != nil {
			b.hdr.Name = (*byte)(unsafe.Pointer(&b.to.raw))
			b.hdr.Namelen = b.to.len
		}
		if _, err := sysSendmsg(fd, &b.hdr, flags|unix.MSG_DONTWAIT); err != nil {
			if sent > 0 {
				return sent, nil
			}
			return 0, err
		}
		sent++
	}
	return sent, nil
}

// release drops the batch's references to the frames, which belong to
// the caller once send returns.
func (b *msgTx) release() {
	for i := 0; i < b.niov; i++ {
		b.iovs[i].Base = nil
	}
	b.hdr = unix.Msghdr{}
	b.msgs = b.msgs[:0]
	b.niov = 0
	b.to = nil
}
