// Package flows is the scale benchmark's load: many concurrent TCP flows,
// each a closed loop of small requests answered by larger responses, so a
// run yields total throughput and a latency distribution at once.
//
// The wire protocol is deliberately trivial: a request is RequestSize
// bytes whose first four are the wanted response size (big-endian); the
// server answers with that many bytes. Nothing is parsed per byte, so the
// load tool costs little next to the path it measures.
package flows

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/slipway-net/slipway/bench/internal/stats"
)

// RequestSize is the size of every request.
const RequestSize = 64

// MaxResponse bounds what a client may ask for, so a stray connection
// cannot make the server allocate or send without limit.
const MaxResponse = 1 << 20

// Serve answers every connection l accepts until l is closed.
func Serve(l net.Listener) error {
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("accept: %w", err)
		}
		go serveConn(c)
	}
}

func serveConn(c net.Conn) {
	defer c.Close()
	req := make([]byte, RequestSize)
	// The response buffer grows to the largest size asked for on this
	// connection; its content does not matter.
	var resp []byte
	for {
		if _, err := io.ReadFull(c, req); err != nil {
			return // the client hung up (or broke the protocol)
		}
		n := int(binary.BigEndian.Uint32(req))
		if n > MaxResponse {
			return
		}
		if n > len(resp) {
			resp = make([]byte, n)
		}
		if _, err := c.Write(resp[:n]); err != nil {
			return
		}
	}
}

// Config describes a client run.
type Config struct {
	Addr  string
	Flows int
	// ResponseSize is the size of each response (bytes).
	ResponseSize int
	// Duration is how long the flows send requests.
	Duration time.Duration
	// DialConcurrency bounds connects in progress: a burst of thousands
	// of SYNs measures the listen backlog, not the path.
	DialConcurrency int
	DialTimeout     time.Duration
}

// Connected reports the connect phase.
type Connected struct {
	Flows      int     `json:"flows"`
	Failed     int     `json:"failed"`
	Seconds    float64 `json:"seconds"`
	FirstError string  `json:"first_error,omitempty"`
}

// Dial opens cfg.Flows connections to cfg.Addr. Failed connects are
// counted, not fatal: at 10,000 flows a few refusals are a result.
func Dial(ctx context.Context, cfg Config) ([]net.Conn, Connected) {
	start := time.Now()
	conc := max(cfg.DialConcurrency, 1)
	sem := make(chan struct{}, conc)
	conns := make([]net.Conn, cfg.Flows)
	errs := make([]error, cfg.Flows)
	d := net.Dialer{Timeout: cfg.DialTimeout}
	var wg sync.WaitGroup
	for i := range cfg.Flows {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			conns[i], errs[i] = d.DialContext(ctx, "tcp", cfg.Addr)
		}()
	}
	wg.Wait()
	rep := Connected{Seconds: time.Since(start).Seconds()}
	ok := conns[:0]
	for i, c := range conns {
		if errs[i] != nil {
			if rep.Failed == 0 {
				rep.FirstError = errs[i].Error()
			}
			rep.Failed++
			continue
		}
		ok = append(ok, c)
	}
	rep.Flows = len(ok)
	return ok, rep
}

// Result reports the load phase.
type Result struct {
	Flows    int     `json:"flows"`
	Requests int64   `json:"requests"`
	Bytes    int64   `json:"bytes"`
	Seconds  float64 `json:"seconds"`
	Gbps     float64 `json:"gbps"`
	// Latencies of whole request/response exchanges, in milliseconds.
	P50Ms      float64 `json:"p50_ms"`
	P99Ms      float64 `json:"p99_ms"`
	MaxMs      float64 `json:"max_ms"`
	Errors     int     `json:"errors"`
	FirstError string  `json:"first_error,omitempty"`
}

// flowResult is what one flow measured.
type flowResult struct {
	latencies []time.Duration
	bytes     int64
	err       error
}

// Load runs the request loop on every connection for cfg.Duration and
// closes them. All flows start together; each finishes the exchange it
// has in flight when the time is up.
func Load(conns []net.Conn, cfg Config) Result {
	startCh := make(chan struct{})
	results := make([]flowResult, len(conns))
	var wg sync.WaitGroup
	var start, end time.Time
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			<-startCh
			results[i] = runFlow(c, cfg.ResponseSize, end)
		}()
	}
	start = time.Now()
	end = start.Add(cfg.Duration)
	close(startCh)
	wg.Wait()
	return summarize(results, time.Since(start))
}

// runFlow is one flow's closed loop.
func runFlow(c net.Conn, size int, end time.Time) flowResult {
	var r flowResult
	req := make([]byte, RequestSize)
	binary.BigEndian.PutUint32(req, uint32(size))
	resp := make([]byte, size)
	// A stuck flow must not hold the run forever; a late one may
	// finish its last exchange.
	c.SetDeadline(end.Add(30 * time.Second))
	for time.Now().Before(end) {
		t0 := time.Now()
		if _, err := c.Write(req); err != nil {
			r.err = fmt.Errorf("write: %w", err)
			return r
		}
		if _, err := io.ReadFull(c, resp); err != nil {
			r.err = fmt.Errorf("read: %w", err)
			return r
		}
		r.latencies = append(r.latencies, time.Since(t0))
		r.bytes += int64(RequestSize + size)
	}
	return r
}

// summarize merges the flows' measurements.
func summarize(results []flowResult, elapsed time.Duration) Result {
	res := Result{Flows: len(results), Seconds: elapsed.Seconds()}
	var lat []float64
	for _, r := range results {
		res.Bytes += r.bytes
		res.Requests += int64(len(r.latencies))
		for _, d := range r.latencies {
			lat = append(lat, float64(d)/float64(time.Millisecond))
		}
		if r.err != nil {
			if res.Errors == 0 {
				res.FirstError = r.err.Error()
			}
			res.Errors++
		}
	}
	if res.Seconds > 0 {
		res.Gbps = float64(res.Bytes) * 8 / res.Seconds / 1e9
	}
	// No exchange at all leaves the latencies zero: JSON has no NaN.
	if len(lat) > 0 {
		slices.Sort(lat)
		res.P50Ms = stats.Percentile(lat, 50)
		res.P99Ms = stats.Percentile(lat, 99)
		res.MaxMs = stats.Percentile(lat, 100)
	}
	return res
}
