package soak

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// The guest's half of the soak: this test binary, run again inside
// `slipway run` with SOAK_GUEST set, plays the namespace's load and prints
// its tallies as one JSON line.

// guestTally counts what the guest's loops did; a failure is one the
// soak reports (a connection refused, an answer wrong or missing).
type guestTally struct {
	TCPFlows, TCPFails atomic.Int64
	UDPFlows, UDPFails atomic.Int64
	Bulk, BulkFails    atomic.Int64
	DNS, DNSFails      atomic.Int64
	Published          atomic.Int64
	FirstError         atomic.Value // string
	firstErrorOnce     sync.Once
	bulkBytes          atomic.Int64
}

func (g *guestTally) fail(counter *atomic.Int64, err error) {
	counter.Add(1)
	g.firstErrorOnce.Do(func() { g.FirstError.Store(err.Error()) })
}

func (g *guestTally) MarshalJSON() ([]byte, error) {
	first, _ := g.FirstError.Load().(string)
	return json.Marshal(map[string]any{
		"tcp_flows": g.TCPFlows.Load(), "tcp_fails": g.TCPFails.Load(),
		"udp_flows": g.UDPFlows.Load(), "udp_fails": g.UDPFails.Load(),
		"bulk": g.Bulk.Load(), "bulk_fails": g.BulkFails.Load(), "bulk_bytes": g.bulkBytes.Load(),
		"dns": g.DNS.Load(), "dns_fails": g.DNSFails.Load(),
		"published_served": g.Published.Load(), "first_error": first,
	})
}

func env(k string) string { return os.Getenv("SOAK_" + k) }

// guestMain runs the load for SOAK_DURATION, then exits 0 (the tallies
// say how it went).
func guestMain() {
	d, err := time.ParseDuration(env("DURATION"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak guest: SOAK_DURATION:", err)
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var g guestTally
	var wg sync.WaitGroup
	run := func(f func(context.Context, *guestTally)) {
		wg.Add(1)
		go func() { defer wg.Done(); f(ctx, &g) }()
	}
	// The published port's server: the host's clients connect to it.
	l, err := net.Listen("tcp", ":"+env("GUEST_PORT"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak guest:", err)
		os.Exit(2)
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				if _, err := io.Copy(c, c); err == nil {
					g.Published.Add(1)
				}
			}()
		}
	}()
	run(churnTCP)
	run(churnUDP)
	run(bulk)
	run(queryDNS)
	fmt.Println("@ready")
	wg.Wait()
	l.Close()
	b, _ := json.Marshal(&g)
	fmt.Printf("@tally=%s\n", b)
	// Stay, so slipway and its API stay, until the soak has sampled the
	// quiet after the load and closes stdin.
	io.Copy(io.Discard, os.Stdin)
}

// pace runs f about rate times a second with workers goroutines until ctx
// ends.
func pace(ctx context.Context, rate float64, workers int, f func()) {
	if rate <= 0 {
		return
	}
	tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer tick.Stop()
	work := make(chan struct{})
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range work {
				f()
			}
		}()
	}
	defer func() { close(work); wg.Wait() }()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			select {
			case work <- struct{}{}:
			default: // all workers busy: skip a beat rather than queue
			}
		}
	}
}

// churnTCP opens, uses and closes short TCP flows to the host's echo
// server, SOAK_TCP_RATE a second.
func churnTCP(ctx context.Context, g *guestTally) {
	addr := "10.0.2.2:" + env("ECHO")
	rate, _ := strconv.ParseFloat(env("TCP_RATE"), 64)
	msg := []byte("soak churn ping 0123456789abcdef")
	pace(ctx, rate, 8, func() {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			g.fail(&g.TCPFails, err)
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, len(msg))
		if _, err := c.Write(msg); err != nil {
			g.fail(&g.TCPFails, err)
			return
		}
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != string(msg) {
			g.fail(&g.TCPFails, fmt.Errorf("tcp echo: %q, %v", buf, err))
			return
		}
		g.TCPFlows.Add(1)
	})
}

// churnUDP sends one datagram from a new source port each time (a new
// flow for slipway), SOAK_UDP_RATE a second, and waits for its echo.
func churnUDP(ctx context.Context, g *guestTally) {
	addr := "10.0.2.2:" + env("UDP")
	rate, _ := strconv.ParseFloat(env("UDP_RATE"), 64)
	pace(ctx, rate, 4, func() {
		c, err := net.Dial("udp", addr)
		if err != nil {
			g.fail(&g.UDPFails, err)
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(3 * time.Second))
		buf := make([]byte, 64)
		c.Write([]byte("soak"))
		n, err := c.Read(buf)
		if err != nil || string(buf[:n]) != "echo:soak" {
			g.fail(&g.UDPFails, fmt.Errorf("udp echo: %q, %v", buf[:n], err))
			return
		}
		g.UDPFlows.Add(1)
	})
}

// bulk downloads the host's blob with curl every SOAK_BULK_EVERY and
// checks its sha256.
func bulk(ctx context.Context, g *guestTally) {
	every, _ := time.ParseDuration(env("BULK_EVERY"))
	url := "http://10.0.2.2:" + env("HTTP") + "/blob"
	for {
		cmd := exec.CommandContext(ctx, "curl", "-sf", "--max-time", "120", url)
		out, err := cmd.StdoutPipe()
		if err == nil {
			err = cmd.Start()
		}
		if err == nil {
			h := sha256.New()
			n, _ := io.Copy(h, out)
			err = cmd.Wait()
			switch sum := hex.EncodeToString(h.Sum(nil)); {
			case ctx.Err() != nil:
				return // cut off by the end of the run: neither
			case err != nil:
				g.fail(&g.BulkFails, fmt.Errorf("curl: %w", err))
			case sum != env("SHA"):
				g.fail(&g.BulkFails, fmt.Errorf("blob sha256 %s after %d bytes", sum, n))
			default:
				g.Bulk.Add(1)
				g.bulkBytes.Add(n)
			}
		} else {
			g.fail(&g.BulkFails, err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
	}
}

// queryDNS asks slipway's DNS (dnsmasq behind it) for a new name under the
// test domain 5 times a second.
func queryDNS(ctx context.Context, g *guestTally) {
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, "10.0.2.3:53")
	}}
	want := env("DNS_ANSWER")
	var i atomic.Int64
	pace(ctx, 5, 2, func() {
		i := i.Add(1)
		qctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		addrs, err := r.LookupHost(qctx, fmt.Sprintf("n%d.%s", i, env("DNS_DOMAIN")))
		if err != nil || len(addrs) == 0 || addrs[0] != want {
			g.fail(&g.DNSFails, fmt.Errorf("dns: %v, %v", addrs, err))
			return
		}
		g.DNS.Add(1)
	})
}
