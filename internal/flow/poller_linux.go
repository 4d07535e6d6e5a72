package flow

import (
	"errors"
	"os"
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
//
// wake, an eventfd in the set, is how close ends a blocking epoll_wait at
// once; without it a table's Close (and so a network's) waited out the
// wait's timeout, half a second, whenever it had had a flow. The blocking
// waiter is woken and has returned before the epoll descriptor closes, so
// it never waits on a descriptor number that another poller reused.
type poller struct {
	epfd     int
	ep       *os.File // epfd, registered with Go's poller
	rc       syscall.RawConn
	wake     int  // eventfd, written once by close
	blocking bool // run waits in epoll_wait itself
	mu       sync.Mutex
	kicks    map[int32]func()
	closed   bool
	done     chan struct{}
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
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		ep.Close()
		return nil, err
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wake)}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wake, &ev); err != nil {
		unix.Close(wake)
		ep.Close()
		return nil, err
	}
	p := &poller{epfd: epfd, ep: ep, rc: rc, wake: wake, blocking: runtime.GOMAXPROCS(0) > 1,
		kicks: map[int32]func(){}, done: make(chan struct{})}
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

// run waits for events and kicks their flows until close. With more than
// one P it waits in epoll_wait on a thread of its own and runs the drains
// it kicked on that thread straight away: the host-to-guest direction of a
// request and response then wakes one thread per answer, not a chain of
// them through Go's scheduler (sockperf's latency through a namespace:
// about half). Its P stays with it while it waits, which leaves the others
// for the link readers; the process must not hold the rest of its Ps in
// blocking system calls of its own (see nsrun's awaitExit). With one P,
// that P would be gone for everything else while it waits, so the poller
// waits in Go's poller instead.
func (p *poller) run() {
	defer close(p.done)
	if p.blocking {
		p.waitBlocking()
		return
	}
	p.waitInGoPoller()
}

// waitBlocking waits in epoll_wait itself; close wakes it through wake
// (the timeout is only a backstop).
func (p *poller) waitBlocking() {
	events := make([]unix.EpollEvent, 128)
	for !p.isClosed() {
		n, err := unix.EpollWait(p.epfd, events, 500)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return
		}
		p.kick(events[:n])
		if n > 0 {
			// The drains just kicked wait in this thread's run queue;
			// run them here now, instead of leaving them to another
			// thread woken on another CPU while this one blocks again.
			runtime.Gosched()
		}
	}
}

func (p *poller) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

// kick kicks the flows of events.
func (p *poller) kick(events []unix.EpollEvent) {
	for _, ev := range events {
		p.mu.Lock()
		kick := p.kicks[ev.Fd]
		p.mu.Unlock()
		if kick != nil {
			kick()
		}
	}
}

// waitInGoPoller waits for the epoll set to be readable (it is while it
// holds events) in Go's own poller, holding no P while it waits.
func (p *poller) waitInGoPoller() {
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
		p.kick(events[:n])
	}
}

// close stops the poller: no epoll_ctl from now on. A blocking wait ends
// on wake, and only then does the epoll descriptor close; a wait in Go's
// poller ends when the descriptor closes.
func (p *poller) close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.mu.Unlock()
	if p.blocking {
		one := [8]byte{1}
		unix.Write(p.wake, one[:])
		<-p.done
		p.ep.Close()
	} else {
		p.ep.Close()
		<-p.done
	}
	unix.Close(p.wake)
}
