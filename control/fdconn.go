package control

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"

	"golang.org/x/sys/unix"
)

// File descriptors ride on the API connection as SCM_RIGHTS control
// messages (see "Passing a file descriptor" in docs/api.md). Every read of
// an API connection is a recvmsg; the descriptors that come with the bytes
// queue on the connection until a request that takes one (POST /v1/links)
// has read its body, and any a request did not take are closed when it
// ends. So a client attaches the descriptor to the sendmsg that carries
// the request (or any part of it), and sends no second request before the
// answer to the first.

const (
	// maxFDsPerMsg is how many descriptors one recvmsg accepts; more
	// truncate the control message (the kernel closes the rest) and the
	// request is refused.
	maxFDsPerMsg = 4
	// maxQueuedFDs bounds descriptors held for one connection.
	maxQueuedFDs = 4
)

var (
	errFDOverflow = errors.New("too many file descriptors attached")
	// errBadControl is a control message that is not SCM_RIGHTS or is
	// malformed.
	errBadControl = errors.New("malformed control message")
)

// parseRights returns the descriptors of the SCM_RIGHTS messages in oob, a
// recvmsg control buffer whose flags were flags. Other control messages
// (credentials) are ignored. An error comes with whatever descriptors were
// parsed, which the caller must close.
func parseRights(oob []byte, flags int) ([]int, error) {
	var fds []int
	var err error
	if flags&unix.MSG_CTRUNC != 0 {
		err = errFDOverflow
	}
	if len(oob) == 0 {
		return nil, err
	}
	msgs, perr := unix.ParseSocketControlMessage(oob)
	if perr != nil {
		return nil, fmt.Errorf("%w: %v", errBadControl, perr)
	}
	for _, m := range msgs {
		if m.Header.Level != unix.SOL_SOCKET || m.Header.Type != unix.SCM_RIGHTS {
			continue
		}
		// unix.ParseUnixRights indexes past a length that is not a
		// multiple of 4; the kernel never writes one, but check.
		if len(m.Data)%4 != 0 {
			return fds, fmt.Errorf("%w: SCM_RIGHTS of %d bytes", errBadControl, len(m.Data))
		}
		for i := 0; i+4 <= len(m.Data); i += 4 {
			fds = append(fds, int(int32(binary.NativeEndian.Uint32(m.Data[i:]))))
		}
	}
	return fds, err
}

// fdConn is an API connection read with recvmsg, keeping the descriptors
// that arrive. Its queue is shared between the connection's reader (the
// HTTP server's, or a background read) and the handler of its request.
type fdConn struct {
	*net.UnixConn
	oob []byte

	mu       sync.Mutex
	fds      []int
	overflow error // set when descriptors had to be dropped
}

func newFDConn(c *net.UnixConn) *fdConn {
	return &fdConn{UnixConn: c, oob: make([]byte, unix.CmsgSpace(maxFDsPerMsg*4))}
}

func (c *fdConn) Read(b []byte) (int, error) {
	n, oobn, flags, _, err := c.ReadMsgUnix(b, c.oob)
	if oobn > 0 || flags&unix.MSG_CTRUNC != 0 {
		fds, perr := parseRights(c.oob[:oobn], flags)
		c.keep(fds, perr)
	}
	if n < 0 { // a failed recvmsg's -1, which a Reader must not return
		n = 0
	}
	return n, err
}

// keep queues fds, closing those beyond the bound.
func (c *fdConn) keep(fds []int, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil && c.overflow == nil {
		c.overflow = err
	}
	for _, fd := range fds {
		if len(c.fds) >= maxQueuedFDs {
			unix.Close(fd)
			if c.overflow == nil {
				c.overflow = errFDOverflow
			}
			continue
		}
		c.fds = append(c.fds, fd)
	}
}

// take hands over the descriptors received so far, and what went wrong
// with them; the queue is empty after.
func (c *fdConn) take() ([]int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fds, err := c.fds, c.overflow
	c.fds, c.overflow = nil, nil
	return fds, err
}

// discard closes the descriptors no request took.
func (c *fdConn) discard() {
	fds, _ := c.take()
	closeFDs(fds)
}

func (c *fdConn) Close() error {
	c.discard()
	return c.UnixConn.Close()
}

func closeFDs(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

type fdConnKey struct{}

// connFDs is the descriptor queue of the connection r came on, nil for a
// connection that is not a unix socket.
func connFDs(ctx context.Context) *fdConn {
	c, _ := ctx.Value(fdConnKey{}).(*fdConn)
	return c
}
