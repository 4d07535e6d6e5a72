package control

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// postLink sends POST /v1/links with body and the descriptors fds in one
// sendmsg, as a VMM does, and returns the answer.
func postLink(t *testing.T, sock, body string, fds ...int) (int, string) {
	t.Helper()
	return sendRequest(t, sock, string(linkRequestBytes([]byte(body))), fds...)
}

func socketpair(t *testing.T, typ int) (ours, theirs int) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fds[0]); unix.Close(fds[1]) })
	return fds[0], fds[1]
}

// openFDs counts this process's open descriptors: the server runs in it,
// so a descriptor it kept from a refused request shows here.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// arpRequest is a stream-framed ARP request from a guest for the gateway.
func arpRequest() []byte {
	f := make([]byte, 4+42)
	binary.BigEndian.PutUint32(f, 42)
	e := f[4:]
	copy(e[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(e[6:12], []byte{0x52, 0x54, 0, 0x12, 0x34, 0x56})
	e[12], e[13] = 0x08, 0x06
	copy(e[14:22], []byte{0, 1, 8, 0, 6, 4, 0, 1})
	copy(e[22:28], e[6:12])
	copy(e[28:32], []byte{10, 0, 2, 15})
	copy(e[38:42], []byte{10, 0, 2, 2})
	return f
}

// readARPReply reads stream frames from the guest's end until an ARP
// reply comes.
func readARPReply(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	for {
		var hdr [4]byte
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			t.Fatalf("waiting for an ARP reply: %v", err)
		}
		f := make([]byte, binary.BigEndian.Uint32(hdr[:]))
		if _, err := io.ReadFull(c, f); err != nil {
			t.Fatal(err)
		}
		if len(f) >= 22 && f[12] == 0x08 && f[13] == 0x06 && f[21] == 2 {
			return
		}
	}
}

func (f *fixture) links(t *testing.T) []Link {
	t.Helper()
	var ls []Link
	if err := f.c.Do(context.Background(), "GET", "/v1/links", nil, &ls); err != nil {
		t.Fatal(err)
	}
	return ls
}

func TestAddLinkCarriesFrames(t *testing.T) {
	f := newFixture(t)
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	ours, theirs := pair[0], pair[1]
	l, err := f.c.AddLink(context.Background(), theirs, KindStream, "vm1-net1")
	if err != nil {
		t.Fatal(err)
	}
	// slipway holds its own copy; the VMM closes the one it sent.
	unix.Close(theirs)
	if l.Port <= 0 || l.Name != "vm1-net1" || !l.Up {
		t.Fatalf("answer %+v", l)
	}
	ls := f.links(t)
	if len(ls) != 1 || ls[0].Port != l.Port {
		t.Fatalf("links %+v", ls)
	}
	// The guest's end works: the gateway answers its ARP.
	file := os.NewFile(uintptr(ours), "guest")
	guest, err := net.FileConn(file)
	file.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer guest.Close()
	guest.Write(arpRequest())
	readARPReply(t, guest)

	// Down: what the guest sends is dropped and counted, and the event
	// stream says so.
	sub, err := f.n.Subscribe()
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if l, err = f.c.SetLinkDown(context.Background(), l.Port, true); err != nil || l.Up {
		t.Fatalf("down: %+v %v", l, err)
	}
	for ev := range sub.C {
		if ev.Type == "link-state" {
			if ev.Port != l.Port || ev.Up == nil || *ev.Up {
				t.Errorf("event %+v, want port %d down", ev, l.Port)
			}
			break
		}
	}
	guest.Write(arpRequest())
	for deadline := time.Now().Add(20 * time.Second); f.links(t)[0].Drops["link_down"] == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("a frame from a link set down was not counted as link_down")
		}
	}
	if l, err = f.c.SetLinkDown(context.Background(), l.Port, false); err != nil || !l.Up {
		t.Fatalf("up: %+v %v", l, err)
	}
	guest.Write(arpRequest())
	readARPReply(t, guest)

	// Removed: the guest's end sees the close, the list is empty.
	if _, err := f.c.RemoveLink(context.Background(), l.Port); err != nil {
		t.Fatal(err)
	}
	guest.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.Copy(io.Discard, guest); err != nil {
		t.Fatalf("guest end after DELETE: %v", err)
	}
	if ls := f.links(t); len(ls) != 0 {
		t.Fatalf("links after DELETE: %+v", ls)
	}
	var ae *APIError
	if _, err := f.c.RemoveLink(context.Background(), l.Port); !asAPIError(err, &ae) || ae.Status != 404 {
		t.Errorf("second DELETE: %v", err)
	}
}

func asAPIError(err error, ae **APIError) bool {
	e, ok := err.(*APIError)
	*ae = e
	return ok
}

func TestAddLinkKinds(t *testing.T) {
	f := newFixture(t)
	for _, k := range []struct {
		kind string
		typ  int
	}{{KindDgram, unix.SOCK_DGRAM}, {KindSeqpacket, unix.SOCK_SEQPACKET}, {KindVhostUser, unix.SOCK_STREAM}} {
		_, theirs := socketpair(t, k.typ)
		l, err := f.c.AddLink(context.Background(), theirs, k.kind, "")
		if err != nil {
			t.Fatalf("%s: %v", k.kind, err)
		}
		if l.Name != "api:"+k.kind {
			t.Errorf("%s: name %q", k.kind, l.Name)
		}
	}
	if n := len(f.links(t)); n != 3 {
		t.Errorf("%d links, want 3", n)
	}
}

