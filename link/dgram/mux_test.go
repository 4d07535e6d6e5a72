//go:build linux

package dgram

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/slipway-net/slipway/link"
)

func newMux(t *testing.T, o MuxOptions) (*Mux, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "s.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	if o.Name == "" {
		o.Name = "dgram:unix:" + path
	}
	m, err := NewMux(conn, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m, path
}

// client is a VM-side datagram socket bound to its own path, the way QEMU
// (-netdev dgram local.path) and vfkit set theirs up.
type client struct {
	fd   int
	path string
}

func newClient(t *testing.T, server string, connect bool) *client {
	t.Helper()
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	path := filepath.Join(t.TempDir(), "c.sock")
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		t.Fatal(err)
	}
	if connect {
		if err := unix.Connect(fd, &unix.SockaddrUnix{Name: server}); err != nil {
			t.Fatal(err)
		}
	}
	// Replies must not wait forever in a broken test.
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 10})
	return &client{fd: fd, path: path}
}

func (c *client) send(t *testing.T, server string, b []byte) {
	t.Helper()
	if err := unix.Sendto(c.fd, b, 0, &unix.SockaddrUnix{Name: server}); err != nil {
		t.Fatal(err)
	}
}

func (c *client) recv(t *testing.T) []byte {
	t.Helper()
	buf := make([]byte, link.MaxFrameLen+10)
	n, err := unix.Read(c.fd, buf)
	if err != nil {
		t.Fatalf("client %s: %v", c.path, err)
	}
	return buf[:n]
}

func accept(t *testing.T, m *Mux) *Peer {
	t.Helper()
	type res struct {
		p   *Peer
		err error
	}
	ch := make(chan res, 1)
	go func() {
		p, err := m.Accept()
		ch <- res{p, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatal(r.err)
		}
		return r.p
	case <-time.After(10 * time.Second):
		t.Fatal("no new peer")
		return nil
	}
}

// muxWithPeer starts a mux and one client that has sent a first frame, and
// returns the client's peer.
func muxWithPeer(t *testing.T, o MuxOptions, connect bool) (*Mux, string, *client, *Peer) {
	t.Helper()
	m, path := newMux(t, o)
	c := newClient(t, path, connect)
	c.send(t, path, frame(60, 1))
	return m, path, c, accept(t, m)
}

// Two senders are two peers: each peer's Read sees only its sender's
// frames, and each peer's Write reaches only its sender.
func TestMuxDemultiplexes(t *testing.T) {
	m, path := newMux(t, MuxOptions{Options: Options{TrustChecksums: true}})
	a, b := newClient(t, path, false), newClient(t, path, true)
	fa, fb := frame(100, 0xa), frame(65000, 0xb)
	a.send(t, path, fa)
	pa := accept(t, m)
	b.send(t, path, fb)
	pb := accept(t, m)
	if pa.Addr() != a.path || pb.Addr() != b.path {
		t.Fatalf("peers %q and %q, want %q and %q", pa.Addr(), pb.Addr(), a.path, b.path)
	}
	got, flags := readAll(t, pa, 1)
	if !bytes.Equal(got[0], fa) || flags[0] != link.FlagDataValid {
		t.Errorf("peer a read %d bytes flags %#x, want its 100-byte frame marked DATA_VALID", len(got[0]), flags[0])
	}
	got, _ = readAll(t, pb, 1)
	if !bytes.Equal(got[0], fb) {
		t.Errorf("peer b read %d bytes, want its 65000-byte frame", len(got[0]))
	}

	if _, err := pb.Write(link.Frames(withHeader(frame(300, 0xbb)))); err != nil {
		t.Fatal(err)
	}
	if _, err := pa.Write(link.Frames(withHeader(frame(200, 0xaa)))); err != nil {
		t.Fatal(err)
	}
	if r := a.recv(t); len(r) != 200 || r[20] != 0xaa {
		t.Errorf("client a got %d bytes, want its 200-byte reply", len(r))
	}
	if r := b.recv(t); len(r) != 300 || r[20] != 0xbb {
		t.Errorf("client b got %d bytes, want its 300-byte reply", len(r))
	}
	if n := len(m.Peers()); n != 2 {
		t.Errorf("%d peers, want 2", n)
	}
}

