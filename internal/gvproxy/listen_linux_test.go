package gvproxy

import (
	"errors"
	"net"
	"net/url"
	"os"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A vsock API listener, and the one an engine makes of its handed-over
// socket, end their Accept on Close: an accept(2) blocked on a vsock
// socket is not woken by shutdown(2), and gvproxy hung on SIGTERM.
func TestVsockCloseEndsAccept(t *testing.T) {
	port := 30000 + os.Getpid()%20000
	ln, err := listenVsock(&url.URL{Scheme: "vsock", Host: ":" + strconv.Itoa(port)})
	if errors.Is(err, unix.EAFNOSUPPORT) {
		t.Skip("no AF_VSOCK in this kernel")
	}
	if err != nil {
		t.Fatal(err)
	}
	f, err := vsockFile(ln)
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	adopted, err := vsockFromFile(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if a := adopted.Addr().(vsockAddr); a.port != uint32(port) {
		t.Errorf("adopted listener on port %d, want %d", a.port, port)
	}
	done := make(chan error, 1)
	go func() {
		_, err := adopted.Accept()
		done <- err
	}()
	time.Sleep(50 * time.Millisecond) // let Accept wait; it ends either way
	adopted.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Accept after Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not end a waiting Accept")
	}
}
