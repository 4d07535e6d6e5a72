package gvproxy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slipway-net/slipway/link"
	"github.com/slipway-net/slipway/network"
)

// testAPI is the API of a network with gvproxy's default plan (no VM).
func testAPI(t testing.TB) (*API, http.Handler) {
	t.Helper()
	p, err := (&Options{SSHPort: -1, set: map[string]bool{}}).Plan(nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := p.Config
	cfg.DNSUpstreams = nil
	n, err := network.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	for _, z := range p.Zones {
		if err := n.DNS().AddZone(z); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	a := &API{N: n, Fwd: NewForwarder(ctx, n, slog.New(slog.DiscardHandler)), Log: slog.New(slog.DiscardHandler), Protocol: ProtoQemu, Subnet: cfg.CIDR}
	t.Cleanup(a.Fwd.Close)
	return a, a.Handler(true)
}

// call makes one request, from guest (an address inside the network) or
// from the host when from is "".
func call(h http.Handler, method, path, body, from string) (int, string) {
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	if from != "" {
		r.RemoteAddr = from
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Code, w.Body.String()
}

func freeTCP(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// The forwarder answers as gvproxy's: 200 with an empty body, errors in
// plain text, 400 for a bad request and 500 for a failure, the list in
// gvproxy's JSON; a remote without address is the calling guest's.
func TestForwarderAPI(t *testing.T) {
	_, h := testAPI(t)
	p1, p2 := freeTCP(t), freeTCP(t)
	for _, c := range []struct {
		method, path, body, from string
		status                   int
		text                     string
	}{
		{"POST", "/services/forwarder/expose", fmt.Sprintf(`{"local":"127.0.0.1:%d","remote":"192.168.127.2:22"}`, p1), "", 200, ""},
		{"POST", "/services/forwarder/expose", fmt.Sprintf(`{"local":"127.0.0.1:%d","remote":"192.168.127.2:22"}`, p1), "", 500, "proxy already running for tcp on 127.0.0.1:"},
		{"POST", "/services/forwarder/expose", fmt.Sprintf(`{"local":"127.0.0.1:%d","remote":":8080","protocol":"tcp"}`, p2), "192.168.127.3:41000", 200, ""},
		{"POST", "/services/forwarder/expose", fmt.Sprintf(`{"local":"127.0.0.1:%d","remote":":8080"}`, freeTCP(t)), "", 400, "no address"},
		{"POST", "/services/forwarder/expose", `{"local":`, "", 400, "unexpected EOF"},
		{"GET", "/services/forwarder/expose", ``, "", 400, "post only"},
		{"POST", "/services/forwarder/expose", `{"local":"x","remote":"192.168.127.2:1","protocol":"sctp"}`, "", 500, "unknown protocol sctp"},
		{"POST", "/services/forwarder/unexpose", `{"local":"127.0.0.1:1"}`, "", 500, "proxy not found"},
	} {
		status, body := call(h, c.method, c.path, c.body, c.from)
		if status != c.status || !strings.Contains(body, c.text) || c.text == "" && body != "" {
			t.Errorf("%s %s %s: %d %q, want %d %q", c.method, c.path, c.body, status, body, c.status, c.text)
		}
	}
	_, body := call(h, "GET", "/services/forwarder/all", "", "")
	var all []Expose
	if err := json.Unmarshal([]byte(body), &all); err != nil || len(all) != 2 ||
		all[0] != (Expose{Local: fmt.Sprintf("127.0.0.1:%d", p1), Remote: "192.168.127.2:22", Protocol: "tcp"}) && all[1].Remote != "192.168.127.2:22" {
		t.Fatalf("all: %s", body)
	}
	for _, e := range all {
		if e.Local == fmt.Sprintf("127.0.0.1:%d", p2) && e.Remote != "192.168.127.3:8080" {
			t.Errorf("the caller's address was not taken: %+v", e)
		}
	}
	if status, _ := call(h, "POST", "/services/forwarder/unexpose", fmt.Sprintf(`{"local":"127.0.0.1:%d","protocol":"tcp"}`, p1), ""); status != 200 {
		t.Errorf("unexpose: %d", status)
	}
	if l, err := net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", p1)); err != nil {
		t.Errorf("the port stayed bound after unexpose: %v", err)
	} else {
		l.Close()
	}
}

// lima's calls: /services/dhcp/leases (its VM's address by MAC) and
// /services/dns/add (host.lima.internal), then /services/dns/all.
func TestLeasesAndZonesAPI(t *testing.T) {
	_, h := testAPI(t)
	_, body := call(h, "GET", "/services/dhcp/leases", "", "")
	if body != `{"192.168.127.2":"5a:94:ef:e4:0c:ee"}`+"\n" {
		t.Errorf("leases %q", body)
	}
	if _, b := call(h, "GET", "/leases", "", ""); b != body {
		t.Errorf("/leases %q", b)
	}
	if status, b := call(h, "POST", "/services/dns/add", `{"name":"lima.internal.","records":[{"name":"host","ip":"192.168.127.254"}]}`, ""); status != 200 {
		t.Fatalf("dns add %d %q", status, b)
	}
	if status, b := call(h, "POST", "/services/dns/add", `{"name":"","records":[]}`, ""); status != 400 {
		t.Errorf("bad zone: %d %q", status, b)
	}
	_, body = call(h, "GET", "/services/dns/all", "", "")
	var zones []struct {
		Name string `json:"name"`
	}
	json.Unmarshal([]byte(body), &zones)
	if len(zones) != 3 || zones[2].Name != "lima.internal." {
		t.Errorf("zones %s", body)
	}
	_, body = call(h, "GET", "/stats", "", "")
	if !strings.Contains(body, `"BytesSent":0`) || !strings.Contains(body, `"dns":{`) {
		t.Errorf("stats %s", body)
	}
	if _, b := call(h, "GET", "/cam", "", ""); b != "{}\n" {
		t.Errorf("cam %q", b)
	}
}

// A unix expose listens on its path and removes it on unexpose.
func TestUnixExpose(t *testing.T) {
	_, h := testAPI(t)
	sock := filepath.Join(t.TempDir(), "api.sock")
	body := fmt.Sprintf(`{"local":%q,"remote":"tcp://192.168.127.2:2375","protocol":"unix"}`, sock)
	if status, b := call(h, "POST", "/services/forwarder/expose", body, ""); status != 200 {
		t.Fatalf("%d %q", status, b)
	}
	if fi, err := os.Stat(sock); err != nil || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("no socket at %s: %v", sock, err)
	}
	if status, b := call(h, "POST", "/services/forwarder/expose", fmt.Sprintf(`{"local":%q,"remote":"ftp://x","protocol":"unix"}`, sock+"2"), ""); status != 400 || !strings.Contains(b, "not implemented: ftp") {
		t.Errorf("bad remote: %d %q", status, b)
	}
	if status, _ := call(h, "POST", "/services/forwarder/unexpose", fmt.Sprintf(`{"local":%q,"protocol":"unix"}`, sock), ""); status != 200 {
		t.Fatal("unexpose")
	}
	if c, err := net.Dial("unix", sock); err == nil {
		c.Close()
		t.Error("the socket still answers after unexpose")
	}
}

// FuzzAPIBodies: any body to the endpoints that read one is answered with
// 200, 400 or 500, never a panic, and what was exposed can be unexposed.
func FuzzAPIBodies(f *testing.F) {
	for _, s := range []string{`{"local":":0","remote":"192.168.127.2:22"}`, `{"local":"127.0.0.1:1","remote":":1","protocol":"udp"}`,
		`{"name":"a.","records":[{"regexp":"(a","ip":"1.2.3.4"}]}`, `{"local":"/nonexistent/dir/s","remote":"ssh-tunnel://u@1.2.3.4/x?key=/k","protocol":"unix"}`, `[]`, `{`} {
		f.Add(s)
	}
	a, h := testAPI(f)
	f.Fuzz(func(t *testing.T, body string) {
		for _, path := range []string{"/services/forwarder/expose", "/services/forwarder/unexpose", "/services/dns/add"} {
			status, _ := call(h, "POST", path, body, "192.168.127.5:1000")
			if status != 200 && status != 400 && status != 500 {
				t.Fatalf("%s %q: status %d", path, body, status)
			}
		}
		for _, e := range a.Fwd.List() {
			if err := a.Fwd.Unexpose(e.Protocol, e.Local); err != nil {
				t.Fatalf("unexpose %+v: %v", e, err)
			}
		}
	})
}

// framedLink carries frames both ways in either framing.
func TestFramedLink(t *testing.T) {
	for _, proto := range []string{ProtoHyperkit, ProtoQemu} {
		a, b := net.Pipe()
		l := newFramedLink(a, a, a, proto, "test")
		frame := make([]byte, 60)
		frame[0] = 0xff
		go func() {
			hdr := []byte{60, 0}
			if proto == ProtoQemu {
				hdr = []byte{0, 0, 0, 60}
			}
			b.Write(append(hdr, frame...))
			b.Write([]byte{5, 0, 0, 0})
		}()
		bufs := [][]byte{make([]byte, 12+65536)}
		sizes := []int{0}
		if n, err := l.Read(bufs, sizes); n != 1 || err != nil || sizes[0] != 60 || bufs[0][12] != 0xff {
			t.Fatalf("%s: read %d %v %d", proto, n, err, sizes[0])
		}
		if _, err := l.Read(bufs, sizes); err == nil {
			t.Fatalf("%s: a 5-byte frame was taken", proto)
		}
		go func() {
			l.Write([]link.Frame{{Hdr: make([]byte, 12), Segs: [][]byte{frame[:30], frame[30:]}}})
		}()
		got := make([]byte, 2+60)
		if proto == ProtoQemu {
			got = make([]byte, 4+60)
		}
		if _, err := io.ReadFull(b, got); err != nil || got[len(got)-60] != 0xff {
			t.Fatalf("%s: write %v %x", proto, err, got[:4])
		}
		a.Close()
		b.Close()
	}
}

// FuzzFramedLink: any byte stream from a VM is frames of 14 bytes or more
// (each of the length its header says) up to an error, never a panic or
// an endless loop.
func FuzzFramedLink(f *testing.F) {
	f.Add([]byte{60, 0}, false)
	f.Add(append([]byte{0, 0, 0, 14}, make([]byte, 14)...), true)
	f.Add(append([]byte{14, 0}, make([]byte, 20)...), false)
	f.Add([]byte{0xff, 0xff, 1}, false)
	f.Fuzz(func(t *testing.T, stream []byte, qemu bool) {
		proto := ProtoHyperkit
		if qemu {
			proto = ProtoQemu
		}
		l := newFramedLink(bytes.NewReader(stream), io.Discard, io.NopCloser(nil), proto, "fuzz")
		bufs := [][]byte{make([]byte, link.VnetHdrLen+link.MaxFrameLen)}
		sizes := []int{0}
		total := 0
		for {
			n, err := l.Read(bufs, sizes)
			if err != nil {
				break
			}
			if n != 1 || sizes[0] < minFrame {
				t.Fatalf("read %d frames, size %d", n, sizes[0])
			}
			total += sizes[0]
			if total > len(stream) {
				t.Fatalf("%d bytes of frames from a %d-byte stream", total, len(stream))
			}
		}
	})
}

// Inside the network (gateway:80) the forwarder publishes TCP and UDP
// ports but makes no unix socket on the host.
func TestGuestHandlerNoUnix(t *testing.T) {
	a, _ := testAPI(t)
	g := a.GuestHandler()
	sock := filepath.Join(t.TempDir(), "from-guest.sock")
	body := fmt.Sprintf(`{"local":%q,"remote":"tcp://192.168.127.2:22","protocol":"unix"}`, sock)
	if status, text := call(g, "POST", "/services/forwarder/expose", body, "192.168.127.2:40000"); status != 403 || !strings.Contains(text, "not allowed") {
		t.Errorf("unix expose from the guest: %d %q", status, text)
	}
	if _, err := os.Stat(sock); err == nil {
		t.Error("a guest made a socket file on the host")
	}
	port := freeTCP(t)
	if status, text := call(g, "POST", "/services/forwarder/expose", fmt.Sprintf(`{"local":"127.0.0.1:%d","remote":":80"}`, port), "192.168.127.2:40000"); status != 200 {
		t.Errorf("tcp expose from the guest: %d %q", status, text)
	}
	if status, _ := call(g, "GET", "/stats", "", "192.168.127.2:40000"); status != 404 {
		t.Errorf("/stats inside the network: %d, want 404 (the forwarder only)", status)
	}
}
