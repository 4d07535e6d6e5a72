// Package e2e drives slipway like its users do: `slipway run` with a real
// network namespace, `slipway serve` with a real QEMU guest, real host
// servers and a real dnsmasq upstream.
package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/slipway-net/slipway/test/testenv"
)

// script joins shell lines run inside the namespace with `set -u`.
func script(lines ...string) string { return strings.Join(append([]string{"set -u"}, lines...), "\n") }

// checkMarkers reports each of want's markers whose value in m (from
// testenv.Markers) differs, naming it as label+key.
func checkMarkers(t *testing.T, m, want map[string]string, label string) {
	t.Helper()
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s%s = %q, want %q", label, k, m[k], v)
		}
	}
}

func runNS(t *testing.T, args []string, sh string) testenv.Result {
	t.Helper()
	full := append(append([]string{"run"}, args...), "--", "sh", "-c", sh)
	return testenv.Run(t, 3*time.Minute, full...)
}

func TestRunNamespaceNetwork(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "curl", "dig", "socat", "busybox", "sha256sum")
	dns := testenv.Dnsmasq(t)
	web, sum := testenv.HTTPFile(t, 50<<20)
	echo := testenv.UDPEcho(t)
	res := runNS(t, []string{"--dns-upstream", dns.String(), "--mtu", "65000", "--dns-search", "corp.example"}, script(
		`echo "@addr=$(ip -4 -o addr show eth0 | awk '{print $4}')"`,
		`echo "@route=$(ip -4 route show default | awk '{print $3}')"`,
		`echo "@mtu=$(cat /sys/class/net/eth0/mtu)"`,
		`echo "@lo=$(ip -o link show lo | grep -c 'UP')"`,
		`echo "@ifaces=$(ip -o link show | grep -c ': ')"`,
		`echo "@sysfs=$(ls /sys/class/net | grep -c eth0)"`,
		`echo "@cgroup=$(ls /sys/fs/cgroup | grep -c .)"`,
		`echo "@resolv=$(grep -c 'nameserver 10.0.2.3' /etc/resolv.conf)"`,
		`echo "@search=$(awk '/^search/{print $2}' /etc/resolv.conf)"`,
		`echo "@dns_udp=$(dig +short +time=3 +tries=1 a.`+testenv.TestDomain+`)"`,
		`echo "@dns_tcp=$(dig +tcp +short +time=3 +tries=1 b.`+testenv.TestDomain+`)"`,
		`echo "@dns_host=$(dig +short +time=3 +tries=1 host.slipway.internal)"`,
		`echo "@resolver=$(getent hosts c.`+testenv.TestDomain+` | awk '{print $1}')"`,
		fmt.Sprintf(`echo "@sha=$(curl -sf http://10.0.2.2:%d/blob | sha256sum | cut -d' ' -f1)"`, web.Port()),
		fmt.Sprintf(`echo "@udp=$(echo ping | socat -T3 - UDP:10.0.2.2:%d)"`, echo.Port()),
		`busybox ping -c1 -W3 10.0.2.2 >/dev/null && echo "@ping=ok"`,
		`exit 0`,
	))
	if res.Code != 0 {
		t.Fatalf("slipway run exited %d:\n%s", res.Code, res.Output)
	}
	m := testenv.Markers(res.Output)
	want := map[string]string{
		"addr": "10.0.2.15/24", "route": "10.0.2.2", "mtu": "65000", "lo": "1", "ifaces": "2", "sysfs": "1",
		"resolv": "1", "search": "corp.example",
		"dns_udp": testenv.TestDomainAddr, "dns_tcp": testenv.TestDomainAddr, "dns_host": "10.0.2.2",
		"resolver": testenv.TestDomainAddr, "sha": sum, "udp": "echo:ping", "ping": "ok",
	}
	checkMarkers(t, m, want, "")
	if m["cgroup"] == "0" || m["cgroup"] == "" {
		t.Errorf("the host's cgroup tree vanished from /sys/fs/cgroup")
	}
	if t.Failed() {
		t.Logf("output:\n%s", res.Output)
	}
}

