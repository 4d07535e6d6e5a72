package flow

import (
	"bytes"
	"net/netip"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
)

// datagrams are borrowed only while a datagram is in hand, so an idle
// flow holds no buffer.
var datagrams = sync.Pool{New: func() any { b := make([]byte, MaxDatagram); return &b }}

// DatagramReader reads datagrams from a host UDP socket, one at a time,
// into a borrowed buffer, and writes the one in hand into a stack
// endpoint. Its read function is bound once and the sender's address is
// decoded without a Sockaddr, so a datagram costs no allocation. It belongs
// to one goroutine.
type DatagramReader struct {
	rc     syscall.RawConn
	from   bool // recvfrom: keep each sender's address
	readFn func(fd uintptr) bool
	nowait bool // TryRead's: an empty socket ends the call
	empty  bool // what a nowait read found

	bp   *[]byte
	n    int
	addr netip.AddrPort
	err  error
	rd   bytes.Reader
}

// NewDatagramReader reads rc; with from, Read reports each sender (an
// unconnected socket serving many clients).
func NewDatagramReader(rc syscall.RawConn, from bool) *DatagramReader {
	r := &DatagramReader{}
	r.init(rc, from)
	return r
}

func (r *DatagramReader) init(rc syscall.RawConn, from bool) {
	r.rc, r.from = rc, from
	r.readFn = r.readOnce
}

// readOnce is the RawConn read function: false waits for readiness.
func (r *DatagramReader) readOnce(fd uintptr) bool {
	if r.bp == nil {
		r.bp = datagrams.Get().(*[]byte)
	}
	var e error
	for {
		if r.from {
			r.n, r.addr, e = recvFrom(int(fd), *r.bp)
		} else {
			r.n, e = unix.Read(int(fd), *r.bp)
		}
		if e != unix.EINTR {
			break
		}
	}
	if e == unix.EAGAIN {
		// Nothing yet: give the buffer back while waiting (or, for
		// TryRead, report it).
		datagrams.Put(r.bp)
		r.bp = nil
		r.empty = true
		return r.nowait
	}
	r.err = e
	return true
}

// Read waits for the next datagram and returns it (valid until the next
// Read or Release) and, for a reader with from, its sender. An error the
// socket reports for one datagram (see IsTransient) leaves the reader
// usable; any other ends it.
func (r *DatagramReader) Read() ([]byte, netip.AddrPort, error) {
	r.Release()
	r.err = nil
	if err := r.rc.Read(r.readFn); err != nil {
		r.Release()
		return nil, netip.AddrPort{}, err
	}
	if r.err != nil {
		r.Release()
		return nil, netip.AddrPort{}, r.err
	}
	return (*r.bp)[:r.n], r.addr, nil
}

// TryRead is Read without waiting: ok is false when the socket holds
// nothing.
func (r *DatagramReader) TryRead() (b []byte, ok bool, err error) {
	r.Release()
	r.err, r.empty, r.nowait = nil, false, true
	err = r.rc.Read(r.readFn)
	r.nowait = false
	switch {
	case err != nil:
		r.Release()
		return nil, false, err
	case r.err != nil:
		r.Release()
		return nil, false, r.err
	case r.empty:
		return nil, false, nil
	}
	return (*r.bp)[:r.n], true, nil
}

// WriteTo writes the datagram in hand into ep as one datagram.
func (r *DatagramReader) WriteTo(ep tcpip.Endpoint) tcpip.Error {
	if r.bp == nil {
		return nil
	}
	r.rd.Reset((*r.bp)[:r.n])
	_, terr := ep.Write(&r.rd, tcpip.WriteOptions{})
	r.rd.Reset(nil)
	return terr
}

// Release gives back the datagram in hand, if any.
func (r *DatagramReader) Release() {
	if r.bp != nil {
		datagrams.Put(r.bp)
		r.bp = nil
	}
}
