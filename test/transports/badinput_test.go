package transports

import (
	"crypto/rand"
	"encoding/binary"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slipway-net/slipway/config"
	"github.com/slipway-net/slipway/internal/endpoint"
	"github.com/slipway-net/slipway/link"
	"github.com/slipway-net/slipway/network"
	"github.com/slipway-net/slipway/test/guestpeer"
	"github.com/slipway-net/slipway/test/testenv"
)

// recorder keeps every link a listener hands out, so the test can read a
// link's counters after the switch has dropped its port.
type recorder struct {
	endpoint.Listener
	mu    sync.Mutex
	links []link.Link
}

func (r *recorder) Accept() (link.Link, error) {
	l, err := r.Listener.Accept()
	if err == nil {
		r.mu.Lock()
		r.links = append(r.links, l)
		r.mu.Unlock()
	}
	return l, err
}

func (r *recorder) counters(i int) *link.Counters {
	r.mu.Lock()
	defer r.mu.Unlock()
	if i >= len(r.links) {
		return nil
	}
	return r.links[i].Counters()
}

// eventually waits for cond, failing the test with what after a while.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Hostile peers on every kind of endpoint: bad lengths, garbage, peers
// that vanish mid-frame, oversized and empty messages. Each is logged and
// counted, and a good VM on the same network downloads undisturbed.
func TestBadInput(t *testing.T) {
	web, sum := testenv.HTTPFile(t, blobSize)
	dir := t.TempDir()
	var logs testenv.Output
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	n, err := network.New(config.Config{}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	listen := func(kind, name string) (*recorder, string) {
		path := filepath.Join(dir, name)
		l, err := endpoint.ListenLogged(endpoint.Spec{Kind: endpoint.Kind(kind), Network: "unix", Address: path}, log)
		if err != nil {
			t.Fatal(err)
		}
		r := &recorder{Listener: l}
		go n.Serve(r)
		return r, path
	}
	streams, streamPath := listen("stream", "s.sock")
	_, dgramPath := listen("dgram", "d.sock")
	seqs, seqPath := listen("seqpacket", "q.sock")

	good := guestpeer.New(t, guestpeer.DialDatagram(t, dgramPath, true, false), "52:54:00:00:09:01")
	online(t, good)

	// Stream peers, each ending its own link.
	garbage := make([]byte, 4096)
	rand.Read(garbage)
	garbage[0] = 0xff // a length no frame has
	for i, wire := range [][]byte{
		binary.BigEndian.AppendUint32(nil, 0),
		binary.BigEndian.AppendUint32(nil, 70000),
		garbage,
		append(binary.BigEndian.AppendUint32(nil, 500), make([]byte, 100)...), // then gone
	} {
		c, err := net.Dial("unix", streamPath)
		if err != nil {
			t.Fatal(err)
		}
		c.Write(wire)
		c.Close()
		eventually(t, "stream link counts its bad framing", func() bool {
			c := streams.counters(i)
			return c != nil && c.RxBadFraming.Load() == 1
		})
	}

	// A datagram peer sending oversized and empty datagrams stays a
	// port; its drops are counted there.
	bad := guestpeer.DialDatagram(t, dgramPath, true, false)
	for _, msg := range [][]byte{make([]byte, 70000), {}, {}, []byte("short")} {
		if err := bad.Send(msg); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "datagram drops counted on the bad peer's port", func() bool {
		for _, l := range n.Links() {
			if strings.Contains(l.Name, bad.Path) {
				return l.Counter("runt") == 3 && l.Counter("rx_oversized") == 1
			}
		}
		return false
	})

	// A UML-style peer sends the same; an empty seqpacket message is a
	// runt, not a hang-up, until the peer really leaves.
	q, err := net.Dial("unixpacket", seqPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, msg := range [][]byte{make([]byte, 70000), {}, []byte("short")} {
		q.Write(msg)
	}
	eventually(t, "seqpacket drops counted", func() bool {
		c := seqs.counters(0)
		return c != nil && c.RxOversized.Load() == 1
	})
	q.Close()

	download(t, good, web, sum)
	out := logs.String()
	for _, want := range []string{"frame length out of range: 0", "frame length out of range: 70000", "peer closed mid-frame"} {
		if !strings.Contains(out, want) {
			t.Errorf("log has no %q", want)
		}
	}
	// The seqpacket peer's end is logged with its reason: its hang-up,
	// or a send that found it gone, whichever slipway saw first.
	ended := false
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, `"link ended"`) && strings.Contains(line, seqPath) &&
			(strings.Contains(line, "peer closed the connection") || strings.Contains(line, "broken pipe")) {
			ended = true
		}
	}
	if !ended {
		t.Error("the seqpacket peer's end was not logged with a reason")
	}
	if t.Failed() {
		t.Logf("log:\n%s", out)
	}
}
