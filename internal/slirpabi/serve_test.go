package slirpabi

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/slipway-net/slipway/config"
	"github.com/slipway-net/slipway/link"
	"github.com/slipway-net/slipway/network"
)

// seqpacketPair is a connected SOCK_SEQPACKET pair, as the shim makes.
func seqpacketPair(t *testing.T) (*net.UnixConn, *net.UnixConn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_SEQPACKET|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	var conns [2]*net.UnixConn
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "seqpacket")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c.(*net.UnixConn)
		t.Cleanup(func() { conns[i].Close() })
	}
	return conns[0], conns[1]
}

func readReply(t *testing.T, c *net.UnixConn) (int32, string) {
	t.Helper()
	buf := make([]byte, maxMsg)
	n, err := c.Read(buf)
	if err != nil || n < 5 || buf[0] != 'R' {
		t.Fatalf("reply %q, %v", buf[:n], err)
	}
	return int32(binary.NativeEndian.Uint32(buf[1:])), string(buf[5:n])
}

func hostfwdAdd(host, guest []byte) []byte {
	m := []byte{'h', 1, 0, 0, 0, 0, 0, 0, 0}
	m = binary.NativeEndian.AppendUint16(m, uint16(len(host)))
	m = append(m, host...)
	m = binary.NativeEndian.AppendUint16(m, uint16(len(guest)))
	return append(m, guest...)
}

// TestServeHostSockets: Serve confines the server (Confine) before it
// answers the settings, and passes what Confine reports on; then a host
// forward listens on the socket the shim bound and sent with its request
// (port 0: the one the kernel picked), and one sent without a socket is
// refused, since the confined server binds nothing itself.
func TestServeHostSockets(t *testing.T) {
	ctl, ctlShim := seqpacketPair(t)
	data, _ := seqpacketPair(t)
	frames, _ := seqpacketPair(t)
	var confined atomic.Bool
	base := config.Config{DNSUpstreams: []config.DNSServer{{AddrPort: netip.MustParseAddrPort("127.0.0.1:1")}}}
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctl, data, frames, ServeOptions{Base: base, Confine: func(config.Config) string {
			confined.Store(true)
			return "landlock: not here"
		}})
	}()
	ctlShim.Write([]byte("c" + qemuText))
	if r, note := readReply(t, ctlShim); r != 0 || note != "landlock: not here" || !confined.Load() {
		t.Fatalf("settings: %d %q (confined %v)", r, note, confined.Load())
	}

	l, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	f, err := l.File()
	l.Close()
	if err != nil {
		t.Fatal(err)
	}
	msg := hostfwdAdd(sockaddr4("127.0.0.1", 0), sockaddr4("0.0.0.0", 22))
	if _, _, err := ctlShim.WriteMsgUnix(msg, syscall.UnixRights(int(f.Fd())), nil); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if r, _ := readReply(t, ctlShim); r != 0 {
		t.Fatalf("hostfwd with the shim's socket: %d", r)
	}
	ctlShim.Write([]byte{'i'})
	buf := make([]byte, maxMsg)
	n, _ := ctlShim.Read(buf)
	if !strings.Contains(string(buf[:n]), strconv.Itoa(port)) {
		t.Errorf("info usernet lacks port %d:\n%s", port, buf[:n])
	}
	if c, err := net.Dial("tcp4", "127.0.0.1:"+strconv.Itoa(port)); err != nil {
		t.Errorf("the forward's port: %v", err)
	} else {
		c.Close()
	}

	ctlShim.Write(hostfwdAdd(sockaddr4("127.0.0.1", uint16(port+1)), sockaddr4("0.0.0.0", 22)))
	if r, _ := readReply(t, ctlShim); r != -int32(syscall.EACCES) {
		t.Errorf("hostfwd without a socket: %d, want -EACCES", r)
	}
	ctlShim.Close()
	if err := <-done; err != nil {
		t.Errorf("Serve: %v", err)
	}
}

