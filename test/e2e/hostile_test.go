package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/slipway-net/slipway/test/guestpeer"
	"github.com/slipway-net/slipway/test/testenv"
)

// hostileCase is one class of malformed input (testdata/hostile.py has the
// frames) and where slipway must count what it dropped.
type hostileCase struct {
	name string
	// counted: the counters (section.name[.key]) of which at least min
	// must have grown in all; none for cases that only must not hurt.
	counted []string
	min     float64
}

// The classes of libslirp's CVEs and their kin, each a regression case.
var hostileCases = []hostileCase{
	{"truncated_arp", []string{"stack_drops.bad_ip_header", "stack.arp_malformed"}, 7},
	// An IHL of 6 fits the packet: its transport header is what is cut.
	{"ihl_too_large", []string{"stack_drops.bad_ip_header", "stack_drops.bad_checksum", "stack_drops.bad_l4_header"}, 4},
	{"ip_length_beyond_frame", []string{"stack_drops.bad_ip_header"}, 3},
	{"ipv6_payload_length_beyond_frame", []string{"stack_drops.bad_ip_header"}, 3},
	{"short_udp", []string{"stack_drops.bad_l4_header"}, 5},
	{"short_udp6", []string{"stack_drops.bad_l4_header"}, 5},
	{"overlapping_fragments", []string{"stack.ip_fragments_malformed"}, 1},
	{"oversized_fragments", []string{"stack.ip_fragments_malformed"}, 2},
	{"endless_fragments", nil, 0},
	{"icmp_errors_quoting_fragments", nil, 0},
	{"tcp_urgent_past_data", nil, 0},
	{"dhcp_option_length_past_end", []string{"dhcp.dropped.bad-options"}, 4},
	{"dhcp_end_mid_packet", []string{"dhcp.dropped.no-message-type"}, 1},
	{"fuzz_streams", []string{"stack_drops.bad_ip_header", "stack_drops.bad_l4_header", "stack_drops.bad_checksum", "stack.icmp4_invalid", "stack.icmp6_invalid", "stack.arp_malformed"}, 50},
}

// TestHostileFrames sends every hostile case from inside a namespace, then
// checks what a user would: slipway still runs, a DHCP client gets a
// lease, DNS answers, a download arrives intact, the drops were counted
// where they belong, and descriptors, goroutines, flows and memory are
// back near where they were.
func TestHostileFrames(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "/usr/bin/python3", "curl", "dig", "busybox", "sha256sum", "ip")
	dns := testenv.Dnsmasq(t)
	web, sum := testenv.HTTPFile(t, 4<<20)
	hostile, err := filepath.Abs("testdata/hostile.py")
	if err != nil {
		t.Fatal(err)
	}
	api := filepath.Join(t.TempDir(), "api.sock")
	names := hostileCaseArgs(web.Port())
	res := runNS(t, []string{"--api-socket", api, "--dns-upstream", dns.String()}, script(
		waitFlows(api),
		usage(api, "before"),
		`echo "@rss_before=`+metric(api, "process_resident_memory_bytes")+`"`,
		`busybox ping -c1 -W3 10.0.2.2 >/dev/null`,
		`gw=$(ip neigh show 10.0.2.2 | awk '{print $5}')`,
		fmt.Sprintf(`/usr/bin/python3 %s %s "$gw" %s`, hostile, api, strings.Join(names, " ")),
		`echo "@rss_after=`+metric(api, "process_resident_memory_bytes")+`"`,
		// What a user checks afterwards: a lease, a name, a download.
		`busybox udhcpc -i eth0 -n -q -f -t 3 -s /bin/true >/dev/null 2>&1 && echo "@dhcp=ok"`,
		`echo "@dns=$(dig +short +time=3 +tries=1 a.`+testenv.TestDomain+`)"`,
		fmt.Sprintf(`echo "@sha=$(curl -sf -m 20 http://10.0.2.2:%d/blob | sha256sum | cut -d' ' -f1)"`, web.Port()),
		`waitflows 0 tcp || echo "@tcp_left=yes"`,
		usage(api, "after"),
	))
	m := testenv.Markers(res.Output)
	checkHostileCases(t, m, res.Output)
	want := map[string]string{"dhcp": "ok", "dns": testenv.TestDomainAddr, "sha": sum, "tcp_left": ""}
	checkMarkers(t, m, want, "afterwards: ")
	baseline(t, m, res.Output)
	// 3,000 incomplete datagrams of 1.4 KB went into reassembly: it
	// must have kept within its bound (gVisor's: 4 MiB), not their sum.
	if before, after := markerNumber(t, m, "rss_before", res.Output), markerNumber(t, m, "rss_after", res.Output); after > before+48<<20 {
		t.Errorf("slipway's memory grew from %.0f MiB to %.0f MiB under hostile frames", before/(1<<20), after/(1<<20))
	}
	if t.Failed() {
		t.Logf("output:\n%s", res.Output)
	}
}

