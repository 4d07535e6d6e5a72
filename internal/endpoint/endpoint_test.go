package endpoint

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/slipway-net/slipway/link"
)

func TestParseFD(t *testing.T) {
	for in, want := range map[string]FDSpec{
		"3:stream":     {FD: 3, Kind: Stream},
		"0:dgram":      {FD: 0, Kind: Dgram},
		"10:seqpacket": {FD: 10, Kind: Seqpacket},
	} {
		got, err := ParseFD(in)
		if err != nil || got != want {
			t.Errorf("ParseFD(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "3", "stream:3", "-1:stream", "3:tcp", "x:dgram", "3:"} {
		if _, err := ParseFD(bad); err == nil {
			t.Errorf("ParseFD(%q) accepted", bad)
		}
	}
}

// AdoptFD refuses, with ErrBadFD, an fd the kind cannot use.
func TestAdoptFDChecks(t *testing.T) {
	pair := func(typ int) (int, int) {
		fds, err := unix.Socketpair(unix.AF_UNIX, typ|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Close(fds[0]); unix.Close(fds[1]) })
		return fds[0], fds[1]
	}
	dgram, _ := pair(unix.SOCK_DGRAM)
	unbound, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(unbound)
	ln, err := net.Listen("unix", filepath.Join(t.TempDir(), "l"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	lf, _ := ln.(*net.UnixListener).File()
	defer lf.Close()
	file, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	for _, tc := range []struct {
		name string
		spec FDSpec
	}{
		{"not open", FDSpec{FD: 999, Kind: Stream}},
		{"not a socket", FDSpec{FD: int(file.Fd()), Kind: Stream}},
		{"wrong type", FDSpec{FD: dgram, Kind: Stream}},
		{"listening", FDSpec{FD: int(lf.Fd()), Kind: Stream}},
		{"not connected", FDSpec{FD: unbound, Kind: Dgram}},
	} {
		if _, err := AdoptFD(tc.spec); !errors.Is(err, ErrBadFD) {
			t.Errorf("%s: AdoptFD = %v, want ErrBadFD", tc.name, err)
		}
	}
}

// An adopted fd is a working link of its kind.
func TestAdoptFD(t *testing.T) {
	for _, kind := range []Kind{Stream, Dgram, Seqpacket} {
		fds, err := unix.Socketpair(unix.AF_UNIX, socketTypes[kind]|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fds[1])
		l, err := AdoptFD(FDSpec{FD: fds[0], Kind: kind})
		if err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		defer l.Close()
		if _, err := unix.FcntlInt(uintptr(fds[0]), unix.F_GETFD, 0); err == nil {
			t.Errorf("%s: the inherited fd number is still open; the link works on its own copy", kind)
		}
		frame := make([]byte, link.VnetHdrLen+60)
		frame[link.VnetHdrLen+20] = 0x42
		if n, err := l.Write(link.Frames(frame)); n != 1 || err != nil {
			t.Fatalf("%s: Write = %d, %v", kind, n, err)
		}
		buf := make([]byte, 100)
		n, err := unix.Read(fds[1], buf)
		if err != nil {
			t.Fatal(err)
		}
		want := 60
		if kind == Stream {
			want += 4 // the length prefix
		}
		if n != want {
			t.Errorf("%s: peer read %d bytes, want %d", kind, n, want)
		}
	}
}

// Connect dials a VMM that listens, and dials again after the link ends.
func TestConnectRedials(t *testing.T) {
	path := filepath.Join(t.TempDir(), "qemu.sock")
	spec := Spec{Kind: Stream, Network: "unix", Address: path}
	d, err := Connect(spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	links := make(chan link.Link)
	go func() {
		for {
			l, err := d.Accept()
			if err != nil {
				close(links)
				return
			}
			links <- l
		}
	}()
	// The VMM starts after slipway: the dialer keeps trying.
	time.Sleep(300 * time.Millisecond)
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for round := 0; round < 2; round++ {
		c, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		var l link.Link
		select {
		case l = <-links:
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: no link", round)
		}
		// The VMM goes away; the switch closes the link when its
		// Read fails, which lets the dialer dial again.
		c.Close()
		bufs, sizes := link.NewBuffers(l.BatchSize())
		if _, err := l.Read(bufs, sizes); err == nil {
			t.Fatalf("round %d: Read after the VMM left succeeded", round)
		}
		l.Close()
	}
	d.Close()
	select {
	case _, ok := <-links:
		if ok {
			// A dial that raced Close may have connected; the
			// next Accept must still fail.
			if _, ok := <-links; ok {
				t.Fatal("Accept kept returning links after Close")
			}
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Accept did not return after Close")
	}
}

func TestConnectRefusesDgram(t *testing.T) {
	if _, err := Connect(Spec{Kind: Dgram, Network: "unix", Address: "/x"}, nil); !errors.Is(err, ErrCannotConnect) {
		t.Fatalf("Connect(dgram) = %v", err)
	}
}

// A datagram listener takes over a stale socket file, refuses a live one,
// and removes its own on Close.
func TestDgramListenerSocketFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vm.dgram")
	stale, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	stale.Close() // leaves the file behind, as a killed process would
	spec := Spec{Kind: Dgram, Network: "unix", Address: path}
	l, err := Listen(spec)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	if _, err := Listen(spec); !errors.Is(err, ErrSocketInUse) {
		t.Errorf("second Listen on a live socket: %v, want ErrSocketInUse", err)
	}
	l.Close()
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket file still there after Close: %v", err)
	}
}

// Every UML that connects to a seqpacket listener is a link.
func TestSeqpacketListener(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bess.sock")
	l, err := Listen(Spec{Kind: Seqpacket, Network: "unix", Address: path})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for i := 0; i < 2; i++ {
		c, err := net.Dial("unixpacket", path)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		lk, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		msg := make([]byte, 64)
		msg[30] = byte(i)
		c.Write(msg)
		bufs, sizes := link.NewBuffers(lk.BatchSize())
		n, err := lk.Read(bufs, sizes)
		if err != nil || n != 1 || sizes[0] != 64 || bufs[0][link.VnetHdrLen+30] != byte(i) {
			t.Fatalf("connection %d: Read = %d frames (sizes %v), %v", i, n, sizes[:n], err)
		}
		lk.Close()
	}
}

// Watch shows its link's own counters and says when the link closes.
func TestWatchSeesClose(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[1])
	l, err := AdoptFD(FDSpec{FD: fds[0], Kind: Seqpacket})
	if err != nil {
		t.Fatal(err)
	}
	w, done := Watch(l)
	if w.Counters() != l.Counters() {
		t.Error("watched link shows other counters than its link")
	}
	w.Close()
	select {
	case <-done:
	default:
		t.Error("done not closed by Close")
	}
}
