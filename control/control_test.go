package control

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slipway-net/slipway/config"
	"github.com/slipway-net/slipway/internal/publish"
	"github.com/slipway-net/slipway/network"
)

// These tests run the API against a real network (stack, services,
// publisher with real host listeners on loopback) with no guest attached.

type fixture struct {
	n    *network.Network
	srv  *Server
	sock string
	hc   *http.Client
	c    *Client
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	cfg := config.Default()
	cfg.DNSUpstreams = []config.DNSServer{{AddrPort: mustAddrPort("127.0.0.1:53")}}
	n, err := network.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	sock := filepath.Join(t.TempDir(), "api.sock")
	srv, err := Listen(sock, n, nil)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	t.Cleanup(func() { srv.Close() })
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}
	return &fixture{n: n, srv: srv, sock: sock, hc: &http.Client{Transport: tr}, c: NewClient(sock)}
}

// freePort returns a TCP and UDP port free on loopback right now.
func freePort(t *testing.T) uint16 {
	t.Helper()
	for {
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		u, err := net.ListenPacket("udp4", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			u.Close()
			return uint16(port)
		}
	}
}

func mustAddrPort(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

// do sends a raw request and returns status and body.
func (f *fixture) do(t testing.TB, method, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://slipway"+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := f.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// forwards is the API's list, as a string to compare states.
func (f *fixture) forwards(t *testing.T) string {
	t.Helper()
	var fws []publish.Forward
	if err := f.c.Do(context.Background(), "GET", "/v1/forwards", nil, &fws); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, fw := range fws {
		ids = append(ids, fmt.Sprintf("%d=%s", fw.ID, fw.PublishRule))
	}
	return strings.Join(ids, ",")
}

func TestSocketMode(t *testing.T) {
	f := newFixture(t)
	fi, err := os.Stat(f.sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want a socket with 0600", fi.Mode())
	}
	// A second server on the same live socket is refused.
	if _, err := Listen(f.sock, f.n, nil); err == nil || !strings.Contains(err.Error(), "another process") {
		t.Errorf("second Listen: %v", err)
	}
	// A non-socket is not replaced.
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, []byte("x"), 0o600)
	if _, err := Listen(file, f.n, nil); err == nil {
		t.Error("Listen over a regular file succeeded")
	}
}

// TestBadRequestsChangeNothing: every bad request is a JSON error with a
// fitting status, and the forwards stay as they were.
func TestBadRequestsChangeNothing(t *testing.T) {
	f := newFixture(t)
	port := freePort(t)
	status, body := f.do(t, "POST", "/v1/forwards", fmt.Sprintf(`{"spec":"127.0.0.1:%d:80"}`, port))
	if status != http.StatusCreated {
		t.Fatalf("add: %d %s", status, body)
	}
	state := f.forwards(t)
	busy, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyPort := busy.Addr().(*net.TCPAddr).Port
	other := freePort(t)

	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		msg                      string
	}{
		{"malformed JSON", "POST", "/v1/forwards", `{"spec":`, 400, "malformed"},
		{"not an object", "POST", "/v1/forwards", `[1,2]`, 400, "malformed"},
		{"empty body", "POST", "/v1/forwards", ``, 400, "empty"},
		{"trailing data", "POST", "/v1/forwards", `{"spec":"9000:80"} {}`, 400, "after the JSON"},
		{"huge body", "POST", "/v1/forwards", `{"spec":"` + strings.Repeat("9", MaxBody) + `"}`, 413, "larger than"},
		{"unknown field", "POST", "/v1/forwards", `{"spec":"9000:80","color":"red"}`, 400, "unknown field"},
		{"bad spec", "POST", "/v1/forwards", `{"spec":"9000"}`, 400, "spec"},
		{"spec and fields", "POST", "/v1/forwards", `{"spec":"9000:80","host_port":9000}`, 400, "not both"},
		{"port zero", "POST", "/v1/forwards", `{"host_port":0,"guest_port":80}`, 400, "ports"},
		{"port too big", "POST", "/v1/forwards", `{"host_port":70000,"guest_port":80}`, 400, "malformed"},
		{"bad host address", "POST", "/v1/forwards", `{"host_addr":"banana","host_port":9000,"guest_port":80}`, 400, "malformed"},
		{"guest outside network", "POST", "/v1/forwards", fmt.Sprintf(`{"spec":"127.0.0.1:%d:192.168.9.9:80"}`, other), 400, "not a guest address"},
		{"guest is the gateway", "POST", "/v1/forwards", fmt.Sprintf(`{"spec":"127.0.0.1:%d:10.0.2.2:80"}`, other), 400, "slipway's own"},
		{"host address not ours", "POST", "/v1/forwards", fmt.Sprintf(`{"spec":"203.0.113.7:%d:80"}`, other), 400, "assign"},
		{"duplicate", "POST", "/v1/forwards", fmt.Sprintf(`{"spec":"127.0.0.1:%d:81"}`, port), 409, "already published"},
		{"overlap via all addresses", "POST", "/v1/forwards", fmt.Sprintf(`{"spec":"%d:81"}`, port), 409, "already published"},
		{"port in use", "POST", "/v1/forwards", fmt.Sprintf(`{"spec":"127.0.0.1:%d:80"}`, busyPort), 409, "address already in use"},
		{"unknown id", "DELETE", "/v1/forwards/99", ``, 404, "no such forward"},
		{"bad id", "DELETE", "/v1/forwards/x", ``, 400, "not a number"},
		{"wrong method", "PUT", "/v1/forwards", ``, 405, "not allowed"},
		{"no endpoint", "GET", "/v2/forwards", ``, 404, "no such endpoint"},
		{"gvproxy malformed", "POST", "/services/forwarder/expose", `{"local":`, 400, "malformed"},
		{"gvproxy bad protocol", "POST", "/services/forwarder/expose", fmt.Sprintf(`{"local":":%d","remote":"10.0.2.15:80","protocol":"unix"}`, other), 400, "protocol"},
		{"gvproxy bad remote", "POST", "/services/forwarder/expose", fmt.Sprintf(`{"local":":%d","remote":"10.0.2.15"}`, other), 400, "remote"},
		{"gvproxy duplicate", "POST", "/services/forwarder/expose", fmt.Sprintf(`{"local":"127.0.0.1:%d","remote":"10.0.2.15:80"}`, port), 409, "already published"},
		{"gvproxy unexpose unknown", "POST", "/services/forwarder/unexpose", fmt.Sprintf(`{"local":":%d"}`, other), 404, "no such forward"},
	} {
		status, body := f.do(t, tc.method, tc.path, tc.body)
		var e ErrorResponse
		if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error == "" {
			t.Errorf("%s: body %q is not a JSON error", tc.name, body)
		}
		if status != tc.status || !strings.Contains(e.Error, tc.msg) {
			t.Errorf("%s: %d %q, want %d and %q", tc.name, status, e.Error, tc.status, tc.msg)
		}
		if now := f.forwards(t); now != state {
			t.Fatalf("%s changed the forwards: %s -> %s", tc.name, state, now)
		}
	}
}

