// Package soak is slipway's long run (make soak): `slipway run` with a
// namespace whose load never stops for the run's length — short TCP and
// UDP flows in churn, bulk downloads checked by sha256, DNS queries
// through a real dnsmasq, clients of a published port — while slipway's
// resident memory, descriptors, goroutines and flows are sampled from its
// API socket. It fails if any of them trends upward after warm-up, if the
// load saw failures, or if slipway does not come back to its idle state
// once the load stops. It writes a table (soak.md) and a plot (soak.png).
//
// It lives in the benchmark's module for the plot library, which is no
// dependency of slipway's own module.
package soak

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/slipway-net/slipway/test/testenv"
)

var (
	soakFor   = flag.Duration("soak", 3*time.Minute, "how long the load runs (make soak: 1h)")
	soakFlows = flag.Int("soak.flows", 10000, "short flows to open and close over the run")
	soakOut   = flag.String("soak.out", "", "directory for soak.md and soak.png (default: the test's temporary directory)")
	soakEvery = flag.Duration("soak.every", 0, "sampling interval (default: the run's length / 150, 2 s at least)")
)

func TestMain(m *testing.M) {
	if os.Getenv("SOAK_GUEST") != "" {
		guestMain()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// quiet is how long the soak samples slipway after the load stopped: long
// enough for the UDP flows' idle timeout (set to 5 s below) and TCP's
// TIME-WAIT-less close to have emptied the flow table.
const quiet = 20 * time.Second

func TestSoak(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "curl", "dnsmasq")
	d := *soakFor
	flows := *soakFlows
	every := *soakEvery
	if every == 0 {
		every = max(2*time.Second, d/150)
	}
	out := *soakOut
	if out == "" {
		out = t.TempDir()
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}

	dns := testenv.Dnsmasq(t)
	web, sum := testenv.HTTPFile(t, 64<<20)
	udp := testenv.UDPEcho(t)
	echo := testenv.TCPServer(t, func(c net.Conn) {
		defer c.Close()
		c.SetDeadline(time.Now().Add(30 * time.Second))
		io.Copy(c, c)
	})
	hostPort := testenv.FreePort(t, "tcp")
	api := filepath.Join(t.TempDir(), "api.sock")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// Two thirds of the short flows are TCP, a third UDP.
	rate := float64(flows) / d.Seconds()
	cmd := exec.Command(buildSlipway(t), "run", "--api-socket", api, "--dns-upstream", dns.String(),
		"--udp-idle-timeout", "5s", "--log-level", "warn",
		"-p", fmt.Sprintf("127.0.0.1:%d:7000", hostPort), "--", self)
	cmd.Env = append(os.Environ(), "SOAK_GUEST=1", "SOAK_DURATION="+d.String(), "SOAK_GUEST_PORT=7000",
		"SOAK_ECHO="+strconv.Itoa(int(echo.Port())), "SOAK_TCP_RATE="+strconv.FormatFloat(rate*2/3, 'f', 3, 64),
		"SOAK_UDP="+strconv.Itoa(int(udp.Port())), "SOAK_UDP_RATE="+strconv.FormatFloat(rate/3, 'f', 3, 64),
		"SOAK_HTTP="+strconv.Itoa(int(web.Port())), "SOAK_SHA="+sum, "SOAK_BULK_EVERY="+(d/12).String(),
		"SOAK_DNS_DOMAIN="+testenv.TestDomain, "SOAK_DNS_ANSWER="+testenv.TestDomainAddr)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	select {
	case l := <-lines:
		if l != "@ready" {
			t.Fatalf("the guest said %q, not @ready\n%s", l, stderr.String())
		}
	case <-time.After(time.Minute):
		t.Fatalf("the guest did not start\n%s", stderr.String())
	}
	t.Logf("soak: %v of load, %d short flows (%.1f/s), sampling every %v, results in %s", d, flows, rate, every, out)

	// The published port's clients, for as long as the load runs.
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var pubOK, pubFail atomic.Int64
	go publishedClients(ctx, fmt.Sprintf("127.0.0.1:%d", hostPort), &pubOK, &pubFail)

	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", api)
	}}, Timeout: 10 * time.Second}
	start := time.Now()
	var samples []sample
	var tally string
	tick := time.NewTicker(every)
	defer tick.Stop()
	end := start.Add(d + quiet)
	for time.Now().Before(end) {
		select {
		case l, ok := <-lines:
			if !ok {
				lines = nil
				continue
			}
			if v, found := strings.CutPrefix(l, "@tally="); found {
				tally = v
			}
			continue
		case <-tick.C:
		}
		s, err := scrape(client)
		if err != nil {
			t.Fatalf("sampling slipway at %v: %v\n%s", time.Since(start).Round(time.Second), err, stderr.String())
		}
		s.At = time.Since(start)
		s.Load = s.At < d
		samples = append(samples, s)
	}
	// The guest's command ends when told, slipway with it.
	for tally == "" {
		l, ok := <-lines
		if !ok {
			break
		}
		if v, found := strings.CutPrefix(l, "@tally="); found {
			tally = v
		}
	}
	stdin.Close()
	werr := cmd.Wait()

	rep := report{Duration: d, Every: every, Samples: samples, PublishedOK: pubOK.Load(), PublishedFail: pubFail.Load()}
	if err := json.Unmarshal([]byte(tally), &rep.Guest); err != nil {
		t.Errorf("no tally from the guest (%v): %q\n%s", err, tally, stderr.String())
	}
	rep.Verdicts = judge(samples)
	if err := rep.write(out); err != nil {
		t.Error(err)
	}
	t.Logf("\n%s", rep.table())
	if werr != nil {
		t.Errorf("slipway run: %v\n%s", werr, stderr.String())
	}
	for _, v := range rep.Verdicts {
		if !v.OK {
			t.Errorf("%s: %s", v.Metric, v.Why)
		}
	}
	g := rep.Guest
	opened := g.TCPFlows + g.UDPFlows
	if opened < int64(flows)*9/10 {
		t.Errorf("the guest completed %d short flows, want about %d", opened, flows)
	}
	if fails := g.TCPFails + g.UDPFails + g.BulkFails + g.DNSFails + rep.PublishedFail; fails > 0 {
		t.Errorf("%d failures under load (tcp %d, udp %d, bulk %d, dns %d, published %d); the first: %s",
			fails, g.TCPFails, g.UDPFails, g.BulkFails, g.DNSFails, rep.PublishedFail, g.FirstError)
	}
	if g.Bulk == 0 || g.DNS == 0 || rep.PublishedOK == 0 {
		t.Errorf("a load did not run: %d downloads, %d DNS answers, %d published-port exchanges", g.Bulk, g.DNS, rep.PublishedOK)
	}
}

