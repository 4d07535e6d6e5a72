package flow

import (
	"errors"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/slipway-net/slipway/internal/sysio"
)

// directWriteMin is the size from which a chunk is written to the host
// socket straight from the stack's buffer instead of being coalesced.
const directWriteMin = 16 << 10

var pendPool = sync.Pool{New: func() any { b := make([]byte, 0, pendBufSize); return &b }}

// sockPayload is a tcpip.Payloader reading from a host socket.
type sockPayload struct {
	rc    syscall.RawConn
	avail int
	err   error

	// One read call's argument and results, and the function making it,
	// bound once (a closure per call would allocate per chunk).
	buf    []byte
	n      int
	e      error
	readFn func(fd uintptr) bool
}

func newSockPayload(rc syscall.RawConn) *sockPayload {
	s := &sockPayload{rc: rc}
	s.readFn = func(fd uintptr) bool {
		for {
			s.n, s.e = unix.Read(int(fd), s.buf)
			if s.e != unix.EINTR {
				return true
			}
		}
	}
	return s
}

func (s *sockPayload) Len() int { return s.avail }

func (s *sockPayload) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	s.buf = b
	err := s.rc.Read(s.readFn)
	n, e := s.n, s.e
	s.buf, s.e = nil, nil
	if err != nil {
		s.err = err
		return 0, err
	}
	switch {
	case e == unix.EAGAIN:
		return 0, errNoData
	case e != nil:
		s.err = e
		return 0, e
	case n == 0:
		return 0, errNoData
	}
	return n, nil
}

// errNoData ends one read pass early; it is not a failure of the flow.
var errNoData = errors.New("no data queued")

// hostWriter writes what the stack hands it to the host socket: large
// chunks directly if the socket takes them without blocking, the rest
// coalesced in a pooled buffer that flush writes out (blocking) after the
// stack's read returns, so the stack is never held while the host is slow.
// Small chunks coalesced before a large one go out with it in one writev:
// each segment's payload starts with the few bytes that share a view with
// its headers, and coalescing those must not drag the large rest of the
// segment through the copy too.
type hostWriter struct {
	rc   syscall.RawConn
	host HostConn
	pend *[]byte

	// One write call's argument and results, and the function making it,
	// bound once (a closure per call would allocate per chunk).
	vec     [2][]byte
	iov     [][]byte
	n       int
	e       error
	writeFn func(fd uintptr) bool
}

func newHostWriter(rc syscall.RawConn, host HostConn) *hostWriter {
	w := &hostWriter{rc: rc, host: host}
	w.writeFn = func(fd uintptr) bool {
		w.n, w.e = sysio.Writev(int(fd), w.iov)
		return true
	}
	return w
}

func (w *hostWriter) Write(b []byte) (int, error) {
	total := len(b)
	if len(b) >= directWriteMin {
		w.vec[0], w.vec[1] = nil, b
		w.iov = w.vec[1:]
		held := 0
		if w.pend != nil && len(*w.pend) > 0 {
			held = len(*w.pend)
			w.vec[0] = *w.pend
			w.iov = w.vec[:]
		}
		err := w.rc.Write(w.writeFn)
		n, e := w.n, w.e
		w.vec, w.iov, w.e = [2][]byte{}, nil, nil
		if err != nil {
			return 0, err
		}
		if e != nil && e != unix.EAGAIN {
			return 0, e
		}
		n = max(n, 0)
		if held > 0 {
			if n < held {
				// The coalesced bytes went out in part: keep the rest
				// first in line, and b after it.
				*w.pend = (*w.pend)[:copy(*w.pend, (*w.pend)[n:])]
				n = 0
			} else {
				*w.pend = (*w.pend)[:0]
				n -= held
			}
		}
		b = b[n:]
		if len(b) == 0 {
			return total, nil
		}
	}
	if w.pend == nil {
		w.pend = pendPool.Get().(*[]byte)
	}
	*w.pend = append(*w.pend, b...)
	return total, nil
}

func (w *hostWriter) flush() error {
	if w.pend == nil {
		return nil
	}
	var err error
	if len(*w.pend) > 0 {
		_, err = w.host.Write(*w.pend)
	}
	*w.pend = (*w.pend)[:0]
	pendPool.Put(w.pend)
	w.pend = nil
	return err
}