func TestForwardLifecycleAndViews(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	tcpPort, udpPort := freePort(t), freePort(t)
	var fw publish.Forward
	rule := config.PublishRule{Proto: "udp", HostAddr: mustAddr("127.0.0.1"), HostPort: udpPort, GuestPort: 53}
	if err := f.c.Do(ctx, "POST", "/v1/forwards", ForwardRequest{PublishRule: rule}, &fw); err != nil {
		t.Fatal(err)
	}
	if fw.ID == 0 || fw.Proto != "udp" || fw.GuestAddr.String() != "10.0.2.15" {
		t.Errorf("added %+v", fw)
	}
	if status, body := f.do(t, "POST", "/services/forwarder/expose", fmt.Sprintf(`{"local":"127.0.0.1:%d","remote":"10.0.2.16:8080"}`, tcpPort)); status != 200 {
		t.Fatalf("expose: %d %s", status, body)
	}
	var all []GvproxyExpose
	if err := f.c.Do(ctx, "GET", "/services/forwarder/all", nil, &all); err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || all[1] != (GvproxyExpose{Local: fmt.Sprintf("127.0.0.1:%d", tcpPort), Remote: "10.0.2.16:8080", Protocol: "tcp"}) {
		t.Errorf("gvproxy list: %+v", all)
	}
	// The host port really listens.
	c, err := net.Dial("tcp4", fmt.Sprintf("127.0.0.1:%d", tcpPort))
	if err != nil {
		t.Errorf("exposed port does not listen: %v", err)
	} else {
		c.Close()
	}
	var st Stats
	if err := f.c.Do(ctx, "GET", "/v1/stats", nil, &st); err != nil {
		t.Fatal(err)
	}
	if st.Counter("publish", "forwards") != 2 || st.Counter("publish", "ports") != 2 || st.Counter("flows", "max") != config.DefaultMaxFlows {
		t.Errorf("stats: %+v", st)
	}
	for _, path := range []string{"/v1/leases", "/v1/links", "/v1/flows", "/v1/health"} {
		if status, body := f.do(t, "GET", path, ""); status != 200 || !json.Valid([]byte(body)) {
			t.Errorf("%s: %d %s", path, status, body)
		}
	}
	status, metrics := f.do(t, "GET", "/metrics", "")
	if status != 200 || !strings.Contains(metrics, `slipway_publish{key="",name="ports"} 2`) || !strings.Contains(metrics, `slipway_publish{key="",name="forwards"} 2`) {
		t.Errorf("metrics: %d\n%s", status, metrics)
	}
	if status, body := f.do(t, "POST", "/services/forwarder/unexpose", fmt.Sprintf(`{"local":"127.0.0.1:%d","protocol":"tcp"}`, tcpPort)); status != 200 {
		t.Fatalf("unexpose: %d %s", status, body)
	}
	if c, err := net.Dial("tcp4", fmt.Sprintf("127.0.0.1:%d", tcpPort)); err == nil {
		c.Close()
		t.Error("unexposed port still listens")
	}
	if err := f.c.Do(ctx, "DELETE", fmt.Sprintf("/v1/forwards/%d", fw.ID), nil, nil); err != nil {
		t.Fatal(err)
	}
	if got := f.forwards(t); got != "" {
		t.Errorf("forwards left: %s", got)
	}
}