// "VFKT" is consumed only as a peer's first datagram and only when it is
// exactly those four bytes.
func TestMuxVfkitMagic(t *testing.T) {
	m, path := newMux(t, MuxOptions{})
	v := newClient(t, path, true)
	v.send(t, path, []byte("VFKT"))
	f := frame(60, 1)
	v.send(t, path, f)
	v.send(t, path, []byte("VFKT"))
	p := accept(t, m)
	got, _ := readAll(t, p, 2)
	if !bytes.Equal(got[0], f) {
		t.Errorf("first frame after the magic: %d bytes, want the 60-byte frame", len(got[0]))
	}
	if string(got[1]) != "VFKT" {
		t.Errorf("a later VFKT is a (runt) frame for the switch to count, got %q", got[1])
	}

	// A first datagram that only starts with VFKT is a frame.
	k := newClient(t, path, true)
	notMagic := []byte("VFKTX")
	k.send(t, path, notMagic)
	p2 := accept(t, m)
	got, _ = readAll(t, p2, 1)
	if !bytes.Equal(got[0], notMagic) {
		t.Errorf("got %q, want %q delivered", got[0], notMagic)
	}
}

// Garbage from one peer (oversized, empty, unnamed senders) is counted
// and does not disturb another.
func TestMuxBadDatagrams(t *testing.T) {
	m, path := newMux(t, MuxOptions{})
	good, bad := newClient(t, path, false), newClient(t, path, false)
	bad.send(t, path, make([]byte, link.MaxFrameLen+1))
	pBad := accept(t, m)
	bad.send(t, path, nil)
	// An unbound socket: the mux cannot answer it, so it is not a peer.
	anon, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(anon)
	if err := unix.Sendto(anon, frame(60, 1), 0, &unix.SockaddrUnix{Name: path}); err != nil {
		t.Fatal(err)
	}
	f := frame(1514, 5)
	good.send(t, path, f)
	pGood := accept(t, m)
	if pGood.Addr() != good.path {
		t.Fatalf("second peer is %q, want the good client %q", pGood.Addr(), good.path)
	}
	got, _ := readAll(t, pGood, 1)
	if !bytes.Equal(got[0], f) {
		t.Error("good peer's frame damaged")
	}
	got, _ = readAll(t, pBad, 1)
	if len(got[0]) != 0 {
		t.Errorf("empty datagram arrived as %d bytes, want a 0-byte runt", len(got[0]))
	}
	if c := pBad.Counters().RxOversized.Load(); c != 1 {
		t.Errorf("RxOversized = %d, want 1", c)
	}
	if c := m.Stats().Unaddressable.Load(); c != 1 {
		t.Errorf("Unaddressable = %d, want 1", c)
	}
}

// A peer whose reader falls behind loses frames beyond its queue, counted.
func TestMuxOverrun(t *testing.T) {
	m, path := newMux(t, MuxOptions{})
	c := newClient(t, path, true)
	const sent = 100
	for i := 0; i < sent; i++ {
		c.send(t, path, frame(100, byte(i)))
	}
	p := accept(t, m)
	// The reader queues peerQueue frames and drops the rest; wait until
	// it has seen all of them.
	deadline := time.Now().Add(10 * time.Second)
	for p.Counters().RxOverrun.Load() < sent-peerQueue && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got := p.Counters().RxOverrun.Load(); got != sent-peerQueue {
		t.Fatalf("RxOverrun = %d, want %d", got, sent-peerQueue)
	}
	got, _ := readAll(t, p, peerQueue)
	for i, f := range got {
		if f[20] != byte(i) {
			t.Fatalf("frame %d has fill %d: the queue lost its order", i, f[20])
		}
	}
}

func TestMuxMaxPeers(t *testing.T) {
	m, path := newMux(t, MuxOptions{MaxPeers: 1})
	a, b := newClient(t, path, false), newClient(t, path, false)
	a.send(t, path, frame(60, 1))
	accept(t, m)
	b.send(t, path, frame(60, 2))
	deadline := time.Now().Add(10 * time.Second)
	for m.Stats().TooManyPeers.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if m.Stats().TooManyPeers.Load() != 1 || len(m.Peers()) != 1 {
		t.Fatalf("TooManyPeers = %d with %d peers, want 1 and 1", m.Stats().TooManyPeers.Load(), len(m.Peers()))
	}
}

// A silent peer is forgotten; when it speaks again it is a new peer.
func TestMuxIdlePeerForgotten(t *testing.T) {
	m, path, c, p := muxWithPeer(t, MuxOptions{IdleTimeout: 200 * time.Millisecond}, false)
	readAll(t, p, 1)
	bufs, sizes := link.NewBuffers(p.BatchSize())
	if _, err := p.Read(bufs, sizes); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Read of an idle peer: %v, want net.ErrClosed", err)
	}
	if n := len(m.Peers()); n != 0 {
		t.Fatalf("%d peers after the only one went idle", n)
	}
	c.send(t, path, frame(60, 2))
	p2 := accept(t, m)
	if p2 == p || p2.Addr() != c.path {
		t.Fatal("the returning sender did not become a new peer")
	}
}

