package e2e

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

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
	var names []string
	for _, c := range hostileCases {
		n := c.name
		if n == "tcp_urgent_past_data" {
			n += fmt.Sprintf(":%d", web.Port())
		}
		names = append(names, n)
	}
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
	for _, c := range hostileCases {
		raw := m["case_"+c.name]
		if raw == "" {
			t.Errorf("%s: not run\n%s", c.name, res.Output)
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