func TestEvents(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://slipway/v1/events", nil)
	resp, err := f.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	port := freePort(t)
	fw, err := f.n.Publish(config.PublishRule{HostAddr: mustAddr("127.0.0.1"), HostPort: port, GuestPort: 80})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.n.Unpublish(fw.ID); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(resp.Body)
	for _, want := range []string{network.EventForwardAdded, network.EventForwardRemoved} {
		if !sc.Scan() {
			t.Fatalf("stream ended before %s: %v", want, sc.Err())
		}
		var ev network.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Type != want || ev.Forward == nil || ev.Forward.ID != fw.ID {
			t.Errorf("event %s, want %s of forward %d", sc.Text(), want, fw.ID)
		}
	}
	// Subscribers are bounded.
	var streams []*http.Response
	defer func() {
		for _, r := range streams {
			r.Body.Close()
		}
	}()
	for i := 1; i < network.MaxSubscribers; i++ {
		r, err := f.hc.Do(req.Clone(ctx))
		if err != nil {
			t.Fatal(err)
		}
		streams = append(streams, r)
	}
	if status, body := f.do(t, "GET", "/v1/events", ""); status != http.StatusTooManyRequests {
		t.Errorf("subscriber %d: %d %s, want 429", network.MaxSubscribers+1, status, body)
	}
}

