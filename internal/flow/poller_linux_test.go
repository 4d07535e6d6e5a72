package flow

import (
	"runtime"
	"strings"
	"testing"
	"time"
)

// pollerGoroutineState returns the scheduler state of the goroutine running
// p.run, as a stack dump shows it ("IO wait", "syscall", "runnable"...), or
// "" while there is none.
func pollerGoroutineState() string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	for _, g := range strings.Split(string(buf), "\n\n") {
		if !strings.Contains(g, "flow.(*poller).run(") {
			continue
		}
		header, _, _ := strings.Cut(g, "\n")
		_, state, _ := strings.Cut(header, "[")
		state, _, _ = strings.Cut(state, "]")
		return state
	}
	return ""
}

// With one P, an idle poller must wait in Go's poller, not in a blocking
// epoll_wait: a goroutine blocked in a system call keeps its P until sysmon
// takes it back (10 to 20 ms later in an idle process), and the only P
// would be gone: no link's frames read meanwhile (a guest's FIN then sat
// in the TAP that long, and the guest, reconnecting from the same port,
// found the old connection still in LAST-ACK: TestReconnectFromSamePort in
// test/e2e).
func TestIdlePollerWaitsInGoPoller(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	p, err := newPoller()
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	a, _ := tcpPair(t)
	rc, err := a.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	fd := -1
	rc.Control(func(f uintptr) { fd = int(f) })
	if err := p.watch(rc, fd, func() {}); err != nil {
		t.Fatal(err)
	}
	defer p.forget(fd)
	// Wait for the poller to settle into one waiting state or the other;
	// it only passes through the rest.
	for deadline := time.Now().Add(30 * time.Second); ; {
		switch state := pollerGoroutineState(); {
		case state == "IO wait":
			return
		case strings.HasPrefix(state, "syscall"):
			t.Fatalf("the idle poller's goroutine waits in a system call (state %q), holding a P", state)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the poller's goroutine never parked (state %q)", pollerGoroutineState())
		}
		time.Sleep(time.Millisecond)
	}
}

// The poller kicks a watched socket once it is readable, and again after
// each re-arm; close ends its goroutine (close waits for that).
func TestPollerKicksAndCloses(t *testing.T) {
	p, err := newPoller()
	if err != nil {
		t.Fatal(err)
	}
	a, b := tcpPair(t)
	rc, err := a.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	fd := -1
	rc.Control(func(f uintptr) { fd = int(f) })
	kicked := make(chan struct{}, 4)
	if err := p.watch(rc, fd, func() { kicked <- struct{}{} }); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	for i := 0; i < 3; i++ {
		if _, err := b.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		select {
		case <-kicked:
		case <-time.After(30 * time.Second):
			t.Fatalf("round %d: no kick for a readable socket", i)
		}
		if _, err := a.Read(buf); err != nil {
			t.Fatal(err)
		}
		if err := p.rearm(fd); err != nil {
			t.Fatal(err)
		}
	}
	p.forget(fd)
	closed := make(chan struct{})
	go func() { p.close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(30 * time.Second):
		t.Fatal("close did not end the poller")
	}
}
