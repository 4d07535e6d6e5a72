package flow

import (
	"errors"
	"os"
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
// The poller's goroutine waits for the epoll set through Go's own poller
// (an epoll set is readable while it holds events), never in a blocking
// epoll_wait: a goroutine blocked in a system call keeps its P until
// sysmon takes it back, 10 to 20 ms later when the process is idle. With
// GOMAXPROCS=2 and `slipway run` waiting for its command in waitid(2) on
// the other P, no P was left to wait in Go's poller, so frames from the
// guest sat unread in the TAP device until sysmon's 10 ms network poll: a
// guest's FIN was acknowledged that late, and a guest reconnecting from
// the same port at once found its last connection still in LAST-ACK or
// CLOSING (EADDRNOTAVAIL). With GOMAXPROCS=1 the poller alone did that
// whenever it waited.
//
// mu guards kicks and closed, and is held across every epoll_ctl, so that
// no call reaches the epoll descriptor once close has begun to release it.
type poller struct {
	epfd   int
	ep     *os.File // epfd, registered with Go's poller
	rc     syscall.RawConn
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
	// Non-blocking, so that os.NewFile puts it in Go's poller.
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		return nil, err
	}
	ep := os.NewFile(uintptr(epfd), "epoll")
	rc, err := ep.SyscallConn()
	if err != nil {
		ep.Close()
		return nil, err
	}
	p := &poller{epfd: epfd, ep: ep, rc: rc, kicks: map[int32]func(){}, done: make(chan struct{})}
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

func (p *poller) run() {
	defer close(p.done)
	events := make([]unix.EpollEvent, 128)
	var n int
	var werr error
	// Take what is ready without waiting; when nothing is, park in Go's
	// poller until the set is readable. Parking hands this P straight to
	// the drains just kicked.
	harvest := func(fd uintptr) bool {
		n, werr = unix.EpollWait(int(fd), events, 0)
		return n > 0 || werr != nil
	}
	for {
		if err := p.rc.Read(harvest); err != nil {
			return // closed
		}
		if werr != nil {
			if errors.Is(werr, unix.EINTR) {
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
	}
}

// close stops the poller: no epoll_ctl from now on, then the descriptor
// is closed, which ends run's wait.
func (p *poller) close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.mu.Unlock()
	p.ep.Close()
	<-p.done
}