// hostileCaseArgs are hostile.py's case arguments; the urgent-data case
// plays a TCP peer to the web server at port.
func hostileCaseArgs(port uint16) []string {
	var names []string
	for _, c := range hostileCases {
		n := c.name
		if n == "tcp_urgent_past_data" {
			n += fmt.Sprintf(":%d", port)
		}
		names = append(names, n)
	}
	return names
}

// checkHostileCases checks hostile.py's report of each case: sent, and
// its drops counted where they belong.
func checkHostileCases(t *testing.T, m map[string]string, output string) {
	t.Helper()
	for _, c := range hostileCases {
		raw := m["case_"+c.name]
		if raw == "" {
			t.Errorf("%s: not run\n%s", c.name, output)
			continue
		}
		var rec struct {
			Sent   int
			Deltas map[string]float64
			Error  string
		}
		if err := json.Unmarshal([]byte(raw), &rec); err != nil {
			t.Errorf("%s: %v: %s", c.name, err, raw)
			continue
		}
		if rec.Error != "" || rec.Sent == 0 {
			t.Errorf("%s: nothing sent (%s)", c.name, rec.Error)
		}
		got := 0.0
		for _, k := range c.counted {
			got += rec.Deltas[k]
		}
		if got < c.min {
			t.Errorf("%s: %v drops counted under %v, want at least %v; counters that moved: %v", c.name, got, c.counted, c.min, rec.Deltas)
		}
	}
}

// TestHostileFramesFromVM sends the same hostile cases as a VM's frames
// arrive, over a QEMU stream socket to `slipway serve`, then checks that
// the drops were counted where they belong, that another VM on the same
// socket gets a lease and a download intact, and that slipway's
// descriptors and goroutines are back near where they were.
func TestHostileFramesFromVM(t *testing.T) {
	testenv.RequireTools(t, "/usr/bin/python3")
	web, sum := testenv.HTTPFile(t, 4<<20)
	hostile, err := filepath.Abs("testdata/hostile.py")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	sock, api := filepath.Join(dir, "vm.sock"), filepath.Join(dir, "api.sock")
	testenv.Serve(t, "--listen", "stream:unix:"+sock, "--api-socket", api)
	usage := func() (fds, goroutines float64) {
		out, _ := exec.Command("curl", "-s", "--unix-socket", api, "http://slipway/metrics").Output()
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Fields(line)
			if len(f) == 2 && f[0] == "process_open_fds" {
				fds, _ = strconv.ParseFloat(f[1], 64)
			}
			if len(f) == 2 && f[0] == "go_goroutines" {
				goroutines, _ = strconv.ParseFloat(f[1], 64)
			}
		}
		return fds, goroutines
	}
	fds0, gr0 := usage()
	names := hostileCaseArgs(web.Port())
	cmd := exec.Command("/usr/bin/python3", append([]string{hostile, api, "auto"}, names...)...)
	cmd.Env = append(os.Environ(), "HOSTILE_STREAM="+sock, "HOSTILE_MAC=52:54:00:12:34:77")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("hostile.py: %v\n%s", err, out)
	}
	checkHostileCases(t, testenv.Markers(string(out)), string(out))
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	g := guestpeer.New(t, guestpeer.NewStream(c), "52:54:00:12:34:78")
	if _, err := g.Online(); err != nil {
		t.Fatalf("a VM beside the hostile one got no lease: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	body, err := g.Get(ctx, fmt.Sprintf("http://10.0.2.2:%d/blob", web.Port()))
	if h := sha256.Sum256(body); err != nil || hex.EncodeToString(h[:]) != sum {
		t.Errorf("a VM beside the hostile one: download %d bytes, %v", len(body), err)
	}
	g.Close()
	// What the hostile VM's flows and sockets held is let go (bounded
	// wait: the stack's timers close what the cases left half-open).
	var fds, gr float64
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if fds, gr = usage(); fds <= fds0+8 && gr <= gr0+20 {
			break
		}
	}
	if fds > fds0+8 || gr > gr0+20 {
		t.Errorf("slipway holds %v descriptors and %v goroutines afterwards, %v and %v before", fds, gr, fds0, gr0)
	}
}