// Every bad request is refused with a 4xx (501 for a kind not built in),
// attaches nothing, and leaves no received descriptor open.
func TestAddLinkBadInput(t *testing.T) {
	f := newFixture(t)
	_, stream1 := socketpair(t, unix.SOCK_STREAM)
	_, stream2 := socketpair(t, unix.SOCK_STREAM)
	_, dgram := socketpair(t, unix.SOCK_DGRAM)
	var pipe [2]int
	if err := unix.Pipe2(pipe[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(pipe[0])
	defer unix.Close(pipe[1])
	hungUp, gone := socketpair(t, unix.SOCK_STREAM)
	unix.Close(gone)
	ln, err := net.Listen("unix", t.TempDir()+"/l.sock")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	lf, _ := ln.(*net.UnixListener).File()
	defer lf.Close()

	cases := []struct {
		name   string
		body   string
		fds    []int
		status int
		want   string
	}{
		{"no fd", `{"kind":"stream"}`, nil, 400, "no file descriptor"},
		{"two fds", `{"kind":"stream"}`, []int{stream1, stream2}, 400, "2 file descriptors"},
		{"five fds", `{"kind":"stream"}`, []int{stream1, stream2, dgram, stream1, stream2}, 400, "too many file descriptors"},
		{"not a socket", `{"kind":"stream"}`, []int{pipe[0]}, 400, "not a socket"},
		{"wrong kind", `{"kind":"dgram"}`, []int{stream1}, 400, "is a stream socket, not dgram"},
		{"unknown kind", `{"kind":"tap"}`, []int{stream1}, 400, `unknown link kind \"tap\"`},
		{"no kind", `{}`, []int{stream1}, 400, "missing kind"},
		{"peer closed", `{"kind":"stream"}`, []int{hungUp}, 400, "closed its end"},
		{"listening socket", `{"kind":"stream"}`, []int{int(lf.Fd())}, 400, "listening socket"},
		{"vhost-user on a datagram socket", `{"kind":"vhost-user"}`, []int{dgram}, 400, "is a dgram socket, not vhost-user"},
		{"vhost-user queues", `{"kind":"vhost-user","queues":17}`, []int{stream1}, 400, "queues 17"},
		{"queues for stream", `{"kind":"stream","queues":2}`, []int{stream1}, 400, "queues is for vhost-user"},
		{"bad name", `{"kind":"stream","name":"a b"}`, []int{stream1}, 400, "link name"},
		{"unknown field", `{"kind":"stream","fd":3}`, []int{stream1}, 400, "unknown field"},
		{"not json", `stream`, []int{stream1}, 400, "malformed"},
	}
	f.links(t) // the client's keep-alive connection, open from here on
	before := openFDs(t)
	for _, c := range cases {
		status, body := postLink(t, f.sock, c.body, c.fds...)
		if status != c.status || !strings.Contains(body, c.want) {
			t.Errorf("%s: %d %s, want %d and %q", c.name, status, body, c.status, c.want)
		}
		var e ErrorResponse
		if json.Unmarshal([]byte(body), &e) != nil || e.Error == "" {
			t.Errorf("%s: not a JSON error: %s", c.name, body)
		}
	}
	if ls := f.links(t); len(ls) != 0 {
		t.Errorf("links after refused requests: %+v", ls)
	}
	// The server closes what it received before answering.
	if after := openFDs(t); after != before {
		t.Errorf("%d descriptors open after the refused requests, %d before", after, before)
	}
	// A descriptor sent with a request that takes none is closed too.
	status, _ := sendRequest(t, f.sock, "GET /v1/health HTTP/1.1\r\nHost: s\r\nConnection: close\r\n\r\n", stream1)
	if status != 200 {
		t.Errorf("health with an fd: %d", status)
	}
	if after := openFDs(t); after != before {
		t.Errorf("%d descriptors open after a GET with an fd, %d before", after, before)
	}
	for _, p := range []string{"/v1/links/x", "/v1/links/0", "/v1/links/99"} {
		status, body := f.do(t, "DELETE", p, "")
		want := 400
		if p == "/v1/links/99" {
			want = 404
		}
		if status != want {
			t.Errorf("DELETE %s: %d %s, want %d", p, status, body, want)
		}
		if p == "/v1/links/0" {
			want = 404 // a number, and no link has it
		}
		if status, _ := f.do(t, "POST", p+"/down", ""); status != want {
			t.Errorf("POST %s/down: %d, want %d", p, status, want)
		}
	}
}

// sendRequest sends the raw request with fds in one sendmsg and returns
// the answer.
func sendRequest(t *testing.T, sock, raw string, fds ...int) (int, string) {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	if _, _, err := c.(*net.UnixConn).WriteMsgUnix([]byte(raw), oob, nil); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	// Until the server has closed its end (Connection: close), so that
	// the descriptors counted are what it holds for good.
	io.Copy(io.Discard, c)
	return resp.StatusCode, string(b)
}
