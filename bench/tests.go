package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/slipway-net/slipway/bench/internal/parse"
	"github.com/slipway-net/slipway/bench/internal/report"
)

// ports are where the host's servers listen.
type ports struct {
	iperf, sockperf, http int
}

// measurement is what one test run yielded: metric values, and for the
// throughput tests the bytes moved (to charge CPU time per GB).
type measurement struct {
	values map[string]float64
	bytes  int64
	// warning is a problem worth reporting that did not void the
	// measurement (wrk's failed requests).
	warning string
}

// testDef is one test: the client command run in the guest against the
// host's servers, and how to read its output. The same definition runs
// in a namespace (nsenter) and in a VM (the guest's script).
type testDef struct {
	name  string // the metric it yields
	args  func(target string, p ports, s settings) []string
	parse func(out string) (measurement, error)
}

// settings are the knobs the tests take from the command line.
type settings struct {
	duration time.Duration
	udpRate  string
	// wrkConns is wrk's connection count; each request opens a new one.
	wrkConns int
}

func secs(d time.Duration) string { return strconv.Itoa(int(d.Round(time.Second) / time.Second)) }

func allTests() []testDef {
	return []testDef{
		{report.TCPOut, func(t string, p ports, s settings) []string {
			return []string{"iperf3", "-c", t, "-p", strconv.Itoa(p.iperf), "-t", secs(s.duration), "-J"}
		}, parseTCP(report.TCPOut)},
		{report.TCPIn, func(t string, p ports, s settings) []string {
			return []string{"iperf3", "-c", t, "-p", strconv.Itoa(p.iperf), "-t", secs(s.duration), "-J", "-R"}
		}, parseTCP(report.TCPIn)},
		{report.Latency, func(t string, p ports, s settings) []string {
			return []string{"sockperf", "ping-pong", "--tcp", "-i", t, "-p", strconv.Itoa(p.sockperf), "-t", secs(s.duration)}
		}, parseLatency},
		{report.ConnRate, func(t string, p ports, s settings) []string {
			return []string{"wrk", "-t1", "-c" + strconv.Itoa(s.wrkConns), "-d" + secs(s.duration) + "s",
				"-H", "Connection: close", fmt.Sprintf("http://%s:%d/", t, p.http)}
		}, parseConnRate},
		// 1400-byte datagrams fit every backend's MTU, including
		// libslirp's 1500, and are what real UDP applications send.
		{report.UDP, func(t string, p ports, s settings) []string {
			return []string{"iperf3", "-c", t, "-p", strconv.Itoa(p.iperf), "-u", "-b", s.udpRate, "-l", "1400",
				"-t", secs(s.duration), "-J"}
		}, parseUDP(report.UDP, report.UDPLoss)},
		// The same the other way (-R): the host's iperf3 sends, the
		// guest receives and counts what never came.
		{report.UDPIn, func(t string, p ports, s settings) []string {
			return []string{"iperf3", "-c", t, "-p", strconv.Itoa(p.iperf), "-u", "-b", s.udpRate, "-l", "1400",
				"-t", secs(s.duration), "-J", "-R"}
		}, parseUDP(report.UDPIn, report.UDPInLoss)},
	}
}

func parseTCP(metric string) func(string) (measurement, error) {
	return func(out string) (measurement, error) {
		r, err := parse.ParseIperf3([]byte(out))
		if err != nil {
			return measurement{}, err
		}
		return measurement{values: map[string]float64{metric: r.BitsPerSecond / 1e9}, bytes: r.Bytes}, nil
	}
}

func parseUDP(metric, loss string) func(string) (measurement, error) {
	return func(out string) (measurement, error) {
		r, err := parse.ParseIperf3([]byte(out))
		if err != nil {
			return measurement{}, err
		}
		return measurement{values: map[string]float64{metric: r.BitsPerSecond / 1e9, loss: r.LostPercent},
			bytes: r.Bytes}, nil
	}
}

func parseLatency(out string) (measurement, error) {
	r, err := parse.ParseSockperf(out)
	if err != nil {
		return measurement{}, err
	}
	return measurement{values: map[string]float64{report.Latency: r.AvgUsec}}, nil
}

func parseConnRate(out string) (measurement, error) {
	r, err := parse.ParseWrk(out)
	if err != nil {
		return measurement{}, err
	}
	m := measurement{values: map[string]float64{report.ConnRate: r.RequestsPerSec}}
	// A backend that fails requests fast could otherwise look fast.
	if n := r.Errors(); n > 0 {
		m.warning = fmt.Sprintf("wrk: %d of %d requests failed (connect %d, read %d, write %d, timeout %d, non-2xx %d)",
			n, r.Requests, r.ConnectErrors, r.ReadErrors, r.WriteErrors, r.Timeouts, r.Non2xx3xx)
		if r.Requests > 0 && float64(n) > 0.01*float64(r.Requests) {
			return measurement{}, fmt.Errorf("%s", m.warning)
		}
	}
	return m, nil
}