// TestRunMultiQueueTAP checks --queues: eth0 is a TAP device with that
// many queues, parallel downloads all arrive whole, and the namespace's
// frames leave on more than one queue (each queue's qdisc counts what it
// sent), which is what gives every queue's reader work; --queues 1 is the
// single-queue device of before.
func TestRunMultiQueueTAP(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "curl", "sha256sum", "tc")
	web, sum := testenv.HTTPFile(t, 1<<20)
	const flows = 12
	res := runNS(t, []string{"--queues", "3"}, script(
		`echo "@queues=$(ls /sys/class/net/eth0/queues | grep -c rx-)"`,
		fmt.Sprintf(`for i in $(seq %d); do (curl -sf http://10.0.2.2:%d/blob | sha256sum | cut -d' ' -f1 > /tmp/sum.$i) & done; wait`, flows, web.Port()),
		`echo "@whole=$(grep -lx `+sum+` /tmp/sum.* | wc -l)"`,
		// Each queue's qdisc under mq: how many sent more than a
		// handshake's worth of frames.
		`echo "@busy=$(tc -s qdisc show dev eth0 | awk '/parent/{c=1; next} c && /Sent/{if ($4 > 10) n++; c=0} END{print n+0}')"`,
		`exit 0`,
	))
	if res.Code != 0 {
		t.Fatalf("slipway run --queues 3 exited %d:\n%s", res.Code, res.Output)
	}
	m := testenv.Markers(res.Output)
	checkMarkers(t, m, map[string]string{"queues": "3", "whole": strconv.Itoa(flows)}, "")
	if n, _ := strconv.Atoi(m["busy"]); n < 2 {
		t.Errorf("%s of 3 queues carried the namespace's %d flows, want at least 2", m["busy"], flows)
	}
	one := runNS(t, []string{"--queues", "1"}, `echo "@queues=$(ls /sys/class/net/eth0/queues | grep -c rx-)"`)
	if one.Code != 0 {
		t.Errorf("slipway run --queues 1 exited %d:\n%s", one.Code, one.Output)
	}
	checkMarkers(t, testenv.Markers(one.Output), map[string]string{"queues": "1"}, "--queues 1: ")
	if t.Failed() {
		t.Logf("output:\n%s", res.Output)
	}
}

func TestRunExitStatusPropagates(t *testing.T) {
	testenv.RequireRoot(t)
	if res := runNS(t, nil, "exit 7"); res.Code != 7 {
		t.Fatalf("exit status %d, want 7:\n%s", res.Code, res.Output)
	}
	if res := runNS(t, nil, "kill -TERM $$"); res.Code != 128+15 {
		t.Fatalf("exit status %d for a command killed by SIGTERM, want 143:\n%s", res.Code, res.Output)
	}
	res := testenv.Run(t, time.Minute, "run", "--", "/nonexistent/command")
	if res.Code == 0 || !strings.Contains(res.Output, "/nonexistent/command") {
		t.Fatalf("a missing command: exit %d:\n%s", res.Code, res.Output)
	}
}

func TestRunNoHostLoopback(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "curl", "socat")
	web, _ := testenv.HTTPFile(t, 1024)
	echo := testenv.UDPEcho(t)
	host := testenv.HostAddr(t)
	// A server on the host's own non-loopback address: --no-host-loopback
	// only hides the host's loopback, so this one must still answer.
	outside, _ := testenv.HTTPFileOn(t, netip.AddrPortFrom(host, 0).String(), 1024)
	res := runNS(t, []string{"--no-host-loopback"}, script(
		fmt.Sprintf(`curl -s -m 10 -o /dev/null http://10.0.2.2:%d/; echo "@tcp=$?"`, web.Port()),
		fmt.Sprintf(`echo x | socat -T3 - UDP:10.0.2.2:%d 2>&1 | grep -c 'Connection refused' | sed 's/^/@udp=/'`, echo.Port()),
		// The host's other addresses stay reachable, as with slirp4netns.
		fmt.Sprintf(`curl -s -m 10 -o /dev/null http://%s:%d/ ; echo "@other=$?"`, host, outside.Port()),
	))
	m := testenv.Markers(res.Output)
	// curl exit 7: connection refused, the RST a real closed port gives.
	if m["tcp"] != "7" || m["udp"] != "1" {
		t.Fatalf("with --no-host-loopback: tcp=%q (want 7, refused) udp=%q (want 1, refused):\n%s", m["tcp"], m["udp"], res.Output)
	}
	if m["other"] != "0" {
		t.Fatalf("the host's non-loopback address %s must stay reachable: curl exit %q, want 0:\n%s", host, m["other"], res.Output)
	}
}

