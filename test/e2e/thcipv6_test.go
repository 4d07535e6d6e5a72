package e2e

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/slipway-net/slipway/test/testenv"
)

// The thc-ipv6 tools size their packets by the interface's MTU and fail
// on slipway's default of 65520: flood_router26 refuses it ("invalid
// MTU") and implementation6 overflows its own buffer at its test 14 (a
// bug of the tool, whose exit status is then not slipway's doing). The
// tests run at 1500, the MTU the tools are made for.
const thcMTU = "1500"

// thcAttack is one bounded run of a thc-ipv6 attack from the namespace.
type thcAttack struct {
	name, cmd string
	// exits are the exit statuses that say the tool did its work: 0 when
	// it finished (for fuzz_dhcps6 and fragmentation6 that includes
	// their own check that the target is alive), 124 when timeout cut a
	// flood off. None: any (a tool that crashes itself).
	exits []string
}

// thcAttacks, each cut off by timeout: the fuzzers of ICMPv6 echo (with
// the IP header, hop-by-hop, destination and fragment headers fuzzed
// too) and of TCP SYNs to an open port, the DHCPv6 fuzzer over several
// message types, router advertisement floods (plain and with each RA-guard
// evasion), and the fragmentation attacks, in turn and two of them
// flooded.
func thcAttacks(webPort uint16) []thcAttack {
	done, cut := []string{"0"}, []string{"124"}
	a := []thcAttack{
		{"fuzz_ip6_echo", "timeout 20 atk6-fuzz_ip6 -a eth0 fd00::2", done},
		{"fuzz_ip6_ip", "timeout 20 atk6-fuzz_ip6 -a -I eth0 fd00::2", done},
		{"fuzz_ip6_hopbyhop", "timeout 20 atk6-fuzz_ip6 -a -H eth0 fd00::2", done},
		{"fuzz_ip6_dsthdr", "timeout 20 atk6-fuzz_ip6 -a -D eth0 fd00::2", done},
		{"fuzz_ip6_fragment", "timeout 20 atk6-fuzz_ip6 -a -F eth0 fd00::2", done},
		{"fuzz_ip6_syn", fmt.Sprintf("timeout 20 atk6-fuzz_ip6 -a -s %d eth0 fd00::2", webPort), done},
	}
	for _, m := range []string{"-1 -m", "-2", "-4", "-8"} {
		a = append(a, thcAttack{"fuzz_dhcps6" + strings.NewReplacer(" ", "", "-", "_").Replace(m), "timeout 30 atk6-fuzz_dhcps6 " + m + " eth0", done})
	}
	for _, m := range []string{"", "-H", "-F", "-m"} {
		a = append(a, thcAttack{"flood_router26" + strings.ReplaceAll(m, "-", "_"), "timeout 3 atk6-flood_router26 " + m + " eth0", cut})
	}
	// With -D (a large destination header) the tool crashes itself
	// (SIGSEGV) after a while.
	a = append(a, thcAttack{"flood_router26_D", "timeout 3 atk6-flood_router26 -D eth0", nil})
	// Test cases 30 and 33: a last fragment at offset 8191 (7 and 1414
	// bytes past it), flooded.
	return append(a,
		thcAttack{"fragmentation6", "timeout 100 atk6-fragmentation6 eth0 fd00::2", done},
		thcAttack{"fragmentation6_flood30", "timeout 5 atk6-fragmentation6 -f -p eth0 fd00::2 30", cut},
		thcAttack{"fragmentation6_flood33", "timeout 5 atk6-fragmentation6 -f -p eth0 fd00::2 33", cut},
	)
}

