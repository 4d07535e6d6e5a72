// Package report holds the benchmark's results and renders them: a
// markdown report (medians with min–max, slipway's ratio to every other
// backend, the targets, resources, the scale runs) and a PNG bar
// chart. Results round-trip through JSON so a report can be re-rendered
// without re-running the benchmark.
package report

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"time"

	"github.com/slipway-net/slipway/bench/internal/stats"
)

// Metric keys of Sample.Metric.
const (
	TCPOut   = "tcp_out"   // guest→host TCP, Gbit/s
	TCPIn    = "tcp_in"    // host→guest TCP, Gbit/s
	Latency  = "latency"   // sockperf ping-pong average, µs (half round trip)
	ConnRate = "conn_rate" // HTTP requests/s, a new connection each
	UDP      = "udp"       // guest→host UDP received, Gbit/s
	UDPLoss  = "udp_loss"  // percent of datagrams lost in the UDP test
	// UDPIn and UDPInLoss are the host→guest UDP test's: what the
	// guest received, and the share of datagrams it never got.
	UDPIn     = "udp_in"
	UDPInLoss = "udp_in_loss"
	RSSIdle   = "rss_idle" // backend's resident memory before any test, MiB
	RSSPeak   = "rss_peak" // backend's peak resident memory over the round, MiB
	CPUOut    = "cpu_out"  // backend's CPU seconds per GB in the guest→host TCP test
	CPUIn     = "cpu_in"   // backend's CPU seconds per GB in the host→guest TCP test
)

// Group keys, and the backends the targets name.
const (
	GroupNS = "ns"
	GroupVM = "vm"

	Slipway = "slipway"
	// slipway with its sandbox off and strict: what the default
	// sandbox costs, and what strict mode's broker round trip per
	// new flow costs.
	SlipwayNoSandbox = "slipway-nosandbox"
	SlipwayStrict    = "slipway-strict"
	// slipway with a single-queue TAP: what a reader per CPU buys.
	SlipwayOneQueue = "slipway-1q"
	Veth            = "veth"
	Pasta           = "pasta"
	Slirp4netns     = "slirp4netns"
	Passt           = "passt"
	QEMUUser        = "qemu-user"
	// QEMU's -netdev user on slipway's libslirp.so.0, in its two shapes.
	QEMUUserSlipway        = "qemu-user-slipway"
	QEMUUserSlipwayProcess = "qemu-user-slipway-process"
	// The default shape with the MTU a user can opt into.
	QEMUUserSlipwayBig = "qemu-user-slipway-65520"
	// The VM group's vhost-user rows: the guest's rings in shared
	// memory instead of a socket QEMU copies frames through.
	SlipwayVhost = "slipway-vhost"
	PasstVhost   = "passt-vhost"
)

// Sample is one measurement.
type Sample struct {
	Group   string  `json:"group"`
	Backend string  `json:"backend"`
	Round   int     `json:"round"`
	Metric  string  `json:"metric"`
	Value   float64 `json:"value"`
}

// Group is one set of backends compared with each other.
type Group struct {
	Key   string `json:"key"`
	Title string `json:"title"`
	// Guest names the guest in column titles ("ns", "VM").
	Guest string `json:"guest"`
	// Backends in display order; slipway first.
	Backends []string `json:"backends"`
	// Notes say how each backend was configured.
	Notes map[string]string `json:"notes,omitempty"`
}

// ScalePoint is one scale run: N concurrent flows through slipway.
type ScalePoint struct {
	Flows          int     `json:"flows"`
	Connected      int     `json:"connected"`
	ConnectFailed  int     `json:"connect_failed"`
	ConnectSeconds float64 `json:"connect_seconds"`
	// Slipway's resident memory with no flows, with all flows open and
	// idle, and its peak by the end of the load.
	BaseRSSMiB  float64 `json:"base_rss_mib"`
	IdleRSSMiB  float64 `json:"idle_rss_mib"`
	PerFlowKiB  float64 `json:"per_flow_kib"`
	PeakRSSMiB  float64 `json:"peak_rss_mib"`
	Gbps        float64 `json:"gbps"`
	Requests    int64   `json:"requests"`
	P50Ms       float64 `json:"p50_ms"`
	P99Ms       float64 `json:"p99_ms"`
	Errors      int     `json:"errors"`
	CPUSecPerGB float64 `json:"cpu_s_per_gb"`
	// ResponseBytes is each request's response size.
	ResponseBytes int `json:"response_bytes"`
}

// Results is everything one benchmark run measured.
type Results struct {
	Date    time.Time `json:"date"`
	Machine string    `json:"machine"`
	Command string    `json:"command"`
	Rounds  int       `json:"rounds"`
	// TestSeconds is each timed test's duration.
	TestSeconds float64      `json:"test_seconds"`
	Versions    []string     `json:"versions,omitempty"`
	Groups      []Group      `json:"groups"`
	Samples     []Sample     `json:"samples"`
	Scale       []ScalePoint `json:"scale,omitempty"`
	// Failures lists measurements that failed, one line each.
	Failures []string `json:"failures,omitempty"`
	// Elapsed is the whole run's wall time.
	Elapsed float64 `json:"elapsed_seconds"`
}

// Add records a sample.
func (r *Results) Add(group, backend string, round int, metric string, value float64) {
	r.Samples = append(r.Samples, Sample{Group: group, Backend: backend, Round: round, Metric: metric, Value: value})
}

// Summary reduces the samples of one backend and metric over rounds.
func (r *Results) Summary(group, backend, metric string) (stats.Summary, bool) {
	var xs []float64
	for _, s := range r.Samples {
		if s.Group == group && s.Backend == backend && s.Metric == metric {
			xs = append(xs, s.Value)
		}
	}
	return stats.Summarize(xs)
}

// Median is the median of one backend's metric, NaN when it has none.
func (r *Results) Median(group, backend, metric string) float64 {
	s, ok := r.Summary(group, backend, metric)
	if !ok {
		return math.NaN()
	}
	return s.Median
}

// Group returns the group with key, if present.
func (r *Results) Group(key string) (Group, bool) {
	for _, g := range r.Groups {
		if g.Key == key {
			return g, true
		}
	}
	return Group{}, false
}

// Save writes r as indented JSON.
func (r *Results) Save(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding results: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing results: %w", err)
	}
	return nil
}

// Load reads results written by Save.
func Load(path string) (Results, error) {
	var r Results
	b, err := os.ReadFile(path)
	if err != nil {
		return r, fmt.Errorf("reading results: %w", err)
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("decoding results %s: %w", path, err)
	}
	return r, nil
}
