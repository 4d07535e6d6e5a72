// Package guestpeer plays a VMM and its guest in transport tests where the
// real VMM cannot run here (vfkit and krunkit are macOS programs, bhyve is
// FreeBSD's, UML needs its own kernel): it speaks the VMM's frame protocol
// on a real socket (a Wire), takes a DHCP lease with a small client of its
// own, and then runs a real TCP/IP stack (gVisor's) on the leased address,
// so a test can download a file through slipway as a guest would.
package guestpeer

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// MaxFrame is the largest frame a Wire carries.
const MaxFrame = 14 + 65535

// Wire carries Ethernet frames between the guest and slipway in one VMM's
// framing.
type Wire interface {
	Send(frame []byte) error
	// Recv returns the next frame in buf.
	Recv(buf []byte) (int, error)
	Close() error
}

// Datagram is one frame per datagram on a unix datagram socket bound to
// its own path, as QEMU -netdev dgram, vfkit and krunkit set theirs up.
type Datagram struct {
	Conn *net.UnixConn
	Path string        // where the socket is bound
	to   *net.UnixAddr // nil when connected
}

// DialDatagram binds a datagram socket next to the test's files and aims
// it at server: connected (vfkit, krunkit) or with sendto to the server's
// path for every frame (QEMU -netdev dgram). With magic it first sends
// "VFKT", as vfkit does.
func DialDatagram(t testing.TB, server string, connect, magic bool) *Datagram {
	t.Helper()
	path := filepath.Join(t.TempDir(), "vm.dgram")
	laddr := &net.UnixAddr{Name: path, Net: "unixgram"}
	raddr := &net.UnixAddr{Name: server, Net: "unixgram"}
	var c *net.UnixConn
	var err error
	if connect {
		c, err = net.DialUnix("unixgram", laddr, raddr)
	} else {
		c, err = net.ListenUnixgram("unixgram", laddr)
	}
	if err != nil {
		t.Fatal(err)
	}
	// The peers' own buffer sizes; large frames need the room.
	c.SetWriteBuffer(1 << 20)
	c.SetReadBuffer(4 << 20)
	d := &Datagram{Conn: c, Path: path}
	if !connect {
		d.to = raddr
	}
	t.Cleanup(func() { d.Close() })
	if magic {
		if err := d.Send([]byte("VFKT")); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

func (d *Datagram) Send(frame []byte) error {
	if d.to != nil {
		_, err := d.Conn.WriteToUnix(frame, d.to)
		return err
	}
	_, err := d.Conn.Write(frame)
	return err
}

func (d *Datagram) Recv(buf []byte) (int, error) { return d.Conn.Read(buf) }

func (d *Datagram) Close() error {
	err := d.Conn.Close()
	os.Remove(d.Path)
	return err
}

// Packet is one frame per message on a connected socket (SOCK_SEQPACKET
// for UML bess and bhyve, or a datagram socketpair).
type Packet struct {
	Conn net.Conn
}

func (p *Packet) Send(frame []byte) error {
	_, err := p.Conn.Write(frame)
	return err
}

func (p *Packet) Recv(buf []byte) (int, error) {
	n, err := p.Conn.Read(buf)
	if err == nil && n == 0 {
		// A seqpacket read of nothing is the peer hanging up.
		return 0, io.EOF
	}
	return n, err
}

func (p *Packet) Close() error { return p.Conn.Close() }

// Stream frames each Ethernet frame with its length: a big-endian u32
// (QEMU -netdev stream and socket, socket_vmnet clients) or, with LE16, a
// little-endian u16 (gvproxy's -listen-stdio and /connect, hyperkit's
// framing).
type Stream struct {
	r    *bufio.Reader
	w    io.Writer
	c    io.Closer
	le16 bool
	mu   sync.Mutex
	hdr  [4]byte
}

// NewStream frames over c with QEMU's u32 lengths.
func NewStream(c net.Conn) *Stream {
	return &Stream{r: bufio.NewReaderSize(c, 256<<10), w: c, c: c}
}

// NewLE16 frames over r and w with u16 lengths; Close closes c.
func NewLE16(r io.Reader, w io.Writer, c io.Closer) *Stream {
	return &Stream{r: bufio.NewReaderSize(r, 256<<10), w: w, c: c, le16: true}
}

func (s *Stream) Send(frame []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	hdr := s.hdr[:4]
	if s.le16 {
		hdr = s.hdr[:2]
		binary.LittleEndian.PutUint16(hdr, uint16(len(frame)))
	} else {
		binary.BigEndian.PutUint32(hdr, uint32(len(frame)))
	}
	_, err := (&net.Buffers{hdr, frame}).WriteTo(s.w)
	return err
}

func (s *Stream) Recv(buf []byte) (int, error) {
	var hdr [4]byte
	var n int
	if s.le16 {
		if _, err := io.ReadFull(s.r, hdr[:2]); err != nil {
			return 0, err
		}
		n = int(binary.LittleEndian.Uint16(hdr[:2]))
	} else {
		if _, err := io.ReadFull(s.r, hdr[:]); err != nil {
			return 0, err
		}
		n = int(binary.BigEndian.Uint32(hdr[:]))
	}
	if n > len(buf) {
		return 0, fmt.Errorf("stream frame of %d bytes", n)
	}
	_, err := io.ReadFull(s.r, buf[:n])
	return n, err
}

func (s *Stream) Close() error { return s.c.Close() }

// Socketpair returns two connected unix sockets of type typ (for example
// unix.SOCK_SEQPACKET): one end as an *os.File to hand a child process,
// the other as a net.Conn for the test.
func Socketpair(t testing.TB, typ int) (*os.File, net.Conn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	child := os.NewFile(uintptr(fds[0]), "child-end")
	ours := os.NewFile(uintptr(fds[1]), "test-end")
	c, err := net.FileConn(ours)
	ours.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { child.Close(); c.Close() })
	return child, c
}

// errClosed reports whether err is the end of a closed wire.
func errClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, unix.ECONNRESET) || errors.Is(err, unix.ECONNREFUSED)
}