// A peer whose socket is gone is removed on the next send to it.
func TestMuxPeerGone(t *testing.T) {
	m, _, c, p := muxWithPeer(t, MuxOptions{}, false)
	unix.Close(c.fd)
	_, err := p.Write(link.Frames(withHeader(frame(60, 2))))
	if !errors.Is(err, unix.ECONNREFUSED) {
		t.Fatalf("Write to a closed peer: %v, want ECONNREFUSED", err)
	}
	bufs, sizes := link.NewBuffers(p.BatchSize())
	for {
		_, err := p.Read(bufs, sizes)
		if err != nil {
			break
		}
	}
	if n := len(m.Peers()); n != 0 {
		t.Fatalf("%d peers left, want 0", n)
	}
}

// Closing the mux ends Accept and every peer's Read.
func TestMuxClose(t *testing.T) {
	m, _, _, p := muxWithPeer(t, MuxOptions{}, false)
	readAll(t, p, 1)
	m.Close()
	if _, err := m.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Close: %v", err)
	}
	bufs, sizes := link.NewBuffers(p.BatchSize())
	if _, err := p.Read(bufs, sizes); !errors.Is(err, net.ErrClosed) {
		t.Errorf("peer Read after Close: %v", err)
	}
}

// Frames flow through a peer with no allocation per batch.
func TestMuxNoAllocs(t *testing.T) {
	_, _, c, p := muxWithPeer(t, MuxOptions{}, true)
	bufs, sizes := link.NewBuffers(p.BatchSize())
	readAll(t, p, 1)
	in := frame(1000, 2)
	out := link.Frames(withHeader(frame(1000, 3)))
	sink := make([]byte, 2000)
	// Fill every queue slot once so its buffer exists before counting.
	for i := 0; i < peerQueue; i++ {
		unix.Write(c.fd, in)
		readAll(t, p, 1)
	}
	allocs := testing.AllocsPerRun(200, func() {
		unix.Write(c.fd, in)
		if n, err := p.Read(bufs, sizes); err != nil || n == 0 {
			t.Fatalf("Read = %d, %v", n, err)
		}
		if _, err := p.Write(out); err != nil {
			t.Fatal(err)
		}
		unix.Read(c.fd, sink)
	})
	if allocs > 0 {
		t.Errorf("%v allocations per frame through a mux peer, want 0", allocs)
	}
}

func TestMuxWriteInPieces(t *testing.T) {
	_, _, c, p := muxWithPeer(t, MuxOptions{}, true)
	f := frame(1514, 7)
	if n, err := p.Write([]link.Frame{vecFrame(f, 14, 34, 54)}); n != 1 || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	if got := c.recv(t); !bytes.Equal(got, f) {
		t.Fatalf("client got %d bytes, want the frame whole", len(got))
	}
}

// A VM on an unconnected socket (QEMU's -netdev dgram) that stops
// reading for longer than a moment keeps what was queued for it: once it
// reads again every frame arrives, in order, none dropped. Dropping the
// queue left holes in TCP flights the stack then took minutes to recover.
func TestMuxPausedPeerKeepsItsQueue(t *testing.T) {
	_, _, c, p := muxWithPeer(t, MuxOptions{}, false)
	const frames = 200 // the kernel holds max_dgram_qlen (10); the rest queue
	for i := 0; i < frames; i++ {
		f := withHeader(frame(1500, byte(i)))
		binary.BigEndian.PutUint16(f[link.VnetHdrLen+20:], uint16(i))
		if _, err := p.Write(link.Frames(f)); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
	}
	time.Sleep(idleAfter + 500*time.Millisecond) // past the drain's fast back-off
	for i := 0; i < frames; i++ {
		b := c.recv(t)
		if len(b) != 1500 || binary.BigEndian.Uint16(b[20:]) != uint16(i) {
			t.Fatalf("frame %d: got %d bytes numbered %d", i, len(b), binary.BigEndian.Uint16(b[20:]))
		}
	}
	if n := p.Counters().TxStalled.Load(); n != 0 {
		t.Errorf("tx_stalled %d for a peer that read again", n)
	}
}

// Frames queued for a peer that is forgotten (Close) are dropped and
// counted: the drain does not wait for a VM that is no longer served.
func TestMuxClosedPeerDropsItsQueue(t *testing.T) {
	_, _, _, p := muxWithPeer(t, MuxOptions{}, false)
	for i := 0; i < 100; i++ {
		p.Write(link.Frames(withHeader(frame(1500, byte(i)))))
	}
	p.Close()
	deadline := time.Now().Add(10 * time.Second)
	for p.Counters().TxStalled.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if p.Counters().TxStalled.Load() == 0 {
		t.Error("the queue of a closed peer was never dropped")
	}
}
