package flow

import (
	"errors"
	"runtime"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// poller tells idle flows' pumps that their host socket has something to
// read, so an idle flow keeps no goroutine parked on it. One epoll set for
// every host socket of a table; each socket is armed one-shot and re-armed
// by its pump once it has read everything, so a socket never has two
// readers. Re-arming re-polls the socket, so data that came in between is
// never missed.
//
// mu guards kicks and closed, and is held across every epoll_ctl, so that
// no call reaches the epoll descriptor once close has begun to release it.
type poller struct {
	epfd   int
	mu     sync.Mutex
	kicks  map[int32]func()
	closed bool
	done   chan struct{}
}

func newPoller() (*poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	p := &poller{epfd: epfd, kicks: map[int32]func(){}, done: make(chan struct{})}
	go p.run()
	return p, nil
}

const pollEvents = unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT

// watch arms fd: kick runs (on the poller's goroutine, so it must not
// block) once fd is readable, hung up or in error.
func (p *poller) watch(_ syscall.RawConn, fd int, kick func()) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	p.kicks[int32(fd)] = kick
	ev := unix.EpollEvent{Events: pollEvents, Fd: int32(fd)}
	if err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		delete(p.kicks, int32(fd))
		return err
	}
	return nil
}

// rearm asks for one more kick when fd is readable (at once if it is).
func (p *poller) rearm(fd int) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	ev := unix.EpollEvent{Events: pollEvents, Fd: int32(fd)}
	return unix.EpollCtl(p.epfd, unix.EPOLL_CTL_MOD, fd, &ev)
}

// forget stops watching fd; call it before closing fd, so a reused
// descriptor number is never kicked for the wrong flow. Forgetting a
// descriptor that is not watched does nothing.
func (p *poller) forget(fd int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.kicks[int32(fd)]; !ok || p.closed {
		return
	}
	delete(p.kicks, int32(fd))
	unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, fd, nil)
}

func (p *poller) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

func (p *poller) run() {
	defer close(p.done)
	events := make([]unix.EpollEvent, 128)
	for !p.isClosed() {
		// A timeout lets close end the loop without a wake-up descriptor.
		n, err := unix.EpollWait(p.epfd, events, 500)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return
		}
		for _, ev := range events[:n] {
			p.mu.Lock()
			kick := p.kicks[ev.Fd]
			p.mu.Unlock()
			if kick != nil {
				kick()
			}
		}
		if n > 0 {
			// The drains just kicked wait in this thread's run queue;
			// run them here now, instead of leaving them to another
			// thread woken on another CPU while this one blocks in
			// epoll_wait again.
			runtime.Gosched()
		}
	}
}

func (p *poller) close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.mu.Unlock()
	<-p.done
	unix.Close(p.epfd)
}
