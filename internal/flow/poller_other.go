//go:build !linux

package flow

import (
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// poller, off Linux, waits for each watched socket on a goroutine of its
// own through Go's poller (the Linux one uses a single epoll set).
type poller struct {
	mu     sync.Mutex
	rearms map[int]chan struct{}
	closed bool
}

func newPoller() (*poller, error) { return &poller{rearms: map[int]chan struct{}{}}, nil }

func (p *poller) watch(rc syscall.RawConn, fd int, kick func()) error {
	ch := make(chan struct{}, 1)
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return ErrClosed
	}
	p.rearms[fd] = ch
	p.mu.Unlock()
	go func() {
		for {
			err := rc.Read(func(fd uintptr) bool {
				var b [1]byte
				_, _, e := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
				return e != unix.EAGAIN
			})
			if err != nil {
				return
			}
			kick()
			if _, ok := <-ch; !ok {
				return
			}
		}
	}()
	return nil
}

func (p *poller) rearm(fd int) error {
	p.mu.Lock()
	ch := p.rearms[fd]
	p.mu.Unlock()
	if ch != nil {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	return nil
}

func (p *poller) forget(fd int) {
	p.mu.Lock()
	ch := p.rearms[fd]
	delete(p.rearms, fd)
	p.mu.Unlock()
	if ch != nil {
		close(ch)
	}
}

// close refuses new watches; the sockets' own goroutines end as their
// flows forget them.
func (p *poller) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
}
