package gvproxy

import (
	"net"
	"net/url"
	"path/filepath"
	"testing"
)

// -listen unix://PATH takes over a socket file a dead gvproxy left and
// refuses one another process serves on.
func TestListenURLUnix(t *testing.T) {
	path := filepath.Join(t.TempDir(), "api.sock")
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	stale.Close()
	u := &url.URL{Scheme: "unix", Path: path}
	ln, err := listenURL(u)
	if err != nil {
		t.Fatalf("listen over a stale socket file: %v", err)
	}
	defer ln.Close()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("dial the new socket: %v", err)
	}
	c.Close()
	if l2, err := listenURL(u); err == nil {
		l2.Close()
		t.Fatal("a second listen on a served socket succeeded")
	}
	if c, err := net.Dial("unix", path); err != nil {
		t.Fatalf("the refused second listen took the socket away: %v", err)
	} else {
		c.Close()
	}
}
