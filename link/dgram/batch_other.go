//go:build !linux

package dgram

import (
	"golang.org/x/sys/unix"

	"github.com/slipway-net/slipway/link"
)

// Without recvmmsg/sendmmsg a batch is a loop of recvmsg/sendmsg calls in
// one poller wake-up. x/sys/unix returns the sender as a Sockaddr, which
// costs an allocation per received datagram on these systems.

type rxBatch struct {
	n         int
	wantNames bool
}

func newRxBatch(n int, wantNames bool) *rxBatch {
	return &rxBatch{n: n, wantNames: wantNames}
}

func (b *rxBatch) recv(fd int, bufs [][]byte, out []rxMsg) (int, error) {
	n := min(len(bufs), b.n)
	got := 0
	for got < n {
		size, _, flags, from, err := unix.Recvmsg(fd, bufs[got][link.VnetHdrLen:], nil, unix.MSG_DONTWAIT)
		if err != nil {
			if got > 0 {
				return got, nil // report the error with the next call
			}
			return 0, err
		}
		out[got] = rxMsg{size: size, trunc: flags&unix.MSG_TRUNC != 0}
		if b.wantNames {
			if su, ok := from.(*unix.SockaddrUnix); ok {
				out[got].from = addrFromName(su.Name)
			}
		}
		got++
	}
	return got, nil
}

func addrFromName(name string) addr {
	var a addr
	a.n = uint8(copy(a.path[:], name))
	return a
}

type sockname struct {
	sa *unix.SockaddrUnix
}

func newSockname(a addr) *sockname {
	return &sockname{sa: &unix.SockaddrUnix{Name: string(a.path[:a.n])}}
}

type txBatch struct {
	frames [][][]byte // each message in pieces
	to     *sockname
}

func (b *txBatch) prepare(frames []link.Frame, maxFrame int, to *sockname) (skipped int) {
	b.frames = b.frames[:0]
	for i := range frames {
		if frames[i].Len() > maxFrame {
			skipped++
			continue
		}
		b.frames = append(b.frames, frames[i].Segs)
	}
	b.to = to
	return skipped
}

func (b *txBatch) count() int { return len(b.frames) }

func (b *txBatch) send(fd int, from int, flags int) (int, error) {
	sent := 0
	for i := from; i < len(b.frames); i++ {
		var sa unix.Sockaddr
		if b.to != nil {
			sa = b.to.sa
		}
		if _, err := unix.SendmsgBuffers(fd, b.frames[i], nil, sa, flags|unix.MSG_DONTWAIT); err != nil {
			if sent > 0 {
				return sent, nil
			}
			return 0, err
		}
		sent++
	}
	return sent, nil
}

func (b *txBatch) release() {
	clear(b.frames)
	b.frames = b.frames[:0]
	b.to = nil
}