func TestRunRestrict(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "curl", "dig")
	dns := testenv.Dnsmasq(t)
	web, _ := testenv.HTTPFile(t, 1024)
	host := testenv.HostAddr(t)
	res := runNS(t, []string{"--restrict", "--dns-upstream", dns.String()}, script(
		fmt.Sprintf(`curl -s -m 10 -o /dev/null http://10.0.2.2:%d/; echo "@gw=$?"`, web.Port()),
		fmt.Sprintf(`curl -s -m 10 -o /dev/null http://%s:%d/; echo "@out=$?"`, host, web.Port()),
		`echo "@dns=$(dig +short +time=3 +tries=1 r.`+testenv.TestDomain+`)"`,
		`busybox ping -c1 -W3 10.0.2.2 >/dev/null && echo "@ping=ok"`,
	))
	m := testenv.Markers(res.Output)
	if m["gw"] != "7" || m["out"] != "7" {
		t.Fatalf("restricted flows: gw=%q out=%q, want 7 (refused) both:\n%s", m["gw"], m["out"], res.Output)
	}
	if m["dns"] != testenv.TestDomainAddr || m["ping"] != "ok" {
		t.Fatalf("DNS and the gateway must still answer in restricted mode: dns=%q ping=%q:\n%s", m["dns"], m["ping"], res.Output)
	}
}

func TestRunDHCPInNamespace(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "busybox")
	res := runNS(t, []string{"--hostname", "guesty", "--domain", "lab.example", "--dns-search", "a.example,b.example", "--mtu", "9000"}, script(
		`cat > /tmp/dhcp.sh <<'EOS'
#!/bin/sh
[ "$1" = bound ] || exit 0
exec >/tmp/lease
echo "@ip=$ip"; echo "@router=$router"; echo "@dns=$dns"; echo "@mtu=$mtu"
echo "@hostname=$hostname"; echo "@domain=$domain"; echo "@search=$search"; echo "@subnet=$subnet"
EOS`,
		`chmod +x /tmp/dhcp.sh`,
		`busybox udhcpc -i eth0 -n -q -f -s /tmp/dhcp.sh -O mtu -O search -O hostname -O domain -t 5 -T 1 >/dev/null 2>&1`,
		`cat /tmp/lease`,
	))
	m := testenv.Markers(res.Output)
	want := map[string]string{"ip": "10.0.2.15", "router": "10.0.2.2", "dns": "10.0.2.3", "mtu": "9000",
		"hostname": "guesty", "domain": "lab.example", "search": "a.example b.example", "subnet": "255.255.255.0"}
	checkMarkers(t, m, want, "lease ")
	if t.Failed() {
		t.Logf("output:\n%s", res.Output)
	}
}

func TestRunBadFlagsExit2(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "--mtu", "70000", "--", "true"}, "--mtu"},
		{[]string{"run", "--gateway", "10.9.9.9", "--", "true"}, "--gateway"},
		{[]string{"run", "--cidr", "nonsense", "--", "true"}, "--cidr"},
		{[]string{"run", "--dns-upstream", "x.y", "--", "true"}, "--dns-upstream"},
		{[]string{"serve", "--listen", "carrier-pigeon:unix:/tmp/x"}, "--listen"},
		{[]string{"serve"}, "--listen"},
		{[]string{"run", "--no-such-flag", "--", "true"}, "no-such-flag"},
		{[]string{"run", "--queues", "0", "--", "true"}, "--queues"},
		{[]string{"run", "--queues", "65", "--", "true"}, "--queues"},
		{[]string{"run", "--mode", "bridged", "--", "true"}, "--mode"},
		{[]string{"serve", "--mode", "hostonly", "--listen", "stream:unix:/tmp/x"}, "--mode"},
	} {
		res := testenv.Run(t, time.Minute, c.args...)
		lines := strings.Split(strings.TrimSpace(res.Output), "\n")
		if res.Code != 2 || len(lines) != 1 || !strings.Contains(res.Output, c.want) {
			t.Errorf("slipway %v: exit %d, output %q; want exit 2 and one line naming %s", c.args, res.Code, res.Output, c.want)
		}
	}
}

func TestRunTearsDownOnSignal(t *testing.T) {
	testenv.RequireRoot(t)
	cmd := exec.Command(testenv.Slipway(t), "run", "--", "sh", "-c", "echo started; exec sleep 300")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	if line != "started\n" {
		t.Fatalf("command did not start: %q", line)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatal("slipway did not exit after SIGTERM")
	}
	if code := cmd.ProcessState.ExitCode(); code != 128+15 {
		t.Fatalf("exit status %d after SIGTERM, want 143 (the command's)", code)
	}
	// The kernel kills the rest of the PID namespace when its init
	// exits, but they take a moment to be gone: wait a bounded while.
	n := countProcesses(t, "sleep 300")
	for deadline := time.Now().Add(10 * time.Second); n != 0 && time.Now().Before(deadline); n = countProcesses(t, "sleep 300") {
		time.Sleep(50 * time.Millisecond)
	}
	if n != 0 {
		t.Fatalf("%d commands still running after slipway exited", n)
	}
}