// TestTHCIPv6Attacks runs thc-ipv6's fuzzers and floods against slipway
// from inside the namespace, each bounded in time, then checks what a user
// would: slipway lives, DHCPv6 gives a lease, DNS answers over IPv6, a
// download over IPv6 arrives intact, the router advertisements were
// dropped by the RA guard and counted, and slipway's descriptors,
// goroutines and memory are back near their baseline.
func TestTHCIPv6Attacks(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "atk6-fuzz_ip6", "atk6-fuzz_dhcps6", "atk6-flood_router26", "atk6-fragmentation6",
		"dhclient", "dig", "curl", "sha256sum", "busybox")
	dns := testenv.Dnsmasq(t)
	web, sum := testenv.HTTPFileOn(t, "[::1]:0", 4<<20)
	dir := t.TempDir()
	api := filepath.Join(dir, "api.sock")
	router := `slipway_link_total{link="tap:eth0",name="router",port="1"}`
	lines := []string{
		waitFlows(api),
		usage(api, "before"),
		`echo "@rss_before=` + metric(api, "process_resident_memory_bytes") + `"`,
		`echo "@router_before=` + metric(api, router) + `"`,
		// The gateway's neighbour entry, which the tools read.
		`busybox ping -6 -c1 -W3 fd00::2 >/dev/null`,
	}
	attacks := thcAttacks(web.Port())
	for _, a := range attacks {
		lines = append(lines, fmt.Sprintf(`%s >%s/%s.log 2>&1; echo "@%s_exit=$?"`, a.cmd, dir, a.name, a.name))
	}
	lines = append(lines,
		`echo "@router_after=`+metric(api, router)+`"`,
		`echo "@rss_after=`+metric(api, "process_resident_memory_bytes")+`"`,
		fmt.Sprintf(`echo "@health=$(curl -s --unix-socket %s http://slipway/v1/health | grep -c '"ok"')"`, api),
		fmt.Sprintf(`timeout 30 dhclient -6 -1 -lf %s/d6.leases -pf %s/d6.pid -sf /bin/true eth0 >/dev/null 2>&1 && grep -q iaaddr %s/d6.leases && echo "@dhcp6=ok"`, dir, dir, dir),
		`dhclient -6 -x -pf `+dir+`/d6.pid eth0 >/dev/null 2>&1 || true`,
		`echo "@dns6=$(dig +short +time=3 +tries=1 @fd00::3 a.`+testenv.TestDomain+`)"`,
		fmt.Sprintf(`echo "@sha=$(curl -sf -g -m 20 http://[fd00::2]:%d/blob | sha256sum | cut -d' ' -f1)"`, web.Port()),
		`waitflows 0 tcp || echo "@tcp_left=yes"`,
		`waitflows 0 udp || echo "@udp_left=yes"`,
		usage(api, "after"),
	)
	res := runNS(t, []string{"--api-socket", api, "--dns-upstream", dns.String(), "--mtu", thcMTU, "--udp-unreplied-timeout", "3s"}, script(lines...))
	m := testenv.Markers(res.Output)
	for _, a := range attacks {
		code := m[a.name+"_exit"]
		switch {
		case code == "":
			t.Errorf("%s: not run", a.name)
		case a.exits != nil && !slices.Contains(a.exits, code):
			t.Errorf("%s: exit %s, want one of %v (see %s.log)", a.name, code, a.exits, a.name)
		}
	}
	checkMarkers(t, m, map[string]string{"health": "1", "dhcp6": "ok", "dns6": testenv.TestDomainAddr, "sha": sum, "tcp_left": "", "udp_left": ""}, "afterwards: ")
	// Each flood sends thousands of advertisements in its seconds; every
	// one must have stopped at the RA guard, evasions included.
	if before, after := markerNumber(t, m, "router_before", res.Output), markerNumber(t, m, "router_after", res.Output); after-before < 1000 {
		t.Errorf("the RA guard dropped %v router advertisements of the floods, want thousands", after-before)
	}
	baseline(t, m, res.Output)
	if before, after := markerNumber(t, m, "rss_before", res.Output), markerNumber(t, m, "rss_after", res.Output); after > before+64<<20 {
		t.Errorf("slipway's memory grew from %.0f MiB to %.0f MiB under thc-ipv6", before/(1<<20), after/(1<<20))
	}
	if t.Failed() {
		t.Logf("output:\n%s", res.Output)
	}
}

