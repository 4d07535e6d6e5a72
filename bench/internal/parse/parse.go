// Package parse reads the output of the tools the benchmark drives:
// iperf3's JSON, sockperf's and wrk's text reports, and ldd's library
// list. Each parser returns an error naming what was missing rather than
// a zero that would end up in the results as a real measurement.
package parse

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Iperf3 is the part of an iperf3 -J report the benchmark uses. Rates are
// the receiver's: with -R the receiver is the client, without it the
// server, and in both cases the receiver's count is what actually got
// through.
type Iperf3 struct {
	// BitsPerSecond is the received rate.
	BitsPerSecond float64
	// Bytes is how many bytes the receiver got.
	Bytes int64
	// Seconds is the receiver's measuring interval.
	Seconds float64
	// Retransmits is the TCP sender's retransmission count (0 for UDP).
	Retransmits int64
	// UDP reports are datagram tests; LostPercent is only set for them.
	UDP         bool
	LostPercent float64
}

// iperf3Sum mirrors one end.sum* object of the JSON report.
type iperf3Sum struct {
	Seconds       float64  `json:"seconds"`
	Bytes         int64    `json:"bytes"`
	BitsPerSecond float64  `json:"bits_per_second"`
	Retransmits   int64    `json:"retransmits"`
	LostPercent   *float64 `json:"lost_percent"`
	Packets       *int64   `json:"packets"`
}

type iperf3Report struct {
	Error string `json:"error"`
	End   struct {
		Sum         *iperf3Sum `json:"sum"`
		SumSent     *iperf3Sum `json:"sum_sent"`
		SumReceived *iperf3Sum `json:"sum_received"`
	} `json:"end"`
}

// ParseIperf3 reads an iperf3 -J report (TCP or UDP, either direction).
// A report carrying iperf3's own "error" field is returned as that error.
func ParseIperf3(data []byte) (Iperf3, error) {
	var r iperf3Report
	if err := json.Unmarshal(data, &r); err != nil {
		return Iperf3{}, fmt.Errorf("iperf3 JSON: %w", err)
	}
	if r.Error != "" {
		return Iperf3{}, fmt.Errorf("iperf3: %s", r.Error)
	}
	recv := r.End.SumReceived
	if recv == nil {
		return Iperf3{}, errors.New("iperf3 JSON: no end.sum_received")
	}
	if recv.Seconds <= 0 {
		return Iperf3{}, errors.New("iperf3 JSON: end.sum_received covers no time")
	}
	res := Iperf3{
		BitsPerSecond: recv.BitsPerSecond,
		Bytes:         recv.Bytes,
		Seconds:       recv.Seconds,
	}
	if s := r.End.SumSent; s != nil {
		res.Retransmits = s.Retransmits
	}
	// UDP reports count packets; TCP ones never do.
	if recv.Packets != nil {
		res.UDP = true
		if recv.LostPercent != nil {
			res.LostPercent = *recv.LostPercent
		}
	}
	return res, nil
}

// Sockperf is a sockperf ping-pong summary. Latencies are in microseconds
// and, as sockperf reports them, half the round trip.
type Sockperf struct {
	AvgUsec      float64
	Observations int64
	// Percentiles maps the percentile sockperf printed (50, 99, 99.9, ...)
	// to its latency.
	Percentiles map[float64]float64
}

var (
	// sockperf colours some lines; the escapes sit inside the numbers'
	// lines, so they go before matching.
	ansiEscape      = regexp.MustCompile(`\x1b\[[0-9;]*m`)
	sockperfAvg     = regexp.MustCompile(`avg-latency=([0-9.]+)`)
	sockperfObs     = regexp.MustCompile(`Total (\d+) observations`)
	sockperfPercent = regexp.MustCompile(`percentile ([0-9.]+) =\s*([0-9.]+)`)
)

// ParseSockperf reads the text sockperf ping-pong prints.
func ParseSockperf(out string) (Sockperf, error) {
	out = ansiEscape.ReplaceAllString(out, "")
	m := sockperfAvg.FindStringSubmatch(out)
	if m == nil {
		return Sockperf{}, fmt.Errorf("sockperf: no avg-latency in output: %s", tail(out))
	}
	avg, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return Sockperf{}, fmt.Errorf("sockperf avg-latency %q: %w", m[1], err)
	}
	res := Sockperf{AvgUsec: avg, Percentiles: map[float64]float64{}}
	if m := sockperfObs.FindStringSubmatch(out); m != nil {
		res.Observations, _ = strconv.ParseInt(m[1], 10, 64)
	}
	for _, m := range sockperfPercent.FindAllStringSubmatch(out, -1) {
		p, err1 := strconv.ParseFloat(m[1], 64)
		v, err2 := strconv.ParseFloat(m[2], 64)
		if err1 != nil || err2 != nil {
			return Sockperf{}, fmt.Errorf("sockperf percentile line %q", m[0])
		}
		res.Percentiles[p] = v
	}
	return res, nil
}

// Wrk is a wrk run's summary.
type Wrk struct {
	RequestsPerSec float64
	Requests       int64
	// Socket errors wrk counted, and responses that were not 2xx/3xx.
	ConnectErrors, ReadErrors, WriteErrors, Timeouts int64
	Non2xx3xx                                        int64
}

// Errors is the total of every kind of failed request.
func (w Wrk) Errors() int64 {
	return w.ConnectErrors + w.ReadErrors + w.WriteErrors + w.Timeouts + w.Non2xx3xx
}

var (
	wrkRate     = regexp.MustCompile(`(?m)^Requests/sec:\s*([0-9.]+)`)
	wrkRequests = regexp.MustCompile(`(?m)^\s*(\d+) requests in `)
	wrkSocket   = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	wrkNon2xx   = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
)

// ParseWrk reads wrk's text report.
func ParseWrk(out string) (Wrk, error) {
	m := wrkRate.FindStringSubmatch(out)
	if m == nil {
		return Wrk{}, fmt.Errorf("wrk: no Requests/sec in output: %s", tail(out))
	}
	var res Wrk
	var err error
	if res.RequestsPerSec, err = strconv.ParseFloat(m[1], 64); err != nil {
		return Wrk{}, fmt.Errorf("wrk Requests/sec %q: %w", m[1], err)
	}
	if m := wrkRequests.FindStringSubmatch(out); m != nil {
		res.Requests, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if m := wrkSocket.FindStringSubmatch(out); m != nil {
		for i, dst := range []*int64{&res.ConnectErrors, &res.ReadErrors, &res.WriteErrors, &res.Timeouts} {
			*dst, _ = strconv.ParseInt(m[i+1], 10, 64)
		}
	}
	if m := wrkNon2xx.FindStringSubmatch(out); m != nil {
		res.Non2xx3xx, _ = strconv.ParseInt(m[1], 10, 64)
	}
	return res, nil
}

// LddPaths returns the absolute paths of the libraries and loader in ldd
// output ("name => /path (addr)" and "/path (addr)" lines), in order,
// skipping the vDSO, which has no file.
func LddPaths(out string) []string {
	var paths []string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		for _, f := range strings.Fields(sc.Text()) {
			if strings.HasPrefix(f, "/") {
				paths = append(paths, f)
				break
			}
		}
	}
	return paths
}

// tail keeps error messages short when a tool printed a lot.
func tail(s string) string {
	s = strings.TrimSpace(s)
	const max = 300
	if len(s) > max {
		return "..." + s[len(s)-max:]
	}
	return s
}
