package e2e

import (
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/slipway-net/slipway/test/testenv"
)

// diffRow is one probe of testdata/differential.py and what it must get
// from slipway's gateway and from a Linux host.
type diffRow struct {
	probe string
	// slipway is the answer slipway must give; linux the Linux peer's
	// where it differs ("" = the same). info rows are printed, not
	// asserted: values each stack picks for itself.
	slipway, linux string
	info           bool
	// why is the reason of a difference; the README's list says the same.
	why string
}

// diffRows: the answers as they are. A row whose slipway answer changes
// fails the test; a difference not listed here fails it too.
var diffRows = slices.Concat([]diffRow{
	{probe: "tcp_syn_closed", slipway: "RA"},
	{probe: "tcp_syn_open", slipway: "SA"},
}, synAck("tcp_syn_open", "1460"), []diffRow{
	{probe: "tcp_syn_open_no_options", slipway: "SA"},
	{probe: "tcp_ack_closed", slipway: "R"},
	{probe: "tcp_ack_open", slipway: "R"},
	{probe: "tcp_fin_closed", slipway: "RA"},
	{probe: "tcp_fin_open", slipway: "RA", linux: "none",
		why: "slipway learns whether a host port listens only when a SYN makes it connect; to any other segment that opens nothing every port answers as a closed one does (RST), where a Linux listener ignores a FIN"},
	{probe: "tcp_null_closed", slipway: "RA"},
	{probe: "tcp_xmas_closed", slipway: "RA"},
	{probe: "tcp_rst_open", slipway: "none"},
	// Fixed: gVisor took a SYN-FIN for a SYN (stack_drops bad_tcp_flags).
	{probe: "tcp_synfin_open", slipway: "none"},
	{probe: "udp_closed", slipway: "icmp 3/3"},
	{probe: "icmp_echo", slipway: "echo-reply"},
	{probe: "icmp_echo_large", slipway: "echo-reply"},
	{probe: "icmp_timestamp", slipway: "none", linux: "icmp 14/0",
		why: "ICMP timestamp requests are not answered (gVisor has none; they only tell a clock)"},
	{probe: "ip_unknown_protocol", slipway: "icmp 3/2"},
	{probe: "udp_ttl1_beyond", slipway: "icmp 3/3", linux: "icmp 11/0",
		why: "slipway is not a router: it ends every flow and opens its own host socket, so a TTL of 1 is no hop (no Time Exceeded; traceroute sees the destination at once), and the answer is the destination's"},
	{probe: "tcp6_syn_closed", slipway: "RA"},
	{probe: "tcp6_syn_open", slipway: "SA"},
}, synAck("tcp6_syn_open", "1440"), []diffRow{
	// Fixed: the quote was rebuilt as an empty datagram, which scapy did
	// not take for an answer.
	{probe: "udp6_closed", slipway: "icmp6 1/4"},
	{probe: "icmp6_echo", slipway: "echo-reply"},
	{probe: "ip6_unknown_next_header", slipway: "icmp6 4/1"},
	{probe: "nping_tcp_closed", slipway: "RA"},
	{probe: "nping_tcp_open", slipway: "SA"},
	{probe: "nping_udp_closed", slipway: "icmp 3/3"},
	{probe: "nping_icmp_echo", slipway: "icmp 0/0"},
})

// synAck is the rows of a SYN-ACK's details (probe's): the options a stack
// must advertise, the MSS of a 1500-byte MTU, the TTL, and the values
// each stack picks.
func synAck(probe, mss string) []diffRow {
	return []diffRow{
		{probe: probe + "_mss", slipway: mss},
		{probe: probe + "_wscale", slipway: "present"},
		{probe: probe + "_wscale_value", info: true},
		{probe: probe + "_sack", slipway: "present"},
		{probe: probe + "_timestamps", slipway: "present"},
		{probe: probe + "_window", info: true},
		{probe: probe + "_ttl", slipway: "64"},
	}
}

// probeAnswers are the answers among a probe run's markers (p_NAME), by
// probe name.
func probeAnswers(m map[string]string) map[string]string {
	a := map[string]string{}
	for k, v := range m {
		if name, ok := strings.CutPrefix(k, "p_"); ok {
			a[name] = v
		}
	}
	return a
}

// sideBySide logs rows with slipway's and the Linux peer's answers (ours,
// linux: by probe) as a table titled title, and fails the test for each
// answer that is not the row's: slipway's own, and Linux's (the same
// unless the row says otherwise, when a change of the probe or the
// kernel shows). Info rows must only have a value.
func sideBySide(t *testing.T, title string, rows []diffRow, ours, linux map[string]string) {
	t.Helper()
	var table strings.Builder
	fmt.Fprintf(&table, "%-28s %-14s %-14s %s\n", "probe", "slipway", "linux", "")
	for _, r := range rows {
		got, peer := ours[r.probe], linux[r.probe]
		mark := ""
		switch {
		case r.info:
			mark = "(each stack's own)"
		case got != peer:
			mark = "differs: " + r.why
		}
		fmt.Fprintf(&table, "%-28s %-14s %-14s %s\n", r.probe, got, peer, mark)
		if r.info {
			if got == "" || got == "none" {
				t.Errorf("%s: slipway gave no value", r.probe)
			}
			continue
		}
		if got != r.slipway {
			t.Errorf("%s: slipway answered %q, want %q", r.probe, got, r.slipway)
		}
		want := r.linux
		if want == "" {
			want = r.slipway
		}
		if peer != want {
			t.Errorf("%s: the Linux peer answered %q, want %q (the probe or the kernel changed)", r.probe, peer, want)
		}
	}
	t.Logf("%s:\n%s", title, table.String())
}

