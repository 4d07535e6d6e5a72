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

// dgramBatch is how many datagrams one read of the socket may take
// (recvmmsg(2) on Linux; one elsewhere). A busy flow's drain then makes
// one system call per batch instead of one per datagram. The buffers are
// held while the socket has datagrams and given back once it is empty.
const dgramBatch = 8

// DatagramReader reads datagrams from a host UDP socket, a batch at a
// time, into borrowed buffers, and hands them out one at a time; the one
// in hand can be written into a stack endpoint. Its read function is bound
// once and senders' addresses are decoded without a Sockaddr, so a
// datagram costs no allocation. It belongs to one goroutine.
type DatagramReader struct {
	rc     syscall.RawConn
	from   bool // recvfrom: keep each sender's address
	readFn func(fd uintptr) bool
	nowait bool // TryRead's: an empty socket ends the call
	empty  bool // what a nowait read found

	// The batch the last read took: have datagrams, the next one to
	// hand out at next, the one in hand at cur (-1: none).
	bufs  [dgramBatch]*[]byte
	lens  [dgramBatch]int
	addrs [dgramBatch]netip.AddrPort
	have  int
	next  int
	cur   int
	batch batchState // the system call's own state (recvmmsg's headers)
	err   error
	rd    bytes.Reader
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
	r.cur = -1
}

// buf returns slot i's buffer, borrowing one if it has none.
func (r *DatagramReader) buf(i int) []byte {
	if r.bufs[i] == nil {
		r.bufs[i] = datagrams.Get().(*[]byte)
	}
	return *r.bufs[i]
}

// readOnce is the RawConn read function: false waits for readiness.
func (r *DatagramReader) readOnce(fd uintptr) bool {
	var n int
	var e error
	for {
		n, e = r.readBatch(int(fd))
		if e != unix.EINTR {
			break
		}
	}
	if e == unix.EAGAIN {
		// Nothing yet: give the buffers back while waiting (or, for
		// TryRead, report it).
		r.Release()
		r.empty = r.nowait
		return r.nowait
	}
	r.have, r.next, r.err = n, 0, e
	return true
}

// fill reads a new batch into the same buffers when the last one is used
// up; the caller then reports err, r.err or r.empty if set.
func (r *DatagramReader) fill() error {
	if r.next < r.have {
		return nil
	}
	r.have, r.next, r.cur, r.err, r.empty = 0, 0, -1, nil, false
	err := r.rc.Read(r.readFn)
	if err != nil || r.err != nil || r.empty {
		r.Release()
	}
	return err
}

// take hands out the batch's next datagram.
func (r *DatagramReader) take() ([]byte, netip.AddrPort) {
	i := r.next
	r.next++
	r.cur = i
	return (*r.bufs[i])[:r.lens[i]], r.addrs[i]
}

// Read waits for the next datagram and returns it (valid until the next
// Read or Release) and, for a reader with from, its sender. An error the
// socket reports for one datagram (see IsTransient) leaves the reader
// usable; any other ends it.
func (r *DatagramReader) Read() ([]byte, netip.AddrPort, error) {
	if err := r.fill(); err != nil {
		return nil, netip.AddrPort{}, err
	}
	if r.err != nil {
		return nil, netip.AddrPort{}, r.err
	}
	b, from := r.take()
	return b, from, nil
}

// TryRead is Read without waiting: ok is false when the socket holds
// nothing.
func (r *DatagramReader) TryRead() (b []byte, ok bool, err error) {
	r.nowait = true
	err = r.fill()
	r.nowait = false
	switch {
	case err != nil:
		return nil, false, err
	case r.err != nil:
		return nil, false, r.err
	case r.empty:
		return nil, false, nil
	}
	b, _ = r.take()
	return b, true, nil
}

// WriteTo writes the datagram in hand into ep as one datagram.
func (r *DatagramReader) WriteTo(ep tcpip.Endpoint) tcpip.Error {
	if r.cur < 0 {
		return nil
	}
	r.rd.Reset((*r.bufs[r.cur])[:r.lens[r.cur]])
	_, terr := ep.Write(&r.rd, tcpip.WriteOptions{})
	r.rd.Reset(nil)
	return terr
}

// Release gives back the buffers, dropping what of the batch was not
// handed out yet (the flow is ending).
func (r *DatagramReader) Release() {
	for i, b := range r.bufs {
		if b != nil {
			datagrams.Put(b)
			r.bufs[i] = nil
		}
	}
	r.have, r.next, r.cur = 0, 0, -1
}