// countProcesses counts processes whose command line contains s.
func countProcesses(t *testing.T, s string) int {
	t.Helper()
	entries, _ := os.ReadDir("/proc")
	n := 0
	for _, e := range entries {
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err == nil && strings.Contains(strings.ReplaceAll(string(b), "\x00", " "), s) {
			n++
		}
	}
	return n
}

// TestRunRootless runs slipway as an unprivileged user: it must make its
// own user namespace. Debian ships /dev/net/tun open to all users; the test
// makes sure this machine does too, for its duration.
func TestRunRootless(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "setpriv", "curl")
	openTun(t)
	dir, err := os.MkdirTemp("", "slipway-rootless-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	bin := dir + "/slipway"
	data, err := os.ReadFile(testenv.Slipway(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	web, _ := testenv.HTTPFile(t, 1024)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", bin, "run", "--",
		"sh", "-c", fmt.Sprintf(`echo "@uid=$(id -u)"; echo "@addr=$(ip -4 -o addr show eth0 | awk '{print $4}')"; echo "@http=$(curl -s -m 10 http://10.0.2.2:%d/)"`, web.Port())).CombinedOutput()
	if err != nil {
		t.Fatalf("rootless slipway run: %v\n%s", err, out)
	}
	m := testenv.Markers(string(out))
	if m["uid"] != "0" || m["addr"] != "10.0.2.15/24" || m["http"] != "hello from the host" {
		t.Fatalf("rootless namespace: %v\n%s", m, out)
	}
}

// TestRunOutboundAddrAndPcap: outbound sockets bind --outbound-addr (the
// host's server sees it as the client), and --pcap records the guest side
// in a file tcpdump reads.
func TestRunOutboundAddrAndPcap(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "curl", "tcpdump")
	host := testenv.HostAddr(t)
	l, err := net.Listen("tcp4", host.String()+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	seen := make(chan string, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		seen <- c.RemoteAddr().(*net.TCPAddr).IP.String()
		c.Write([]byte("HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nok\n"))
		c.Close()
	}()
	pcapFile := filepath.Join(t.TempDir(), "guest.pcap")
	// The kernel would pick the host's address on its own; a loopback
	// source shows the bind really happened.
	outbound := "127.0.0.1"
	res := runNS(t, []string{"--outbound-addr", outbound, "--pcap", pcapFile},
		fmt.Sprintf(`curl -s -m 10 http://%s/`, l.Addr()))
	if res.Code != 0 {
		t.Fatalf("curl through slipway failed:\n%s", res.Output)
	}
	select {
	case src := <-seen:
		if src != outbound {
			t.Errorf("the host saw the connection from %s, want --outbound-addr %s", src, outbound)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no connection reached the host")
	}
	out, err := exec.Command("tcpdump", "-nr", pcapFile, "tcp").CombinedOutput()
	if err != nil {
		t.Fatalf("tcpdump cannot read the capture: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "10.0.2.15.") || !strings.Contains(string(out), "Flags [S]") {
		t.Fatalf("the capture lacks the guest's connection:\n%s", out)
	}
}

// TestServeBusySocketExit2: a socket path another slipway serves is a
// usage error naming --listen.
func TestServeBusySocketExit2(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "vm.sock")
	testenv.Serve(t, "--listen", "stream:unix:"+sock)
	res := testenv.Run(t, time.Minute, "serve", "--listen", "stream:unix:"+sock)
	if res.Code != 2 || !strings.Contains(res.Output, "--listen") || !strings.Contains(res.Output, "in use") {
		t.Fatalf("exit %d, output %q; want 2 and one line naming --listen and the busy socket", res.Code, res.Output)
	}
}

// TestRunInteractiveExchange keeps one TCP connection and trades lines with
// a host server, pausing between them shorter and longer than the pumps
// linger: both the busy hand-over (the answer arrives while a drain is
// still awake) and the idle one (the poller wakes a new drain) must deliver
// every answer, at once and in order.
func TestRunInteractiveExchange(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "bash")
	port := testenv.TCPServer(t, func(c net.Conn) {
		defer c.Close()
		sc := bufio.NewScanner(c)
		for sc.Scan() {
			fmt.Fprintf(c, "re:%s\n", sc.Text())
		}
	}).Port()
	res := testenv.Run(t, 3*time.Minute, "run", "--", "bash", "-c", fmt.Sprintf(`
exec 3<>/dev/tcp/10.0.2.2/%d || exit 9
n=0
for pause in 0 0 0.01 0.08 0 0.2 0.001 0.06 0 0; do
	n=$((n+1))
	echo "q$n" >&3
	# a liveness bound, not a timing check: a lost wake-up never answers
	read -r -t 5 answer <&3 || { echo "@lost=q$n"; exit 1; }
	[ "$answer" = "re:q$n" ] || { echo "@wrong=$answer"; exit 1; }
	sleep $pause
done
echo "@answered=$n"`, port))
	m := testenv.Markers(res.Output)
	if res.Code != 0 || m["answered"] != "10" {
		t.Fatalf("interactive exchange: exit %d, answered=%q:\n%s", res.Code, m["answered"], res.Output)
	}
}

// TestRunUploadWindowSteady: during a bulk upload from the namespace the
// window slipway advertises stays (nearly always) at one value, so the
// guest's TCP keeps its fast path for every ACK; a window that moves with
// each ACK costs a Linux sender about a fifth of its throughput.
func TestRunUploadWindowSteady(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "socat", "tcpdump")
	port := testenv.TCPServer(t, func(c net.Conn) { io.Copy(io.Discard, c); c.Close() }).Port()
	pcapFile := filepath.Join(t.TempDir(), "upload.pcap")
	res := runNS(t, []string{"--pcap", pcapFile}, script(
		fmt.Sprintf(`head -c 200000000 /dev/zero | socat -b 1048576 -u - TCP:10.0.2.2:%d; echo "@sent=$?"`, port),
	))
	if m := testenv.Markers(res.Output); m["sent"] != "0" {
		t.Fatalf("upload failed: %s", res.Output)
	}
	out, err := exec.Command("tcpdump", "-nr", pcapFile, "tcp and src host 10.0.2.2").CombinedOutput()
	if err != nil {
		t.Fatalf("tcpdump: %v\n%s", err, out)
	}
	// Count the ACKs of the upload's bulk: past its first 4 MB (the
	// first data arrives before the flow's buffer is sized) and before
	// the closing FIN and RST.
	windows := map[string]int{}
	acks := 0
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(strings.NewReplacer(",", "", "[", "", "]", "").Replace(line))
		var ack int
		var win string
		for i := 0; i+1 < len(f); i++ {
			switch f[i] {
			case "ack":
				ack, _ = strconv.Atoi(f[i+1])
			case "win":
				win = f[i+1]
			}
		}
		if !strings.Contains(line, "Flags [.]") || ack < 4<<20 || win == "" {
			continue
		}
		windows[win]++
		acks++
	}
	if acks < 20 {
		t.Fatalf("only %d ACKs from slipway in the capture:\n%s", acks, out)
	}
	// The stack holds the right edge still when a segment arrives before
	// the pump read the previous one, so a few ACKs in a hundred are some
	// bytes short of the rest (96-99% share one value here); without the
	// pinned window the most common value was on a quarter of them, and
	// some were closed.
	most := 0
	for _, n := range windows {
		most = max(most, n)
	}
	if most*100 < acks*75 {
		t.Fatalf("slipway's window changed across ACKs: the most common value is on %d of %d ACKs, want 75%%: %v", most, acks, windows)
	}
}