// closedPort is a port of the host's loopback closed for both TCP and UDP.
func closedPort(t *testing.T) int {
	t.Helper()
	for i := 0; i < 100; i++ {
		p := testenv.FreePort(t, "tcp")
		if c, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", p)); err == nil {
			c.Close()
			return p
		}
	}
	t.Fatal("no port free for both TCP and UDP")
	return 0
}

// linuxPeer makes two network namespaces joined by a veth pair: the
// prober (10.9.0.1, fd09::1) and a Linux host (10.9.0.2, fd09::2) whose
// TCP port listens (v4 and v6), which routes 10.9.2.0/24 on (so a TTL of
// 1 expires there). It returns the prober's namespace and interface.
func linuxPeer(t *testing.T, port int) (ns, iface string) {
	t.Helper()
	id := fmt.Sprintf("%d", time.Now().UnixNano()%1000000)
	a, b := "slwprobe"+id, "slwpeer"+id
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v %s", args, err, out)
		}
	}
	run("netns", "add", a)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", a).Run() })
	run("netns", "add", b)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", b).Run() })
	run("link", "add", "va"+id, "netns", a, "type", "veth", "peer", "name", "vb"+id, "netns", b)
	for _, c := range [][]string{
		{"-n", a, "link", "set", "lo", "up"}, {"-n", b, "link", "set", "lo", "up"},
		{"-n", a, "addr", "add", "10.9.0.1/24", "dev", "va" + id},
		{"-n", b, "addr", "add", "10.9.0.2/24", "dev", "vb" + id},
		{"-n", a, "addr", "add", "fd09::1/64", "dev", "va" + id, "nodad"},
		{"-n", b, "addr", "add", "fd09::2/64", "dev", "vb" + id, "nodad"},
		{"-n", a, "link", "set", "va" + id, "up"}, {"-n", b, "link", "set", "vb" + id, "up"},
		{"-n", a, "route", "add", "10.9.2.0/24", "via", "10.9.0.2"},
		{"-n", b, "route", "add", "10.9.2.0/24", "via", "10.9.0.3"},
	} {
		run(c...)
	}
	if out, err := exec.Command("ip", "netns", "exec", b, "sysctl", "-qw", "net.ipv4.ip_forward=1").CombinedOutput(); err != nil {
		t.Fatalf("forwarding in the peer: %v %s", err, out)
	}
	srv := exec.Command("ip", "netns", "exec", b, "socat", fmt.Sprintf("TCP6-LISTEN:%d,ipv6only=0,fork,reuseaddr", port), "SYSTEM:true")
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		out, err := exec.Command("ip", "netns", "exec", b, "ss", "-Hltn", fmt.Sprintf("sport = :%d", port)).Output()
		if err == nil && len(out) > 0 {
			return a, "va" + id
		}
		if time.Now().After(deadline) {
			t.Fatalf("socat never listened in %s: %v", b, err)
		}
	}
}

// TestDifferentialProbes sends one probe set (scapy and nping) to
// slipway's gateway from a `slipway run` namespace and to a Linux host
// over a veth pair, prints both answers side by side, and asserts
// slipway's answers (diffRows): the same as Linux's, or the listed
// differences, each said in the README.
func TestDifferentialProbes(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "/usr/bin/python3", "nping", "socat", "ss", "busybox", "ip")
	probes, err := filepath.Abs("testdata/differential.py")
	if err != nil {
		t.Fatal(err)
	}
	web, _ := testenv.HTTPFile(t, 1024)
	web6, _ := testenv.HTTPFileOn(t, "[::1]:0", 1024)
	closed := closedPort(t)
	host := testenv.HostAddr(t)
	// The MTU of the veth, so both sides' MSS mean the same.
	res := runNS(t, []string{"--mtu", "1500"}, script(
		`busybox ping -c1 -W3 10.0.2.2 >/dev/null`,
		fmt.Sprintf(`/usr/bin/python3 %s 10.0.2.2 fd00::2 %d %d %d %s`, probes, web.Port(), web6.Port(), closed, host),
	))
	ours := testenv.Markers(res.Output)

	peerPort := 18080
	ns, _ := linuxPeer(t, peerPort)
	out, err := exec.Command("ip", "netns", "exec", ns, "/usr/bin/python3", probes,
		"10.9.0.2", "fd09::2", fmt.Sprint(peerPort), fmt.Sprint(peerPort), fmt.Sprint(closed), "10.9.2.1").CombinedOutput()
	if err != nil {
		t.Fatalf("probing the Linux peer: %v\n%s", err, out)
	}
	linux := testenv.Markers(string(out))

	sideBySide(t, "answers to the same probes", diffRows, probeAnswers(ours), probeAnswers(linux))
	if t.Failed() {
		t.Logf("slipway's side:\n%s\nthe Linux peer's:\n%s", res.Output, out)
	}
}
