package e2e

import (
	"fmt"
	"os/exec"
	"testing"
	"time"

	"github.com/slipway-net/slipway/test/testenv"
)

// nsSLAAC is the namespace's SLAAC address in `slipway run`: fd00::/64 and
// the modified EUI-64 of its MAC 52:54:0a:00:02:0f.
const nsSLAAC = "fd00::5054:aff:fe00:20f"

func TestRunIPv6(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "curl", "dig", "socat", "busybox", "sha256sum")
	dns := testenv.Dnsmasq(t)
	web, sum := testenv.HTTPFileOn(t, "[::1]:0", 20<<20)
	echo := testenv.UDPEchoOn(t, "[::1]:0")
	res := runNS(t, []string{"--dns-upstream", dns.String()}, script(
		`echo "@addr=$(ip -6 -o addr show eth0 scope global | awk '{print $4}')"`,
		`echo "@route=$(ip -6 route show default | awk '{print $3}')"`,
		`busybox ping -6 -c1 -W3 fd00::2 >/dev/null && echo "@ping=ok"`,
		fmt.Sprintf(`echo "@sha=$(curl -sf -g http://[fd00::2]:%d/blob | sha256sum | cut -d' ' -f1)"`, web.Port()),
		fmt.Sprintf(`echo "@udp=$(echo ping6 | socat -T3 - UDP6:[fd00::2]:%d)"`, echo.Port()),
		`echo "@aaaa=$(dig +short +time=3 +tries=1 aaaa x.v6.`+testenv.TestDomain+`)"`,
		`echo "@over6=$(dig +short +time=3 +tries=1 @fd00::3 a.`+testenv.TestDomain+`)"`,
		`echo "@host6=$(dig +short +time=3 +tries=1 aaaa host.slipway.internal)"`,
		`echo "@resolv=$(grep -c 'nameserver fd00::3' /etc/resolv.conf)"`,
	))
	m := testenv.Markers(res.Output)
	want := map[string]string{
		"addr": nsSLAAC + "/64", "route": "fe80::5055:aff:fe00:202", "ping": "ok", "sha": sum, "udp": "echo:ping6",
		"aaaa": "2001:db8::55", "over6": testenv.TestDomainAddr, "host6": "fd00::2", "resolv": "1",
	}
	checkMarkers(t, m, want, "")
	if t.Failed() {
		t.Logf("output:\n%s", res.Output)
	}
}

func TestRunNoIPv6(t *testing.T) {
	testenv.RequireRoot(t)
	res := runNS(t, []string{"--no-ipv6"}, script(
		`sleep 1`,
		`echo "@global=$(ip -6 -o addr show eth0 scope global | grep -c inet6)"`,
		`busybox ping -6 -c1 -W1 fd00::2 >/dev/null 2>&1 || echo "@ping=failed"`,
		`echo "@resolv=$(grep -c fd00 /etc/resolv.conf)"`,
	))
	m := testenv.Markers(res.Output)
	if m["global"] != "0" || m["ping"] != "failed" || m["resolv"] != "0" {
		t.Fatalf("with --no-ipv6: %v\n%s", m, res.Output)
	}
}

// TestIPv6FailsFastWithoutHostRoute runs slipway in a namespace whose only
// interface is lo: IPv6 destinations have no route on the host, and the
// guest must learn so at once while IPv4 (here: the host's loopback) works.
func TestIPv6FailsFastWithoutHostRoute(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "curl", "socat", "ss")
	ns := fmt.Sprintf("slwbare%d", time.Now().UnixNano()%100000)
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	exec.Command("ip", "-n", ns, "link", "set", "lo", "up").Run()
	srv := exec.Command("ip", "netns", "exec", ns, "socat", "TCP4-LISTEN:8123,bind=127.0.0.1,fork,reuseaddr", "SYSTEM:echo hello-v4")
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
	// Wait until the server listens.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		out, err := exec.Command("ip", "netns", "exec", ns, "ss", "-Hltn", "sport = :8123").Output()
		if err == nil && len(out) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("socat never listened on 127.0.0.1:8123 in %s: %v", ns, err)
		}
	}
	out, _ := exec.Command("ip", "netns", "exec", ns, testenv.Slipway(t), "run", "--", "sh", "-c", script(
		`curl -s -m 20 -g -o /dev/null http://[2001:db8::1]:80/; echo "@v6=$?"`,
		`echo "@v4=$(socat -T5 - TCP4:10.0.2.2:8123 </dev/null)"`,
	)).CombinedOutput()
	m := testenv.Markers(string(out))
	// curl 7: could not connect (the RST of an unreachable destination),
	// not 28: a timeout.
	if m["v6"] != "7" || m["v4"] != "hello-v4" {
		t.Fatalf("v6=%q (want 7) v4=%q (want hello-v4):\n%s", m["v6"], m["v4"], out)
	}
}

// TestRunIPv6LargeDatagrams: a UDP answer larger than the MTU reaches an
// IPv6 guest in fragments, and the guest accepts it. (The stack leaves
// UDP checksums to the link and fragments first; IPv6 forbids a missing
// UDP checksum, so the guest dropped such answers.)
func TestRunIPv6LargeDatagrams(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "socat", "head", "wc")
	echo := testenv.UDPEchoOn(t, "[::1]:0")
	echo4 := testenv.UDPEcho(t)
	res := runNS(t, []string{"--mtu", "1280"}, script(
		fmt.Sprintf(`echo "@v6=$(head -c 3000 /dev/zero | tr '\0' x | socat -T3 - UDP6:[fd00::2]:%d | wc -c)"`, echo.Port()),
		fmt.Sprintf(`echo "@v4=$(head -c 3000 /dev/zero | tr '\0' x | socat -T3 - UDP4:10.0.2.2:%d | wc -c)"`, echo4.Port()),
	))
	m := testenv.Markers(res.Output)
	// The echo server prefixes "echo:" to the 3000 bytes it got.
	if m["v6"] != "3005" || m["v4"] != "3005" {
		t.Fatalf("answers of 3005 bytes at MTU 1280: IPv6 got %q bytes, IPv4 %q:\n%s", m["v6"], m["v4"], res.Output)
	}
}