// servers are the host's side of the tests: iperf3, sockperf and an HTTP
// server, all on one address.
type servers struct {
	ports ports
	procs []*process
	http  *http.Server
}

func (s *servers) close() {
	for _, p := range s.procs {
		p.stop()
	}
	if s.http != nil {
		s.http.Close()
	}
}

// startServers starts the servers on bind. Every backend round gets fresh
// ones, so a server wedged by one backend cannot spoil the next.
func startServers(b *bench, bind string) (*servers, error) {
	s := &servers{}
	var err error
	if s.ports.iperf, err = freePort(bind); err != nil {
		return nil, err
	}
	if s.ports.sockperf, err = freePort(bind); err != nil {
		return nil, err
	}
	// iperf3 says when it listens; --forceflush because its stdout is
	// a file, which would otherwise be block-buffered.
	ip, err := startProcess(b.logDir, "iperf3-server", []string{"iperf3", "-s", "-B", bind, "-p", strconv.Itoa(s.ports.iperf),
		"--forceflush"}, processOpts{})
	if err != nil {
		return nil, err
	}
	s.procs = append(s.procs, ip)
	sp, err := startProcess(b.logDir, "sockperf-server", []string{"sockperf", "server", "--tcp", "-i", bind,
		"-p", strconv.Itoa(s.ports.sockperf)}, processOpts{})
	if err != nil {
		s.close()
		return nil, err
	}
	s.procs = append(s.procs, sp)

	l, err := net.Listen("tcp", net.JoinHostPort(bind, "0"))
	if err != nil {
		s.close()
		return nil, fmt.Errorf("HTTP server: %w", err)
	}
	s.ports.http = l.Addr().(*net.TCPAddr).Port
	s.http = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})}
	go s.http.Serve(l)

	for _, w := range []struct {
		p    *process
		port int
	}{{ip, s.ports.iperf}, {sp, s.ports.sockperf}} {
		addr := net.JoinHostPort(bind, strconv.Itoa(w.port))
		if err := w.p.waitFor("a listening socket", readyTimeout, func() bool { return listening(addr) }); err != nil {
			s.close()
			return nil, err
		}
	}
	return s, nil
}

// listening reports whether a TCP listener is bound to addr, from
// /proc/net/tcp rather than by connecting: a probe connection would be
// taken by iperf3 for a test client.
func listening(addr string) bool {
	want, err := procNetTCPAddr(addr)
	if err != nil {
		return false
	}
	out, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(out), "\n")[1:] {
		f := strings.Fields(line)
		// local_address, rem_address, st; 0A is LISTEN.
		if len(f) > 3 && f[1] == want && f[3] == "0A" {
			return true
		}
	}
	return false
}

// procNetTCPAddr spells an IPv4 host:port as /proc/net/tcp does: the
// address as a little-endian hex word, the port as big-endian hex.
func procNetTCPAddr(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	ip := net.ParseIP(host).To4()
	if ip == nil {
		return "", fmt.Errorf("%q is not an IPv4 address", host)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%02X%02X%02X%02X:%04X", ip[3], ip[2], ip[1], ip[0], p), nil
}

// freePort returns a TCP port that nothing on bind listens on now (and,
// for iperf3's UDP test, that is free for UDP too).
func freePort(bind string) (int, error) {
	for range 20 {
		l, err := net.Listen("tcp", net.JoinHostPort(bind, "0"))
		if err != nil {
			return 0, fmt.Errorf("finding a free port on %s: %w", bind, err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		u, err := net.ListenPacket("udp", net.JoinHostPort(bind, strconv.Itoa(port)))
		if err == nil {
			u.Close()
			return port, nil
		}
	}
	return 0, fmt.Errorf("no port on %s free for both TCP and UDP", bind)
}

// runNSTest runs one test's client in the namespace.
func runNSTest(ctx context.Context, t testDef, inst *nsInstance, p ports, s settings) (measurement, error) {
	argv := append([]string{"nsenter", "--net=" + inst.netns, "--"}, t.args(inst.target, p, s)...)
	out, err := runCommand(ctx, s.duration+60*time.Second, argv...)
	if err != nil {
		// iperf3 -J prints its error inside the JSON; prefer that.
		if m, perr := t.parse(out); perr == nil {
			return m, nil
		} else if strings.Contains(out, "{") {
			return measurement{}, perr
		}
		return measurement{}, err
	}
	return t.parse(out)
}