func TestSlirp4netns(t *testing.T) {
	f := newFixture(t)
	call := func(req string, closeWrite bool) string {
		c, err := net.Dial("unix", f.sock)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(15 * time.Second))
		io.WriteString(c, req)
		if closeWrite {
			c.(*net.UnixConn).CloseWrite()
		}
		b, _ := io.ReadAll(c)
		return strings.TrimSpace(string(b))
	}
	port := freePort(t)
	add := fmt.Sprintf(`{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"127.0.0.1","host_port":%d,"guest_addr":"10.0.2.100","guest_port":80}}`, port)
	// Without shutting down writing, as some clients do.
	if got := call(add, false); got != `{"return":{"id":1}}` {
		t.Fatalf("add_hostfwd: %s", got)
	}
	state := f.forwards(t)
	want := fmt.Sprintf(`{"return":{"entries":[{"id":1,"proto":"tcp","host_addr":"127.0.0.1","host_port":%d,"guest_addr":"10.0.2.100","guest_port":80}]}}`, port)
	if got := call(`{"execute":"list_hostfwd"}`, true); got != want {
		t.Errorf("list_hostfwd:\n%s\nwant\n%s", got, want)
	}
	for _, tc := range []struct{ req, desc string }{
		{add, "already published"},
		{`{"execute":"add_hostfwd","arguments":{"proto":"sctp","host_port":1,"guest_port":1}}`, "bad arguments.proto"},
		{`{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":0,"guest_port":1}}`, "bad arguments.host_port"},
		{`{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":9,"guest_port":70000}}`, "bad arguments.guest_port"},
		{`{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"x","host_port":9,"guest_port":9}}`, "bad arguments.host_addr"},
		{`{"execute":"add_hostfwd","arguments":{"proto":"tcp6","host_port":9,"guest_port":9}}`, "bad arguments.proto"},
		{`{"execute":"add_hostfwd"}`, "missing arguments"},
		{`{"execute":"remove_hostfwd","arguments":{"id":7}}`, "no such forward"},
		{`{"execute":"remove_hostfwd","arguments":{}}`, "bad arguments.id"},
		{`{"execute":"remove_hostfwd","arguments":{"id":"1"}}`, "bad arguments"},
		{`{"execute":"reboot"}`, "unknown execute"},
		{`{"arguments":{}}`, "no execute"},
		{`{"execute":"list_hostfwd","extra":1}`, "unknown field"},
		{`{"execute":`, "cannot parse JSON"},
		{`{"execute":"` + strings.Repeat("a", MaxBody+10) + `"}`, "larger than"},
	} {
		got := call(tc.req, true)
		var reply struct {
			Error *struct {
				Desc string `json:"desc"`
			} `json:"error"`
		}
		if err := json.Unmarshal([]byte(got), &reply); err != nil || reply.Error == nil || !strings.Contains(reply.Error.Desc, tc.desc) {
			t.Errorf("%.60s: got %s, want an error with %q", tc.req, got, tc.desc)
		}
		if now := f.forwards(t); now != state {
			t.Fatalf("%.60s changed the forwards: %s -> %s", tc.req, state, now)
		}
	}
	if got := call(`{"execute":"remove_hostfwd","arguments":{"id":1}}`, true); got != `{"return":{}}` {
		t.Errorf("remove_hostfwd: %s", got)
	}
	if got := f.forwards(t); got != "" {
		t.Errorf("forwards left: %s", got)
	}
	// HTTP still works on the same socket.
	if status, _ := f.do(t, "GET", "/v1/health", ""); status != 200 {
		t.Errorf("health after slirp4netns requests: %d", status)
	}
}

// FuzzSlirpRequest: any request is a command or an error, never a panic;
// a command is complete (an add has ports, a remove an id).
func FuzzSlirpRequest(f *testing.F) {
	for _, s := range []string{
		`{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"0.0.0.0","host_port":8080,"guest_addr":"10.0.2.100","guest_port":80}}`,
		`{"execute":"list_hostfwd"}`,
		`{"execute":"remove_hostfwd","arguments":{"id":1}}`,
		`{"execute":"add_hostfwd","arguments":{"proto":"udp4","host_port":1,"guest_port":65535,"host_addr":"::1"}}`,
		`{"execute":"remove_hostfwd","arguments":{"id":-1}}`,
		`{"execute":null}`, `{}`, `[]`, `{"execute":"add_hostfwd","arguments":null}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		cmd, err := parseSlirpRequest(b)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "bad request") {
				t.Fatalf("error %q does not say bad request", err)
			}
			return
		}
		switch cmd.op {
		case "add_hostfwd":
			if cmd.rule.HostPort == 0 || cmd.rule.GuestPort == 0 || (cmd.rule.Proto != "tcp" && cmd.rule.Proto != "udp") {
				t.Fatalf("incomplete add: %+v", cmd.rule)
			}
			c := config.Default()
			c.Resolve(cmd.rule)
		case "remove_hostfwd":
			if cmd.id == 0 {
				t.Fatal("remove without id")
			}
		case "list_hostfwd":
		default:
			t.Fatalf("unknown op %q accepted", cmd.op)
		}
	})
}
