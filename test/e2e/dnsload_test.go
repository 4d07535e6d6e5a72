package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slipway-net/slipway/test/testenv"
)

// dnsperf is the shell running dnsperf against slipway's DNS with args
// and printing markers TAG_sent, TAG_completed, TAG_lost, TAG_noerror
// and TAG_servfail from its summary.
func dnsperf(tag, queries, args string) string {
	return fmt.Sprintf(`dnsperf -s 10.0.2.3 -d %s %s >%s.%s.out 2>&1; `+
		`awk '/Queries sent:/{print "@%s_sent="$3} /Queries completed:/{print "@%s_completed="$3} /Queries lost:/{print "@%s_lost="$3}' %s.%s.out; `+
		`echo "@%s_noerror=$(grep -o 'NOERROR [0-9]*' %s.%s.out | cut -d' ' -f2)"; echo "@%s_servfail=$(grep -o 'SERVFAIL [0-9]*' %s.%s.out | cut -d' ' -f2)"`,
		queries, args, queries, tag, tag, tag, tag, queries, tag, tag, queries, tag, tag, queries, tag)
}

// dnsQueries writes a dnsperf query file of n names under the test
// domain (A and AAAA) and returns its path.
func dnsQueries(t *testing.T, n int) string {
	t.Helper()
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "q%d.%s A\nq%d.v6.%s AAAA\n", i, testenv.TestDomain, i, testenv.TestDomain)
	}
	p := filepath.Join(t.TempDir(), "queries")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// waitDNSIdle is the shell that waits (20 s at most) until slipway's DNS
// has no query in flight and no TCP connection open, printing marker
// TAG_busy if it never gets there.
func waitDNSIdle(api, tag string) string {
	return fmt.Sprintf(`n=0; until [ "%s" = 0 ] && [ "%s" = 0 ]; do n=$((n+1)); [ $n -lt 400 ] || { echo "@%s_busy=yes"; break; }; sleep 0.05; done`,
		metric(api, `slipway_dns{key="",name="in_flight"}`), metric(api, `slipway_dns{key="",name="tcp_conns"}`), tag)
}

// checkDNSPerf asserts one dnsperf run's markers: it sent queries, every
// one was answered (none lost: no hang), all with rcode (noerror or
// servfail).
func checkDNSPerf(t *testing.T, m map[string]string, tag, rcode string, output string) {
	t.Helper()
	sent, completed := markerNumber(t, m, tag+"_sent", output), markerNumber(t, m, tag+"_completed", output)
	if sent < 1000 || completed != sent || m[tag+"_lost"] != "0" {
		t.Errorf("%s: %v queries sent, %v answered, %s lost; want thousands, all answered", tag, sent, completed, m[tag+"_lost"])
	}
	if got := m[tag+"_"+rcode]; got != fmt.Sprint(completed) {
		t.Errorf("%s: %s answers %q of %v", tag, rcode, got, completed)
	}
	if m[tag+"_busy"] != "" {
		t.Errorf("%s: queries or TCP connections stayed open in slipway's DNS after the run", tag)
	}
}

// TestDNSLoad runs dnsperf against slipway's DNS (10.0.2.3) with a
// dnsmasq upstream, over UDP and over TCP: every query is answered, and
// slipway's descriptors and goroutines are back at their baseline after.
func TestDNSLoad(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "dnsperf", "curl")
	dns := testenv.Dnsmasq(t)
	q := dnsQueries(t, 500)
	api := filepath.Join(t.TempDir(), "api.sock")
	res := runNS(t, []string{"--api-socket", api, "--dns-upstream", dns.String()}, script(
		waitFlows(api),
		usage(api, "before"),
		dnsperf("udp", q, "-l 4 -c 8 -q 200 -Q 4000"),
		waitDNSIdle(api, "udp"),
		dnsperf("tcp", q, "-m tcp -l 3 -c 8 -q 50"),
		waitDNSIdle(api, "tcp"),
		usage(api, "after"),
	))
	m := testenv.Markers(res.Output)
	checkDNSPerf(t, m, "udp", "noerror", res.Output)
	// Queries over TCP go upstream over UDP unless the answer is
	// truncated: a TCP connection upstream for each overflowed dnsmasq's
	// listen backlog (11 SERVFAILs in 6,000 at 50 outstanding).
	checkDNSPerf(t, m, "tcp", "noerror", res.Output)
	baseline(t, m, res.Output)
	if t.Failed() {
		t.Logf("output:\n%s", res.Output)
	}
}