// flood is one hping3 flood of TestFloods.
type flood struct {
	name string
	args string // hping3's, before the destination; %d is the web port
	// counted must have grown during the flood (section.name as the
	// metrics label it), if set.
	counted string
	// noFlows: the flood must open no flow at all (gvproxy leaked a flow
	// slot per SYN-ACK and RST).
	noFlows bool
}

var floods = []flood{
	{name: "syn_closed_ports", args: "-S -p ++20000", counted: `slipway_stack_total{key="",name="tcp_handshakes_dropped"}`},
	{name: "syn_open_port", args: "-S -p %d", counted: `slipway_stack_total{key="",name="tcp_handshakes_dropped"}`},
	{name: "syn_ack", args: "-SA -p %d", noFlows: true},
	{name: "rst", args: "-R -p %d", noFlows: true},
	{name: "bad_checksums", args: "-S --badcksum -p %d", counted: `slipway_stack_drops_total{key="",name="bad_checksum"}`, noFlows: true},
	{name: "forged_sources", args: "-S --rand-source -p %d", counted: `slipway_stack_total{key="",name="ip_invalid_source"}`},
	{name: "udp_fragments", args: "-2 -f -d 1400 -p 9"},
	{name: "udp_port_churn", args: "-2 -p 9"}, // hping3 moves its source port each datagram
}

// TestFloods runs hping3's floods from inside a namespace for a second
// each: the bounds hold and are counted, SYN-ACKs, RSTs and bad checksums
// open no flow, what the floods opened closes again, and afterwards the
// namespace is served as before with slipway back to its baseline.
func TestFloods(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "hping3", "curl", "sha256sum")
	web, sum := testenv.HTTPFile(t, 1<<20)
	api := filepath.Join(t.TempDir(), "api.sock")
	lines := []string{waitFlows(api), usage(api, "before"), `echo "@rss_before=` + metric(api, "process_resident_memory_bytes") + `"`}
	for _, f := range floods {
		args := f.args
		if strings.Contains(args, "%d") {
			args = fmt.Sprintf(args, web.Port())
		}
		lines = append(lines,
			fmt.Sprintf(`echo "@%s_before=%s"`, f.name, metric(api, f.counted)),
			fmt.Sprintf(`timeout 1 hping3 --flood %s 10.0.2.2 >/dev/null 2>&1`, args),
			fmt.Sprintf(`echo "@%s_after=%s"`, f.name, metric(api, f.counted)),
			fmt.Sprintf(`echo "@%s_flows=%s"`, f.name, metric(api, `slipway_flows{key="",name="total"}`)),
			fmt.Sprintf(`waitflows 0 tcp && waitflows 0 udp || echo "@%s_left=yes"`, f.name),
		)
	}
	lines = append(lines,
		`echo "@rss_after=`+metric(api, "process_resident_memory_bytes")+`"`,
		fmt.Sprintf(`echo "@sha=$(curl -sf -m 20 http://10.0.2.2:%d/blob | sha256sum | cut -d' ' -f1)"`, web.Port()),
		`waitflows 0 tcp`,
		usage(api, "after"),
	)
	res := runNS(t, []string{"--api-socket", api, "--udp-unreplied-timeout", "3s"}, script(lines...))
	m := testenv.Markers(res.Output)
	for _, f := range floods {
		if m[f.name+"_left"] != "" {
			t.Errorf("%s: flows stayed open after the flood", f.name)
		}
		if f.noFlows && m[f.name+"_flows"] != "0" {
			t.Errorf("%s: the flood left %s flows open, want none", f.name, m[f.name+"_flows"])
		}
		if f.counted != "" && markerNumber(t, m, f.name+"_after", res.Output) <= markerNumber(t, m, f.name+"_before", res.Output) {
			t.Errorf("%s: %s did not grow (%s -> %s)", f.name, f.counted, m[f.name+"_before"], m[f.name+"_after"])
		}
	}
	if m["sha"] != sum {
		t.Errorf("the download after the floods: sha256 %q, want %q", m["sha"], sum)
	}
	// gVisor's own log line for each forged source must not reach the
	// user's terminal.
	if strings.Contains(res.Output, "Martian") {
		t.Errorf("the stack's log reached stderr")
	}
	baseline(t, m, res.Output)
	if before, after := markerNumber(t, m, "rss_before", res.Output), markerNumber(t, m, "rss_after", res.Output); after > before+96<<20 {
		t.Errorf("slipway's memory grew from %.0f MiB to %.0f MiB under floods", before/(1<<20), after/(1<<20))
	}
	if t.Failed() {
		t.Logf("output:\n%s", res.Output)
	}
}

