package tftp

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// client is a minimal TFTP reader over loopback UDP.
func get(t *testing.T, server net.Addr, name string, opts ...string) ([]byte, uint16, string) {
	t.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := binary.BigEndian.AppendUint16(nil, opRRQ)
	req = append(append(req, name...), 0)
	req = append(append(req, "octet"...), 0)
	for _, o := range opts {
		req = append(append(req, o...), 0)
	}
	c.WriteTo(req, server)
	var out []byte
	buf := make([]byte, 70000)
	blk := 512
	for {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			t.Fatalf("reading %s: %v", name, err)
		}
		switch binary.BigEndian.Uint16(buf) {
		case opERROR:
			return nil, binary.BigEndian.Uint16(buf[2:]), string(bytes.TrimRight(buf[4:n], "\x00"))
		case opOACK:
			fields := bytes.Split(bytes.TrimRight(buf[2:n], "\x00"), []byte{0})
			for i := 0; i+1 < len(fields); i += 2 {
				if string(fields[i]) == "blksize" {
					blk = atoi(string(fields[i+1]))
				}
			}
			c.WriteTo([]byte{0, opACK, 0, 0}, from)
		case opDATA:
			out = append(out, buf[4:n]...)
			c.WriteTo([]byte{0, opACK, buf[2], buf[3]}, from)
			if n-4 < blk {
				return out, 0, ""
			}
		}
	}
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}

func serve(t *testing.T, root string) net.Addr {
	t.Helper()
	return serveConfig(t, Config{Root: root, Timeout: 200 * time.Millisecond})
}

func serveConfig(t *testing.T, cfg Config) net.Addr {
	t.Helper()
	s, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		s.Serve(ctx, pc, func() (net.PacketConn, error) { return net.ListenPacket("udp4", "127.0.0.1:0") })
		close(done)
	}()
	t.Cleanup(func() { cancel(); <-done })
	return pc.LocalAddr()
}

// TestTransfers: whole files arrive in default and negotiated block sizes
// (a file of an exact multiple of the block size ends with an empty
// block); missing files, names escaping the root and writes are refused.
func TestTransfers(t *testing.T) {
	root := t.TempDir()
	big := make([]byte, 300*1024+17)
	rand.Read(big)
	exact := make([]byte, 1024)
	rand.Read(exact)
	os.WriteFile(filepath.Join(root, "big"), big, 0o644)
	os.WriteFile(filepath.Join(root, "exact"), exact, 0o644)
	os.MkdirAll(filepath.Join(root, "sub"), 0o755)
	os.WriteFile(filepath.Join(root, "sub", "f"), []byte("in sub"), 0o644)
	outside := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(outside, []byte("secret"), 0o644)
	os.Symlink(outside, filepath.Join(root, "link"))
	addr := serve(t, root)

	if got, code, msg := get(t, addr, "big"); !bytes.Equal(got, big) {
		t.Errorf("big at 512: %d bytes, error %d %s", len(got), code, msg)
	}
	if got, code, msg := get(t, addr, "/big", "blksize", "1400", "tsize", "0"); !bytes.Equal(got, big) {
		t.Errorf("big at 1400: %d bytes, error %d %s", len(got), code, msg)
	}
	if got, _, _ := get(t, addr, "exact"); !bytes.Equal(got, exact) {
		t.Errorf("exact: %d bytes", len(got))
	}
	if got, _, _ := get(t, addr, "sub/f"); string(got) != "in sub" {
		t.Errorf("sub/f: %q", got)
	}
	for _, name := range []string{"missing", "../" + filepath.Base(filepath.Dir(outside)) + "/secret", "link", "sub"} {
		if got, code, _ := get(t, addr, name); got != nil || code == 0 {
			t.Errorf("%s: served %q (error %d)", name, got, code)
		}
	}
	c, _ := net.ListenPacket("udp4", "127.0.0.1:0")
	defer c.Close()
	c.WriteTo(append([]byte{0, opWRQ}, "x\x00octet\x00"...), addr)
	buf := make([]byte, 100)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, _, err := c.ReadFrom(buf); err != nil || binary.BigEndian.Uint16(buf) != opERROR || binary.BigEndian.Uint16(buf[2:n]) != errAccess {
		t.Errorf("a write request was not refused: %v % x", err, buf)
	}
}

// TestOpenHook: with Config.Open the server opens nothing itself (its
// Root need not exist): each request's name, without its leading slash,
// goes to Open, whose file is served and whose errors are the client's.
func TestOpenHook(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "f"), []byte("through the hook"), 0o644)
	names := make(chan string, 4)
	addr := serveConfig(t, Config{Root: "/nonexistent", Timeout: 200 * time.Millisecond, Open: func(name string) (*os.File, error) {
		names <- name
		if name != "f" {
			return nil, &os.PathError{Op: "open", Path: name, Err: os.ErrNotExist}
		}
		return os.Open(filepath.Join(dir, name))
	}})
	if got, code, msg := get(t, addr, "/f"); string(got) != "through the hook" {
		t.Errorf("f: %q, error %d %s", got, code, msg)
	}
	if got := <-names; got != "f" {
		t.Errorf("Open got %q, want f", got)
	}
	if got, code, _ := get(t, addr, "missing"); got != nil || code != errNotFound {
		t.Errorf("missing: served %q, error %d; want error %d", got, code, errNotFound)
	}
}