// implRows: implementation6's tests (by number) of extension-header and
// fragment cases. Where
// slipway (gVisor) answers otherwise than Linux, why says so; the README
// lists the same.
var implRows = []diffRow{
	// (Test 0, a plain ping6, cannot be asked for alone: 0 runs them all.)
	{probe: "1", slipway: "reply"}, // hop-by-hop, ignore option
	{probe: "2", slipway: "no reply"},
	{probe: "3", slipway: "error 4:1"}, // two hop-by-hop headers
	{probe: "4", slipway: "no reply", linux: "error 4:1",
		why: "128 hop-by-hop headers: a chain of more than 8 extension headers is dropped by slipway's RA guard (it could hide a router advertisement)"},
	{probe: "5", slipway: "reply"},
	{probe: "7", slipway: "reply"},
	{probe: "8", slipway: "no reply", linux: "reply", why: "128 destination headers: dropped by the RA guard (chain longer than 8)"},
	{probe: "9", slipway: "no reply", linux: "reply", why: "2000 destination headers: dropped by the RA guard (chain longer than 8)"},
	{probe: "11", slipway: "reply"},     // correct fragmentation
	{probe: "12", slipway: "reply"},     // atomic fragment
	{probe: "14", slipway: "error 4:1"}, // overlapping fragments
	{probe: "16", slipway: "no reply"},
	{probe: "26", slipway: "reply", linux: "error 4:1",
		why: "a hop-by-hop header after a fragment header: gVisor processes it, Linux answers parameter problem as RFC 8200 asks"},
	{probe: "43", slipway: "reply", linux: "no reply", why: "a hop-by-hop header filled with ignorable options: gVisor processes them all, Linux drops more than 8 options"},
	{probe: "45", slipway: "reply", linux: "no reply", why: "a destination header filled with ignorable options: as for hop-by-hop"},
	{probe: "47", slipway: "error 4:2", linux: "error 4:0", why: "a jumbo option under 64 KiB: gVisor points at the option (code 2), Linux at the header field (code 0)"},
	{probe: "48", slipway: "no reply", linux: "error 4:0", why: "a jumbo option of length 0: gVisor drops it silently, Linux answers parameter problem"},
}

// implResult reads implementation6's verdict of one test from its output.
var implResult = regexp.MustCompile(`(?m)^Test +(\d+):.*\t(PASSED - we got a reply|FAILED - no reply|FAILED - error reply \[(\d+:\d+)\])`)

func implResults(out string) map[string]string {
	r := map[string]string{}
	for _, m := range implResult.FindAllStringSubmatch(out, -1) {
		n := m[1]
		switch {
		case strings.HasPrefix(m[2], "PASSED"):
			r[n] = "reply"
		case m[3] != "":
			r[n] = "error " + m[3]
		default:
			r[n] = "no reply"
		}
	}
	return r
}

// TestTHCIPv6Implementation runs implementation6's extension-header and
// fragment cases against slipway's IPv6 gateway and against a Linux host
// over a veth pair, prints both verdicts side by side, and asserts
// slipway's (implRows). Afterwards slipway still answers pings and DHCPv6.
func TestTHCIPv6Implementation(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "atk6-implementation6", "socat", "ss", "busybox", "dhclient")
	var nums []string
	for _, r := range implRows {
		nums = append(nums, r.probe)
	}
	each := func(iface, dst string) string {
		// -p: no alive checks around each single test.
		return fmt.Sprintf(`for n in %s; do timeout 20 atk6-implementation6 -p %s %s $n; done`, strings.Join(nums, " "), iface, dst)
	}
	dir := t.TempDir()
	res := runNS(t, []string{"--mtu", thcMTU}, script(
		`busybox ping -6 -c1 -W3 fd00::2 >/dev/null`,
		each("eth0", "fd00::2"),
		`busybox ping -6 -c1 -W3 fd00::2 >/dev/null && echo "@ping6=ok"`,
		fmt.Sprintf(`timeout 30 dhclient -6 -1 -lf %s/d6.leases -pf %s/d6.pid -sf /bin/true eth0 >/dev/null 2>&1 && grep -q iaaddr %s/d6.leases && echo "@dhcp6=ok"`, dir, dir, dir),
		`dhclient -6 -x -pf `+dir+`/d6.pid eth0 >/dev/null 2>&1 || true`,
	))
	ours := implResults(res.Output)
	checkMarkers(t, testenv.Markers(res.Output), map[string]string{"ping6": "ok", "dhcp6": "ok"}, "afterwards: ")

	ns, iface := linuxPeer(t, 18080)
	out, _ := exec.Command("ip", "netns", "exec", ns, "sh", "-c", each(iface, "fd09::2")).CombinedOutput()
	linux := implResults(string(out))

	sideBySide(t, "implementation6 verdicts", implRows, ours, linux)
	if t.Failed() {
		t.Logf("slipway's side:\n%s\nthe Linux peer's:\n%s", res.Output, out)
	}
}
