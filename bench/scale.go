package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/slipway-net/slipway/bench/internal/flows"
	"github.com/slipway-net/slipway/bench/internal/proc"
	"github.com/slipway-net/slipway/bench/internal/report"
)

// idleSettle is how long the open, idle flows sit before slipway's memory
// is read: long enough for the connect burst's garbage to be collected.
const idleSettle = 3 * time.Second

// runScale runs flowload through slipway at each flow count.
func (b *bench) runScale(ctx context.Context) {
	for _, n := range b.opts.scaleFlows {
		if ctx.Err() != nil {
			return
		}
		b.logf("scale: %d flows", n)
		pt, err := b.scaleRun(ctx, n)
		if err != nil {
			b.fail("scale, %d flows: %v", n, err)
			continue
		}
		b.res.Scale = append(b.res.Scale, pt)
		b.logf("  connected %d (failed %d) in %.1fs; %.2f Gbit/s, p99 %.1f ms; %.1f KiB per idle flow",
			pt.Connected, pt.ConnectFailed, pt.ConnectSeconds, pt.Gbps, pt.P99Ms, pt.PerFlowKiB)
	}
}

// scaleRun measures n flows through a fresh slipway namespace: slipway's
// memory before, with the flows open and idle, and at its peak after a
// closed-loop load on all of them.
func (b *bench) scaleRun(ctx context.Context, n int) (report.ScalePoint, error) {
	pt := report.ScalePoint{Flows: n, ResponseBytes: b.opts.scaleSize}
	inst, err := startSlipwayNS(ctx, b)
	if err != nil {
		return pt, err
	}
	defer inst.close()
	// The engine holds the flows (the launcher, with the sandbox on,
	// only waits).
	pids := inst.pids()
	pid := pids[len(pids)-1]

	srvOut, srvOutW, err := os.Pipe()
	if err != nil {
		return pt, err
	}
	defer srvOut.Close()
	srv, err := startProcess(b.logDir, "flowload-server", []string{b.flowld, "server", "-listen", "127.0.0.1:0"},
		processOpts{stdout: srvOutW})
	srvOutW.Close() // the server has its own copy; EOF when it exits
	if err != nil {
		return pt, err
	}
	defer srv.stop()
	line, err := newLineWaiter(srvOut).next("listening", readyTimeout)
	if err != nil {
		return pt, fmt.Errorf("flowload server: %w; %s", err, srv.output())
	}
	_, port, _ := strings.Cut(strings.TrimSpace(line), "127.0.0.1:")
	if _, err := strconv.Atoi(port); err != nil {
		return pt, fmt.Errorf("flowload server printed %q", line)
	}

	time.Sleep(settle)
	base, err := proc.Read(pid)
	if err != nil {
		return pt, err
	}
	pt.BaseRSSMiB = float64(base.RSSKiB) / mib

	goAhead, goWriter, err := os.Pipe()
	if err != nil {
		return pt, err
	}
	defer goWriter.Close()
	cliOut, cliOutW, err := os.Pipe()
	if err != nil {
		goAhead.Close()
		return pt, err
	}
	defer cliOut.Close()
	cli, err := startProcess(b.logDir, "flowload-client", []string{"nsenter", "--net=" + inst.netns, "--",
		b.flowld, "client", "-addr", inst.target + ":" + port, "-flows", strconv.Itoa(n),
		"-size", strconv.Itoa(b.opts.scaleSize), "-duration", b.opts.scaleDuration.String(), "-wait"},
		processOpts{stdout: cliOutW, stdin: goAhead})
	goAhead.Close()
	cliOutW.Close()
	if err != nil {
		return pt, err
	}
	defer cli.stop()
	lines := newLineWaiter(cliOut)

	// Connecting 10,000 flows through a busy machine takes a while.
	line, err = lines.next(`"connected"`, 3*time.Minute)
	if err != nil {
		return pt, fmt.Errorf("flowload client: %w; %s", err, cli.output())
	}
	var conn struct{ Connected flows.Connected }
	if err := json.Unmarshal([]byte(line), &conn); err != nil {
		return pt, fmt.Errorf("flowload client output %q: %w", line, err)
	}
	pt.Connected, pt.ConnectFailed, pt.ConnectSeconds = conn.Connected.Flows, conn.Connected.Failed, conn.Connected.Seconds
	if pt.Connected == 0 {
		return pt, fmt.Errorf("no flow connected: %s", conn.Connected.FirstError)
	}

	time.Sleep(idleSettle)
	idle, err := proc.Read(pid)
	if err != nil {
		return pt, err
	}
	pt.IdleRSSMiB = float64(idle.RSSKiB) / mib
	pt.PerFlowKiB = float64(idle.RSSKiB-base.RSSKiB) / float64(pt.Connected)

	if _, err := io.WriteString(goWriter, "go\n"); err != nil {
		return pt, fmt.Errorf("starting the load: %w", err)
	}
	line, err = lines.next(`"result"`, b.opts.scaleDuration+2*time.Minute)
	if err != nil {
		return pt, fmt.Errorf("flowload client: %w; %s", err, cli.output())
	}
	after, err := proc.Read(pid)
	if err != nil {
		return pt, err
	}
	var res struct{ Result flows.Result }
	if err := json.Unmarshal([]byte(line), &res); err != nil {
		return pt, fmt.Errorf("flowload client output %q: %w", line, err)
	}
	r := res.Result
	pt.Gbps, pt.Requests, pt.P50Ms, pt.P99Ms, pt.Errors = r.Gbps, r.Requests, r.P50Ms, r.P99Ms, r.Errors
	pt.PeakRSSMiB = float64(after.PeakRSSKiB) / mib
	if r.Bytes > 0 {
		pt.CPUSecPerGB = (after.CPU - idle.CPU).Seconds() / (float64(r.Bytes) / 1e9)
	}
	if r.Errors > 0 {
		b.res.Failures = append(b.res.Failures, fmt.Sprintf("scale, %d flows (kept): %d flows failed, first: %s",
			n, r.Errors, r.FirstError))
	}
	if pt.ConnectFailed > 0 {
		b.res.Failures = append(b.res.Failures, fmt.Sprintf("scale, %d flows (kept): %d connects failed, first: %s",
			n, pt.ConnectFailed, conn.Connected.FirstError))
	}
	return pt, nil
}
