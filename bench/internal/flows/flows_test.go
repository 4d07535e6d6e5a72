package flows

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"
)

func TestSummarize(t *testing.T) {
	ms := time.Millisecond
	results := []flowResult{
		{latencies: []time.Duration{1 * ms, 2 * ms, 3 * ms}, bytes: 3000},
		{latencies: []time.Duration{4 * ms, 5 * ms, 6 * ms, 7 * ms, 8 * ms, 9 * ms, 10 * ms}, bytes: 7000},
		{err: errors.New("read: connection reset")},
		{err: errors.New("write: broken pipe")},
	}
	got := summarize(results, 2*time.Second)
	want := Result{
		Flows: 4, Requests: 10, Bytes: 10000, Seconds: 2,
		Gbps:  10000 * 8 / 2 / 1e9,
		P50Ms: 5, P99Ms: 10, MaxMs: 10,
		Errors: 2, FirstError: "read: connection reset",
	}
	if got != want {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

func TestSummarizeNothing(t *testing.T) {
	got := summarize([]flowResult{{err: errors.New("read: EOF")}}, 0)
	if got.P99Ms != 0 || got.Gbps != 0 || got.Errors != 1 {
		t.Errorf("got %+v; want zero rates and latencies, one error", got)
	}
}

// startServer serves on the loopback until the test ends.
func startServer(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go Serve(l)
	return l
}

// TestLoopback runs the real client against the real server.
func TestLoopback(t *testing.T) {
	l := startServer(t)
	cfg := Config{Addr: l.Addr().String(), Flows: 20, ResponseSize: 4096, Duration: 200 * time.Millisecond,
		DialConcurrency: 4, DialTimeout: 5 * time.Second}
	conns, rep := Dial(context.Background(), cfg)
	if rep.Flows != 20 || rep.Failed != 0 {
		t.Fatalf("connect: %+v", rep)
	}
	res := Load(conns, cfg)
	if res.Errors != 0 || res.Requests < 20 || res.Bytes != res.Requests*(RequestSize+4096) {
		t.Fatalf("load: %+v", res)
	}
	if !(res.P50Ms > 0 && res.P50Ms <= res.P99Ms && res.P99Ms <= res.MaxMs) {
		t.Errorf("latencies out of order: %+v", res)
	}
}

func TestDialCountsFailures(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens: every connect is refused
	conns, rep := Dial(context.Background(), Config{Addr: addr, Flows: 3, DialConcurrency: 2, DialTimeout: time.Second})
	if len(conns) != 0 || rep.Flows != 0 || rep.Failed != 3 || rep.FirstError == "" {
		t.Errorf("got %d conns, %+v", len(conns), rep)
	}
}

func TestServerRefusesHugeResponse(t *testing.T) {
	l := startServer(t)
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := make([]byte, RequestSize)
	req[0] = 0xff // 4 GiB
	c.Write(req)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Errorf("server answered an oversized request: n=%d err=%v", n, err)
	}
}
