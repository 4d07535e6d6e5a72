package nsrun

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// A socket's network namespace is the one its creator was in when it was
// made, for good: connect, bind and send then act there whoever holds it.
// So a process outside a namespace can use sockets inside it if something
// inside makes them. slipway cannot enter a user namespace itself (a Go
// process is multi-threaded), so the attach helper, which nsenter(1) put
// there, stays on as a socket factory when asked: each request over the
// control socket gets one new socket back (SCM_RIGHTS), already
// connecting to the loopback address asked for (the helper connects, so
// that a sandboxed engine whose filter has no connect can use it too), and
// the helper exits when the control socket closes.
//
// The protocol, one SOCK_SEQPACKET message each way:
//
//	request  seq (4 bytes, big-endian), type ('t' TCP, 'u' UDP), family (4, 6),
//	         port (2 bytes, big-endian), address (4 or 16 bytes, loopback only)
//	reply    seq, then nothing and one fd, or an error's text and no fd
//
// The sequence number lets a request that timed out leave its reply
// behind: the next request skips (and closes) whatever does not answer it.

// socketTimeout bounds one request to the factory, and a connect made
// with its socket, when the caller's context has no earlier deadline.
const socketTimeout = 5 * time.Second

// SocketFactory opens sockets inside an attached namespace
// (AttachSpec.Sockets). It is safe for concurrent use; requests are
// served one at a time.
type SocketFactory struct {
	conn *net.UnixConn
	cmd  *exec.Cmd
	// cmd is the helper, nil for a factory made from a descriptor
	// (SocketFactoryFile): its helper is the launcher's to reap.
	// turn holds the one request in flight.
	turn chan struct{}
	seq  uint32 // guarded by turn

	closeOnce sync.Once
}

func newSocketFactory(ctl *os.File, cmd *exec.Cmd) (*SocketFactory, error) {
	c, err := net.FileConn(ctl) // a duplicate, non-blocking, in Go's poller
	ctl.Close()
	if err != nil {
		return nil, fmt.Errorf("socket factory: %w", err)
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("socket factory: control socket is a %T", c)
	}
	return &SocketFactory{conn: uc, cmd: cmd, turn: make(chan struct{}, 1)}, nil
}

// SocketFactoryFile makes a factory of a descriptor of another's control
// socket (File): a sandboxed engine's, whose launcher keeps the helper.
func SocketFactoryFile(ctl *os.File) (*SocketFactory, error) {
	return newSocketFactory(ctl, nil)
}

// File is a descriptor of the control socket, for another process to ask
// the helper through (SocketFactoryFile). The helper exits once every
// descriptor of it is closed.
func (f *SocketFactory) File() (*os.File, error) {
	return f.conn.File()
}

// Close ends the factory: the helper sees its control socket close and
// exits (once no other process holds a descriptor of it), and is reaped
// (killed if it has not gone within a second).
func (f *SocketFactory) Close() error {
	f.closeOnce.Do(func() {
		f.conn.Close()
		if f.cmd == nil {
			return
		}
		done := make(chan struct{})
		go func() { f.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(time.Second):
			f.cmd.Process.Kill()
			<-done
		}
	})
	return nil
}

// Dial connects a socket made inside the namespace to addr there
// ("tcp" or "udp"), a loopback address, within ctx and at most
// socketTimeout.
func (f *SocketFactory) Dial(ctx context.Context, network string, addr netip.AddrPort) (net.Conn, error) {
	typ := unix.SOCK_STREAM
	switch network {
	case "tcp":
	case "udp":
		typ = unix.SOCK_DGRAM
	default:
		return nil, fmt.Errorf("dial in the namespace: unknown network %q", network)
	}
	addr = netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
	if !addr.Addr().IsLoopback() {
		return nil, fmt.Errorf("dial %s in the namespace: only its loopback addresses", addr)
	}
	ctx, cancel := context.WithTimeout(ctx, socketTimeout)
	defer cancel()
	fd, err := f.socket(ctx, typ, addr)
	if err != nil {
		return nil, err
	}
	// Non-blocking (the helper made it so), hence served by Go's poller,
	// whose deadlines work.
	file := os.NewFile(uintptr(fd), network+"-in-namespace")
	defer file.Close() // FileConn keeps a duplicate
	if err := awaitConnect(ctx, file); err != nil {
		return nil, fmt.Errorf("connect to %s in the namespace: %w", addr, err)
	}
	return net.FileConn(file)
}

// awaitConnect waits for a connect in progress on file to end.
func awaitConnect(ctx context.Context, file *os.File) error {
	if d, ok := ctx.Deadline(); ok {
		file.SetWriteDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { file.SetWriteDeadline(time.Now()) })
	defer stop()
	rc, err := file.SyscallConn()
	if err != nil {
		return err
	}
	var cerr error
	err = rc.Write(func(fd uintptr) bool {
		// Called at once, then each time the socket turns writable.
		e, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR)
		switch {
		case err != nil:
			cerr = err
		case e != 0:
			cerr = syscall.Errno(e)
		default:
			_, err := unix.Getpeername(int(fd))
			return err == nil // not connected yet: wait
		}
		return true
	})
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	}
	return cerr
}

