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
	"github.com/slipway-net/slipway/test/vmtest"
)

var (
	soakFor   = flag.Duration("soak", 3*time.Minute, "how long the load runs (make soak: 1h)")
	soakFlows = flag.Int("soak.flows", 10000, "short flows to open and close over the run")
	soakOut   = flag.String("soak.out", "", "directory for soak.md and soak.png (default: the test's temporary directory)")
	soakEvery = flag.Duration("soak.every", 0, "sampling interval (default: the run's length / 150, 2 s at least)")
	soakVM    = flag.Bool("soak.vm", true, "boot a QEMU guest again and again on a stream socket beside the namespace")
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
	cmd := exec.Command(testenv.Slipway(t), "run", "--api-socket", api, "--dns-upstream", dns.String(),
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
	var pubErr atomic.Value
	// They stop a little before the guest's server does (its clock
	// started before @ready), so no client meets it closed.
	pubCtx, pubCancel := context.WithTimeout(ctx, d-3*time.Second)
	defer pubCancel()
	go publishedClients(pubCtx, fmt.Sprintf("127.0.0.1:%d", hostPort), &pubOK, &pubFail, &pubErr)
	var vm *vmLoad
	if *soakVM {
		vm = startVMLoad(ctx, t, dns.String(), web.Port(), sum, d)
	}

	client := unixClient(api)
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
		if err == nil && vm != nil {
			var v sample
			v, err = scrape(vm.api)
			s.VMRSSMiB, s.VMFDs, s.VMGoroutines, s.VMFlows = v.RSSMiB, v.FDs, v.Goroutines, v.Flows
		}
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
	if vm != nil {
		vm.wait()
		rep.VMBoots, rep.VMFails, rep.VMError = vm.ok.Load(), vm.fail.Load(), vm.firstError()
	}
	rep.Verdicts = judge(samples, vm != nil)
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
	pubFirst, _ := pubErr.Load().(string)
	opened := g.TCPFlows + g.UDPFlows
	if opened < int64(flows)*9/10 {
		t.Errorf("the guest completed %d short flows, want about %d", opened, flows)
	}
	if fails := g.TCPFails + g.UDPFails + g.BulkFails + g.DNSFails + rep.PublishedFail; fails > 0 {
		t.Errorf("%d failures under load (tcp %d, udp %d, bulk %d, dns %d, published %d); the first: %s",
			fails, g.TCPFails, g.UDPFails, g.BulkFails, g.DNSFails, rep.PublishedFail, g.FirstError+" "+pubFirst)
	}
	if vm != nil && (rep.VMFails > 0 || rep.VMBoots < 2) {
		t.Errorf("the VM booted and passed %d times, failed %d times: %s", rep.VMBoots, rep.VMFails, rep.VMError)
	}
	if g.Bulk == 0 || g.DNS == 0 || rep.PublishedOK == 0 {
		t.Errorf("a load did not run: %d downloads, %d DNS answers, %d published-port exchanges", g.Bulk, g.DNS, rep.PublishedOK)
	}
}

// publishedClients connects to the published port 10 times a second,
// exchanges a line with the guest's echo server and closes.
func publishedClients(ctx context.Context, addr string, ok, fail *atomic.Int64, firstErr *atomic.Value) {
	start := time.Now()
	failed := func(err error) {
		fail.Add(1)
		firstErr.CompareAndSwap(nil, fmt.Sprintf("at %v: %v", time.Since(start).Round(time.Second), err))
	}
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
			if ctx.Err() == nil {
				failed(err)
			}
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
				failed(fmt.Errorf("echo %q: %v", buf, err))
			}
			continue
		}
		ok.Add(1)
	}
}

// sample is one reading of slipway's resources, and of the VM's slipway.
type sample struct {
	At                                     time.Duration
	Load                                   bool // the load was running
	RSSMiB, FDs, Goroutines, Flows         float64
	VMRSSMiB, VMFDs, VMGoroutines, VMFlows float64
}

func (s sample) value(m string) float64 {
	switch m {
	case "vm_rss_mib":
		return s.VMRSSMiB
	case "vm_fds":
		return s.VMFDs
	case "vm_goroutines":
		return s.VMGoroutines
	case "vm_flows":
		return s.VMFlows
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

var (
	metrics   = []string{"rss_mib", "fds", "goroutines", "flows"}
	vmMetrics = []string{"vm_rss_mib", "vm_fds", "vm_goroutines", "vm_flows"}
)

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

// vmLoad is the QEMU guest's part of the soak: `slipway serve` on a
// stream socket (`slipway run` serves no VM endpoint), and the test guest
// booted on it again and again with the same MAC, so every boot after the
// first is a VMM reconnecting: it must get its lease again, reach the
// host and download a file with the right sha256.
type vmLoad struct {
	api      *http.Client
	ok, fail atomic.Int64
	firstErr atomic.Value
	done     chan struct{}
}

func (v *vmLoad) firstError() string { s, _ := v.firstErr.Load().(string); return s }

func (v *vmLoad) wait() { <-v.done }

func startVMLoad(ctx context.Context, t *testing.T, dns string, webPort uint16, sum string, d time.Duration) *vmLoad {
	testenv.RequireTools(t, "qemu-system-x86_64")
	guest := vmtest.Build(t)
	dir := t.TempDir()
	sock, api := filepath.Join(dir, "vm.sock"), filepath.Join(dir, "vm-api.sock")
	testenv.Serve(t, "--listen", "stream:unix:"+sock, "--dns-upstream", dns, "--api-socket", api, "--log-level", "warn")
	v := &vmLoad{api: unixClient(api), done: make(chan struct{})}
	// A boot every few minutes in a long run, four or so in a short one.
	every := min(3*time.Minute, max(d/4, 30*time.Second))
	opts := vmtest.Options{
		Netdev: []string{"-netdev", "stream,id=n0,server=off,addr.type=unix,addr.path=" + sock,
			"-device", "virtio-net-pci,netdev=n0,mac=52:54:00:50:4b:01"},
		Script: fmt.Sprintf(`echo "@sha=$(wget -q -O - http://10.0.2.2:%d/blob | sha256sum | cut -d' ' -f1)"`, webPort),
	}
	go func() {
		defer close(v.done)
		for {
			next := time.Now().Add(every)
			vm, err := vmtest.Boot(guest, opts, dir)
			var res vmtest.Result
			if err == nil {
				res, err = vm.Wait()
			}
			switch got := testenv.Markers(res.Console)["sha"]; {
			case err != nil:
				v.failed(fmt.Errorf("boot: %w", err))
			case res.Lease["ip"] != "10.0.2.15":
				v.failed(fmt.Errorf("lease %v", res.Lease))
			case got != sum:
				v.failed(fmt.Errorf("download sha256 %q, want %s", got, sum))
			default:
				v.ok.Add(1)
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Until(next)):
			}
		}
	}()
	return v
}

func (v *vmLoad) failed(err error) {
	v.fail.Add(1)
	v.firstErr.CompareAndSwap(nil, err.Error())
}

// unixClient is an HTTP client of the API socket at path.
func unixClient(path string) *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}, Timeout: 10 * time.Second}
}