// TestRunSmallMTUSuperFrames: with a small MTU the stack hands the TAP
// TCP super-frames that the namespace's kernel cuts to the MSS, so a
// download is not one write per 1.4 KB; every byte must still arrive
// intact, over IPv4 and IPv6.
func TestRunSmallMTUSuperFrames(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "curl", "sha256sum")
	web, sum := testenv.HTTPFile(t, 30<<20)
	web6, sum6 := testenv.HTTPFileOn(t, "[::1]:0", 30<<20)
	res := runNS(t, []string{"--mtu", "1500"}, script(
		`echo "@mtu=$(cat /sys/class/net/eth0/mtu)"`,
		`before=$(cat /sys/class/net/eth0/statistics/rx_packets)`,
		fmt.Sprintf(`echo "@sha=$(curl -sf http://10.0.2.2:%d/blob | sha256sum | cut -d' ' -f1)"`, web.Port()),
		fmt.Sprintf(`echo "@sha6=$(curl -sf -g http://[fd00::2]:%d/blob | sha256sum | cut -d' ' -f1)"`, web6.Port()),
		`echo "@rx_packets=$(( $(cat /sys/class/net/eth0/statistics/rx_packets) - before ))"`,
	))
	m := testenv.Markers(res.Output)
	if m["mtu"] != "1500" || m["sha"] != sum || m["sha6"] != sum6 {
		t.Fatalf("mtu=%q sha=%q (want %s) sha6=%q (want %s):\n%s", m["mtu"], m["sha"], sum, m["sha6"], sum6, res.Output)
	}
	// 60 MB in 1500-byte frames would be over 40,000 of them; the TAP
	// counts a super-frame once.
	if n, err := strconv.Atoi(m["rx_packets"]); err != nil || n > 20000 {
		t.Fatalf("the namespace received %q frames for 60 MB at MTU 1500: no super-frames", m["rx_packets"])
	}
}