// TestDNSOverload: an upstream that never answers and more queries
// outstanding than --dns-max-inflight. Queries over the limit get SERVFAIL
// at once (counted as overload), the others when their time is up: every
// query is answered, none hangs, and nothing is left behind.
func TestDNSOverload(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "dnsperf", "curl")
	// The upstream reads every query and answers none.
	hole, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hole.Close()
	go func() {
		buf := make([]byte, 65536)
		for {
			if _, _, err := hole.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	q := dnsQueries(t, 500)
	api := filepath.Join(t.TempDir(), "api.sock")
	res := runNS(t, []string{"--api-socket", api, "--dns-upstream", hole.LocalAddr().String(), "--dns-max-inflight", "16"}, script(
		waitFlows(api),
		usage(api, "before"),
		// dnsperf waits 5 s for an answer; slipway gives up on an
		// upstream after 2.
		dnsperf("over", q, "-l 3 -c 4 -q 500 -Q 2000 -t 5"),
		`echo "@overload=`+metric(api, `slipway_dns_total{key="",name="overload"}`)+`"`,
		waitDNSIdle(api, "over"),
		usage(api, "after"),
	))
	m := testenv.Markers(res.Output)
	checkDNSPerf(t, m, "over", "servfail", res.Output)
	if n := markerNumber(t, m, "overload", res.Output); n < 1000 {
		t.Errorf("%v queries answered SERVFAIL at once for the in-flight limit, want most of them", n)
	}
	baseline(t, m, res.Output)
	if t.Failed() {
		t.Logf("output:\n%s", res.Output)
	}
}

// kdigSummary is a shell function ksum ARGS...: kdig's answer to ARGS
// (run with a server argument first) as "RCODE FLAGS answers=N edns=0|1
// UDP|TCP": the final answer's status, header flags, answer count,
// whether it carries an OPT record, and how it came.
const kdigSummary = `ksum() { o=$(kdig +time=3 +retry=0 "$@" 2>&1); ` +
	`st=$(echo "$o" | sed -n 's/.*status: \([A-Z]*\).*/\1/p' | tail -1); ` +
	`fl=$(echo "$o" | sed -n 's/^;; Flags: \([a-z ]*\);.*/\1/p' | tail -1); ` +
	`an=$(echo "$o" | sed -n 's/.*ANSWER: \([0-9]*\).*/\1/p' | tail -1); ` +
	`ed=$(echo "$o" | grep -c 'EDNS PSEUDOSECTION'); ` +
	`pr=$(echo "$o" | sed -n 's/^;; From .*(\([A-Z]*\)).*/\1/p' | tail -1); ` +
	`echo "$st $fl answers=$an edns=$ed $pr"; }`

// kdigCase is one kdig query: its arguments, slipway's answer, and
// whether it is forwarded (and must then be what dnsmasq answers
// itself) or answered by slipway.
type kdigCase struct {
	name, args, want string
	local            bool
}

var kdigCases = []kdigCase{
	{"edns", "+bufsize=1232 a." + testenv.TestDomain, "NOERROR qr aa rd ra answers=1 edns=1 UDP", false},
	{"no_edns", "+noedns a." + testenv.TestDomain, "NOERROR qr aa rd ra answers=1 edns=0 UDP", false},
	{"tcp", "+tcp a." + testenv.TestDomain, "NOERROR qr aa rd ra answers=1 edns=0 TCP", false},
	// 2 KB of TXT: truncated over plain UDP, whole over TCP.
	{"truncated", "+noedns +ignore " + testenv.BigTXTName + " TXT", "NOERROR qr aa tc rd ra answers=0 edns=0 UDP", false},
	{"tcp_fallback", "+noedns " + testenv.BigTXTName + " TXT", "NOERROR qr aa rd ra answers=1 edns=0 TCP", false},
	// dnsmasq answers at most 1232 bytes over UDP, whatever the client
	// offers: truncated still, and slipway passes that on.
	{"edns_4096", "+bufsize=4096 +ignore " + testenv.BigTXTName + " TXT", "NOERROR qr aa tc rd ra answers=0 edns=1 UDP", false},
	{"many_a_fallback", "+noedns " + testenv.ManyAName + " A", fmt.Sprintf("NOERROR qr aa rd ra answers=%d edns=0 TCP", testenv.ManyACount), false},
	{"any", "ANY a." + testenv.TestDomain, "NOERROR qr aa rd ra answers=1 edns=0 UDP", false},
	{"caa", "CAA a." + testenv.TestDomain, "REFUSED qr rd ra answers=0 edns=0 UDP", false},
	{"type65535", "TYPE65535 a." + testenv.TestDomain, "REFUSED qr rd ra answers=0 edns=0 UDP", false},
	{"chaos", "CH TXT version.bind", "NOERROR qr aa rd ra answers=1 edns=0 UDP", false},
	// slipway's own name: A and AAAA for ANY, no data (NOERROR) for the
	// types it has none of.
	{"local_any", "ANY host.slipway.internal", "NOERROR qr aa rd ra answers=2 edns=0 UDP", true},
	{"local_caa", "CAA host.slipway.internal", "NOERROR qr aa rd ra answers=0 edns=0 UDP", true},
	{"local_type65535", "TYPE65535 host.slipway.internal", "NOERROR qr aa rd ra answers=0 edns=0 UDP", true},
	{"local_edns", "+bufsize=1232 host.slipway.internal", "NOERROR qr aa rd ra answers=1 edns=1 UDP", true},
	// slipway's names are IN only: in class CH the query goes upstream.
	{"chaos_local_name", "CH TXT host.slipway.internal", "REFUSED qr rd ra answers=0 edns=0 UDP", false},
}

// TestDNSConformance asks slipway's DNS with kdig for EDNS, over TCP,
// answers too large for UDP (truncation, then kdig's fallback to TCP), and
// odd query types and classes: each answer is the one asserted, and a
// forwarded one is what dnsmasq itself answers.
func TestDNSConformance(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "kdig")
	dns := testenv.Dnsmasq(t)
	lines := []string{kdigSummary}
	for _, c := range kdigCases {
		lines = append(lines, fmt.Sprintf(`echo "@%s=$(ksum @10.0.2.3 %s)"`, c.name, c.args))
	}
	res := runNS(t, []string{"--dns-upstream", dns.String()}, script(lines...))
	m := testenv.Markers(res.Output)
	for _, c := range kdigCases {
		got := m[c.name]
		if c.want != "" && got != c.want {
			t.Errorf("%s (kdig %s): %q, want %q", c.name, c.args, got, c.want)
		}
		if c.local {
			continue
		}
		up, err := exec.Command("sh", "-c", fmt.Sprintf(`%s; ksum @%s -p %d %s`, kdigSummary, dns.Addr(), dns.Port(), c.args)).Output()
		if err != nil {
			t.Fatalf("kdig at dnsmasq: %v", err)
		}
		if u := strings.TrimSpace(string(up)); got != u {
			t.Errorf("%s (kdig %s): slipway %q, dnsmasq itself %q", c.name, c.args, got, u)
		}
	}
	if t.Failed() {
		t.Logf("output:\n%s", res.Output)
	}
}