// buildSlipway builds the slipway of the tree around this module
// (testenv.Slipway would look for it in the benchmark's module).
func buildSlipway(t *testing.T) string {
	bin := filepath.Join(t.TempDir(), "slipway")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/slipway")
	cmd.Dir = "../.."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// publishedClients connects to the published port 10 times a second,
// exchanges a line with the guest's echo server and closes.
func publishedClients(ctx context.Context, addr string, ok, fail *atomic.Int64) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	msg := []byte("published port ping\n")
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			fail.Add(1)
			continue
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, len(msg))
		_, err = c.Write(msg)
		if err == nil {
			_, err = io.ReadFull(c, buf)
		}
		c.Close()
		if err != nil || string(buf) != string(msg) {
			if ctx.Err() == nil {
				fail.Add(1)
			}
			continue
		}
		ok.Add(1)
	}
}

// sample is one reading of slipway's resources.
type sample struct {
	At         time.Duration
	Load       bool // the load was running
	RSSMiB     float64
	FDs        float64
	Goroutines float64
	Flows      float64
}

func (s sample) value(m string) float64 {
	switch m {
	case "rss_mib":
		return s.RSSMiB
	case "fds":
		return s.FDs
	case "goroutines":
		return s.Goroutines
	default:
		return s.Flows
	}
}

var metrics = []string{"rss_mib", "fds", "goroutines", "flows"}

// scrape reads one sample from slipway's /metrics.
func scrape(c *http.Client) (sample, error) {
	resp, err := c.Get("http://slipway/metrics")
	if err != nil {
		return sample{}, err
	}
	defer resp.Body.Close()
	var s sample
	found := 0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") {
			continue
		}
		v, err := strconv.ParseFloat(val, 64)
		if err != nil {
			continue
		}
		switch name {
		case "process_resident_memory_bytes":
			s.RSSMiB = v / (1 << 20)
		case "process_open_fds":
			s.FDs = v
		case "go_goroutines":
			s.Goroutines = v
		case `slipway_flows{key="",name="total"}`:
			s.Flows = v
		default:
			continue
		}
		found++
	}
	if found != 4 {
		return s, fmt.Errorf("%d of the 4 metrics found", found)
	}
	return s, sc.Err()
}