// TestDHCPExhaustion plays dhcpig's attacks (Debian 12's dhcpig crashes in
// its own scapy calls, so testdata/hostile.py sends the same frames):
// hundreds of invented client MACs asking for DHCPv4 leases, hundreds of
// DUIDs soliciting DHCPv6 addresses with rapid commit from one address,
// and the fuzz mode of each. The pools must hold: a link gets at most the
// 64 MACs its switch port learns, one client address at most 8 IA_NAs.
// Afterwards real clients (busybox udhcpc, ISC dhclient -6) get leases.
func TestDHCPExhaustion(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "/usr/bin/python3", "busybox", "dhclient", "ip")
	hostile, err := filepath.Abs("testdata/hostile.py")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	api := filepath.Join(dir, "api.sock")
	res := runNS(t, []string{"--api-socket", api}, script(
		waitFlows(api),
		usage(api, "before"),
		`busybox ping -c1 -W3 10.0.2.2 >/dev/null`,
		`gw=$(ip neigh show 10.0.2.2 | awk '{print $5}')`,
		fmt.Sprintf(`/usr/bin/python3 %s %s "$gw" dhcp_exhaustion dhcp6_exhaustion dhcp_fuzz dhcp6_fuzz`, hostile, api),
		`echo "@leases4=`+metric(api, `slipway_dhcp{key="",name="leases"}`)+`"`,
		`echo "@leases6=`+metric(api, `slipway_dhcp6{key="",name="leases"}`)+`"`,
		`busybox udhcpc -i eth0 -n -q -f -t 3 -s /bin/true >/dev/null 2>&1 && echo "@dhcp=ok"`,
		fmt.Sprintf(`timeout 30 dhclient -6 -1 -lf %s/d6.leases -pf %s/d6.pid -sf /bin/true eth0 >/dev/null 2>&1 && grep -q iaaddr %s/d6.leases && echo "@dhcp6=ok"`, dir, dir, dir),
		`dhclient -6 -x -pf `+dir+`/d6.pid eth0 >/dev/null 2>&1 || true`,
		usage(api, "after"),
	))
	m := testenv.Markers(res.Output)
	deltas := func(name string) map[string]float64 {
		var rec struct {
			Sent   int
			Deltas map[string]float64
		}
		if err := json.Unmarshal([]byte(m["case_"+name]), &rec); err != nil || rec.Sent == 0 {
			t.Errorf("%s: not run (%v)\n%s", name, err, res.Output)
		}
		return rec.Deltas
	}
	if d := deltas("dhcp_exhaustion"); d["dhcp.dropped.unknown-client"] < 300 {
		t.Errorf("dhcp_exhaustion: %v unknown clients refused, want most of 600: %v", d["dhcp.dropped.unknown-client"], d)
	}
	if d := deltas("dhcp6_exhaustion"); d["dhcp6.evicted"] < 500 {
		t.Errorf("dhcp6_exhaustion: %v IA_NAs evicted, want all but 8 of 600: %v", d["dhcp6.evicted"], d)
	}
	for _, name := range []string{"dhcp_fuzz", "dhcp6_fuzz"} {
		if d := deltas(name); d[strings.SplitN(name, "_", 2)[0]+".received"] < 300 {
			t.Errorf("%s: the server saw %v of 300 messages: %v", name, d, d)
		}
	}
	// 64 learned MACs per link (one of them the namespace's own, whose
	// lease `run` pins), and dhclient's own address's 8.
	if n := markerNumber(t, m, "leases4", res.Output); n > 65 {
		t.Errorf("%v DHCPv4 leases after the exhaustion, want at most 65", n)
	}
	if n := markerNumber(t, m, "leases6", res.Output); n > 8 {
		t.Errorf("%v DHCPv6 leases after the exhaustion, want at most 8", n)
	}
	checkMarkers(t, m, map[string]string{"dhcp": "ok", "dhcp6": "ok"}, "afterwards: ")
	baseline(t, m, res.Output)
	if t.Failed() {
		t.Logf("output:\n%s", res.Output)
	}
}