// processesRunning lists the host's processes whose command line is argv.
func processesRunning(t *testing.T, argv ...string) []int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && string(cmdline) == strings.Join(argv, "\x00")+"\x00" {
			pids = append(pids, pid)
		}
	}
	return pids
}

// TestRunLeavesNoProcessBehind: what the command starts in the background
// ends when the command does (its own PID namespace), unless
// --keep-children asks for the old behaviour.
func TestRunLeavesNoProcessBehind(t *testing.T) {
	testenv.RequireRoot(t)
	// A sleep nobody else runs: its length names it on the host.
	token := fmt.Sprintf("%d.%d", 7000+os.Getpid()%1000, time.Now().UnixNano()%1000000)
	background := fmt.Sprintf(`(sleep %s </dev/null >/dev/null 2>&1 &); sleep %s </dev/null >/dev/null 2>&1 &`, token, token)
	res := runNS(t, nil, script(
		background,
		`echo "@ps=$(ps -e -o comm= 2>/dev/null | grep -c sleep)"`,
		`echo "@pid=$$"`,
		`exit 7`,
	))
	if res.Code != 7 {
		t.Fatalf("slipway run exited %d, want the command's 7:\n%s", res.Code, res.Output)
	}
	m := testenv.Markers(res.Output)
	// The command sees its namespace's processes only: itself is not
	// PID 1 (slipway's init is) and both sleeps are there.
	if m["ps"] != "2" || m["pid"] == "1" {
		t.Errorf("inside: %s sleeps listed, shell pid %s; want 2 and not 1\n%s", m["ps"], m["pid"], res.Output)
	}
	if left := processesRunning(t, "sleep", token); len(left) > 0 {
		for _, pid := range left {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		t.Fatalf("%d background processes outlived slipway run: pids %v", len(left), left)
	}

	keep := runNS(t, []string{"--keep-children"}, script(background, `exit 0`))
	left := processesRunning(t, "sleep", token)
	for _, pid := range left {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	if keep.Code != 0 || len(left) != 2 {
		t.Fatalf("--keep-children: exit %d, %d background processes left, want 0 and 2\n%s", keep.Code, len(left), keep.Output)
	}
}

// TestRunPassesSignals: a signal to slipway run reaches the command
// (through the namespace's init), and slipway exits as the command did.
func TestRunPassesSignals(t *testing.T) {
	testenv.RequireRoot(t)
	p := testenv.StartProcess(t, "slipway run", exec.Command(testenv.Slipway(t), "run", "--", "sh", "-c",
		`trap 'echo "@got=TERM"; exit 42' TERM; echo "@ready=1"; while :; do sleep 0.05; done`))
	if !p.WaitOutput("@ready=1", 30*time.Second) {
		t.Fatalf("the command never started:\n%s", p.Output())
	}
	p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.Done():
	case <-time.After(30 * time.Second):
		t.Fatalf("slipway run still running 30s after SIGTERM:\n%s", p.Output())
	}
	var ee *exec.ExitError
	if !errors.As(p.Err(), &ee) || ee.ExitCode() != 42 {
		t.Fatalf("slipway run ended with %v, want the trap's exit 42:\n%s", p.Err(), p.Output())
	}
	if !strings.Contains(p.Output(), "@got=TERM") {
		t.Fatalf("the command's trap did not run:\n%s", p.Output())
	}
}