// TestServeFramesSocket: the host's frames come and go on the frames
// socket, one bare frame a message: an ARP request is answered there.
// A frame longer than the MTU allows is dropped: the request sent before
// the good one, from another MAC, gets no answer.
func TestServeFramesSocket(t *testing.T) {
	ctl, ctlShim := seqpacketPair(t)
	data, _ := seqpacketPair(t)
	frames, framesShim := seqpacketPair(t)
	base := config.Config{DNSUpstreams: []config.DNSServer{{AddrPort: netip.MustParseAddrPort("127.0.0.1:1")}}}
	done := make(chan error, 1)
	go func() { done <- Serve(ctl, data, frames, ServeOptions{Base: base}) }()
	ctlShim.Write([]byte("c" + qemuText))
	if r, note := readReply(t, ctlShim); r != 0 {
		t.Fatalf("settings: %d %q", r, note)
	}
	tooLong := make([]byte, link.EthHdrLen+DefaultMTU+1)
	copy(tooLong, arpRequest([6]byte{0x52, 0x54, 0, 0, 0, 0xbb}))
	good := [6]byte{0x52, 0x54, 0, 0, 0, 0xaa}
	for _, f := range [][]byte{tooLong, arpRequest(good)} {
		if _, err := framesShim.Write(f); err != nil {
			t.Fatal(err)
		}
	}
	gw := network.GatewayMAC(netip.MustParseAddr("10.0.2.2"))
	framesShim.SetReadDeadline(time.Now().Add(10 * time.Second)) // a bound on a hang
	buf := make([]byte, maxMsg)
	for {
		n, err := framesShim.Read(buf)
		if err != nil {
			t.Fatalf("no ARP reply on the frames socket: %v", err)
		}
		f := buf[:n]
		if n < 42 || f[12] != 0x08 || f[13] != 0x06 || f[21] != 2 || !bytes.Equal(f[22:28], gw) {
			continue // router advertisements, ...
		}
		if !bytes.Equal(f[0:6], good[:]) {
			t.Fatalf("ARP reply to %x: the frame longer than the MTU was taken", f[0:6])
		}
		break
	}
	ctlShim.Close()
	if err := <-done; err != nil {
		t.Errorf("Serve: %v", err)
	}
}

// TestHostFiles: the server's requests for host files go out on the data
// socket and come back with the shim's descriptor or errno.
func TestHostFiles(t *testing.T) {
	data, shim := seqpacketPair(t)
	files := newHostFiles(data)
	go fromHost(nil, data, files)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "boot"), []byte("kernel"), 0o644)
	os.WriteFile(filepath.Join(dir, "resolv.conf"), []byte("nameserver 192.0.2.1\n"), 0o644)
	go func() {
		buf := make([]byte, maxMsg)
		for {
			n, err := shim.Read(buf)
			if err != nil {
				return
			}
			if n < 6 || buf[0] != 'o' {
				continue
			}
			rep := append([]byte{'O'}, buf[1:5]...)
			name := string(buf[6:n])
			if buf[5] == openResolvConf {
				name = "resolv.conf"
			}
			f, err := os.Open(filepath.Join(dir, name))
			if err != nil {
				enoent := -int32(syscall.ENOENT)
				shim.Write(binary.NativeEndian.AppendUint32(rep, uint32(enoent)))
				continue
			}
			shim.WriteMsgUnix(binary.NativeEndian.AppendUint32(rep, 0), syscall.UnixRights(int(f.Fd())), nil)
			f.Close()
		}
	}()
	f, err := files.OpenTFTP("boot")
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(f); string(b) != "kernel" {
		t.Errorf("boot: %q", b)
	}
	f.Close()
	if _, err := files.OpenTFTP("missing"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing: %v, want not found", err)
	}
	if _, err := files.OpenTFTP("a\x00b"); !errors.Is(err, syscall.EINVAL) {
		t.Errorf("a name with a NUL: %v, want EINVAL", err)
	}
	if s, err := files.ReadResolvers(); err != nil || len(s) != 1 || s[0] != netip.MustParseAddrPort("192.0.2.1:53") {
		t.Errorf("resolvers %v, %v", s, err)
	}
}