// socket asks the helper for a socket of typ (unix.SOCK_STREAM or
// SOCK_DGRAM) connecting to addr and returns its fd.
func (f *SocketFactory) socket(ctx context.Context, typ int, addr netip.AddrPort) (int, error) {
	select {
	case f.turn <- struct{}{}:
	case <-ctx.Done():
		return -1, fmt.Errorf("socket in the namespace: %w", ctx.Err())
	}
	defer func() { <-f.turn }()
	deadline, _ := ctx.Deadline() // Dial always sets one
	f.conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { f.conn.SetDeadline(time.Now()) })
	defer stop()
	f.seq++
	req := socketRequest(f.seq, typ, addr)
	if _, err := f.conn.Write(req); err != nil {
		return -1, fmt.Errorf("ask the namespace for a socket: %w", err)
	}
	buf := make([]byte, 512)
	oob := make([]byte, unix.CmsgSpace(4))
	for {
		n, oobn, _, _, err := f.conn.ReadMsgUnix(buf, oob)
		if err != nil {
			return -1, fmt.Errorf("socket from the namespace: %w", err)
		}
		if n == 0 {
			return -1, errors.New("socket from the namespace: the helper has exited")
		}
		fds := unixRights(oob[:oobn])
		if n < 4 || binary.BigEndian.Uint32(buf) != f.seq {
			closeFDs(fds) // the answer to a request that gave up waiting
			continue
		}
		if len(fds) != 1 {
			closeFDs(fds)
			return -1, fmt.Errorf("socket from the namespace: %s", buf[4:n])
		}
		return fds[0], nil
	}
}

// socketRequest is the request for a socket of typ connecting to addr.
func socketRequest(seq uint32, typ int, addr netip.AddrPort) []byte {
	req := binary.BigEndian.AppendUint32(nil, seq)
	t := byte('t')
	if typ == unix.SOCK_DGRAM {
		t = 'u'
	}
	fam := byte(4)
	if addr.Addr().Is6() {
		fam = 6
	}
	req = append(req, t, fam)
	req = binary.BigEndian.AppendUint16(req, addr.Port())
	return append(req, addr.Addr().AsSlice()...)
}

// unixRights are the fds an SCM_RIGHTS message carries (none if it is
// malformed).
func unixRights(oob []byte) []int {
	scms, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	var fds []int
	for i := range scms {
		if got, err := unix.ParseUnixRights(&scms[i]); err == nil {
			fds = append(fds, got...)
		}
	}
	return fds
}

func closeFDs(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// serveSockets is the helper's life as a socket factory: it answers
// requests on ctl until ctl closes, then exits.
func serveSockets(ctl *os.File) {
	fd := int(ctl.Fd())
	req := make([]byte, 64)
	for {
		n, err := unix.Read(fd, req)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || n == 0 {
			os.Exit(0) // slipway closed its end, or went away
		}
		reply := make([]byte, 4, 128)
		copy(reply, req[:min(n, 4)])
		s, err := makeSocket(req[:n])
		if err != nil {
			reply = append(reply, err.Error()...)
			if err := unix.Sendmsg(fd, reply, nil, nil, 0); err != nil {
				os.Exit(0)
			}
			continue
		}
		err = unix.Sendmsg(fd, reply, unix.UnixRights(s), nil, 0)
		unix.Close(s)
		if err != nil {
			os.Exit(0)
		}
	}
}

// makeSocket opens the socket a request asks for, non-blocking, and
// starts its connect.
func makeSocket(req []byte) (int, error) {
	if len(req) != 12 && len(req) != 24 {
		return -1, fmt.Errorf("bad request of %d bytes", len(req))
	}
	typ := unix.SOCK_STREAM
	switch req[4] {
	case 't':
	case 'u':
		typ = unix.SOCK_DGRAM
	default:
		return -1, fmt.Errorf("bad socket type %q", req[4])
	}
	port := int(binary.BigEndian.Uint16(req[6:8]))
	a, _ := netip.AddrFromSlice(req[8:])
	var family int
	var sa unix.Sockaddr
	switch {
	case req[5] == 4 && a.Is4():
		family, sa = unix.AF_INET, &unix.SockaddrInet4{Port: port, Addr: a.As4()}
	case req[5] == 6 && a.Is6():
		family, sa = unix.AF_INET6, &unix.SockaddrInet6{Port: port, Addr: a.As16()}
	default:
		return -1, fmt.Errorf("bad family %d for %d address bytes", req[5], len(req)-8)
	}
	// The factory is for the namespace's loopback (--host-lo-to-ns-lo):
	// whoever holds the control socket reaches nothing else through it.
	if !a.Unmap().IsLoopback() || port == 0 {
		return -1, fmt.Errorf("%s: not a loopback address and port", netip.AddrPortFrom(a, uint16(port)))
	}
	s, err := unix.Socket(family, typ|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("socket: %w", err)
	}
	if family == unix.AF_INET6 {
		unix.SetsockoptInt(s, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1)
	}
	if err := unix.Connect(s, sa); err != nil && !errors.Is(err, unix.EINPROGRESS) {
		unix.Close(s)
		return -1, fmt.Errorf("connect: %w", err)
	}
	return s, nil
}
