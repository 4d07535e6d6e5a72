package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slipway-net/slipway/control"
	"github.com/slipway-net/slipway/test/testenv"
)

// The "remote" hosts of the egress tests: addresses on the loopback of a
// network namespace the test makes, where slipway runs too, so its
// outbound flows go nowhere else.
const (
	metadataAddr = "169.254.169.254"
	remoteAddr   = "192.0.2.1"
)

// remoteNS makes a namespace with metadataAddr and remoteAddr on its
// loopback and a TCP server answering "svc-PORT" on each of ports of
// both; it is removed when the test ends.
func remoteNS(t *testing.T, ports ...int) string {
	t.Helper()
	testenv.RequireTools(t, "ip", "socat")
	b := make([]byte, 4)
	rand.Read(b)
	ns := "slwpol-" + hex.EncodeToString(b)
	ipRun(t, "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	ipRun(t, "-n", ns, "link", "set", "lo", "up")
	// A new namespace allows no ping sockets: the guests' pings need them.
	ipRun(t, "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647")
	for _, a := range []string{metadataAddr, remoteAddr} {
		ipRun(t, "-n", ns, "addr", "add", a+"/32", "dev", "lo")
		for _, p := range ports {
			cmd := exec.Command("ip", "netns", "exec", ns, "socat",
				fmt.Sprintf("TCP-LISTEN:%d,bind=%s,fork,reuseaddr", p, a), fmt.Sprintf("SYSTEM:echo svc-%d", p))
			testenv.StartProcess(t, "socat", cmd)
		}
	}
	return ns
}

func ipRun(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// probe is a guest's shell line that connects to addr:port and prints
// @NAME= the server's answer, or "refused" for a RST.
func probe(name, addr string, port int) string {
	return fmt.Sprintf(`r=$(socat -T5 -u TCP:%s:%d,connect-timeout=5 STDOUT 2>&1); case "$r" in *refused*) r=refused;; esac; echo "@%s=$r"`, addr, port, name)
}

// runIn runs `slipway run ARGS -- sh -c SH` in namespace ns.
func runIn(t *testing.T, ns string, args []string, sh string) testenv.Result {
	t.Helper()
	full := append(append([]string{"netns", "exec", ns, testenv.Slipway(t), "run"}, args...), "--", "sh", "-c", sh)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", full...).CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return testenv.Result{Output: string(out), Code: code}
}

func TestEgressLinkLocalRefusedByDefault(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "busybox")
	ns := remoteNS(t, 80)
	sh := script(
		probe("meta", metadataAddr, 80),
		probe("other", remoteAddr, 80),
		`busybox ping -c1 -W3 `+metadataAddr+` >/dev/null 2>&1; echo "@ping=$?"`,
	)
	res := runIn(t, ns, nil, sh)
	m := testenv.Markers(res.Output)
	checkMarkers(t, m, map[string]string{"meta": "refused", "other": "svc-80", "ping": "1"}, "by default: ")
	res = runIn(t, ns, []string{"--allow-link-local"}, sh)
	m = testenv.Markers(res.Output)
	checkMarkers(t, m, map[string]string{"meta": "svc-80", "other": "svc-80", "ping": "0"}, "with --allow-link-local: ")
	if t.Failed() {
		t.Logf("output:\n%s", res.Output)
	}
}

func TestEgressRulesWithPorts(t *testing.T) {
	testenv.RequireRoot(t)
	ns := remoteNS(t, 22, 443, 8080)
	res := runIn(t, ns, []string{"--allow", remoteAddr + ":443", "--deny", "192.0.2.0/24:1-1000", "--allow-link-local", "--deny", metadataAddr}, script(
		probe("p443", remoteAddr, 443),
		probe("p22", remoteAddr, 22),
		probe("p8080", remoteAddr, 8080),
		probe("meta", metadataAddr, 8080),
	))
	m := testenv.Markers(res.Output)
	checkMarkers(t, m, map[string]string{"p443": "svc-443", "p22": "refused", "p8080": "svc-8080", "meta": "refused"}, "")
	if t.Failed() {
		t.Logf("output:\n%s", res.Output)
	}
}

// Rules changed through the API decide the next flow: the guest connects,
// the test denies the port, the guest's next connect is refused (and
// counted by reason), the test removes the rule, the next one passes.
func TestEgressRulesThroughAPI(t *testing.T) {
	testenv.RequireRoot(t)
	ns := remoteNS(t, 22)
	api := filepath.Join(t.TempDir(), "api.sock")
	s := startNSIn(t, ns, []string{"--api-socket", api},
		probe("first", remoteAddr, 22), `step 1`, probe("denied", remoteAddr, 22), `step 2`, probe("again", remoteAddr, 22))
	c := control.NewClient(api)
	ctx := context.Background()

	s.at("1")
	var added control.EgressRule
	if err := c.Do(ctx, "POST", "/v1/rules", control.RuleRequest{Rule: "deny " + remoteAddr + ":22"}, &added); err != nil {
		t.Fatal(err)
	}
	var list []control.EgressRule
	if err := c.Do(ctx, "GET", "/v1/rules", nil, &list); err != nil || len(list) != 1 || list[0].ID != added.ID || list[0].Rule != "deny 192.0.2.1/32:22" {
		t.Fatalf("GET /v1/rules = %+v, %v; want the rule added (%+v)", list, err, added)
	}
	if err := c.Do(ctx, "POST", "/v1/rules", control.RuleRequest{Rule: "deny 192.0.2.1/40"}, nil); err == nil || !strings.Contains(err.Error(), "192.0.2.1/40") {
		t.Fatalf("a bad rule: %v, want an error naming it", err)
	}
	s.proceed("1")
	s.at("2")
	var stats struct {
		Forwarder struct {
			Refused map[string]uint64 `json:"refused"`
		} `json:"forwarder"`
	}
	if err := c.Do(ctx, "GET", "/v1/stats", nil, &stats); err != nil {
		t.Fatal(err)
	}
	if got := stats.Forwarder.Refused["denied by an egress rule"]; got != 1 {
		t.Errorf("forwarder refused = %v, want one flow denied by an egress rule", stats.Forwarder.Refused)
	}
	var gone control.EgressRule
	if err := c.Do(ctx, "DELETE", fmt.Sprintf("/v1/rules/%d", added.ID), nil, &gone); err != nil || gone.ID != added.ID {
		t.Fatalf("DELETE: %+v, %v", gone, err)
	}
	if err := c.Do(ctx, "DELETE", fmt.Sprintf("/v1/rules/%d", added.ID), nil, nil); err == nil {
		t.Fatal("deleting a rule twice succeeded")
	}
	s.proceed("2")
	<-s.p.Done()
	m := testenv.Markers(s.p.Output())
	checkMarkers(t, m, map[string]string{"first": "svc-22", "denied": "refused", "again": "svc-22"}, "")
}

// TestRunHostOnlyMode: with --mode host-only the namespace reaches a TCP
// server on the host's 127.0.0.1 through the gateway, and no longer the
// "remote" address it reaches without the flag (TCP refused with a RST,
// pings unanswered), in the default sandbox and in the strict one, whose
// launcher checks each host socket again.
func TestRunHostOnlyMode(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "busybox")
	ns := remoteNS(t, 80)
	const loPort = 8089
	lo := exec.Command("ip", "netns", "exec", ns, "socat",
		fmt.Sprintf("TCP-LISTEN:%d,bind=127.0.0.1,fork,reuseaddr", loPort), "SYSTEM:echo host-lo")
	testenv.StartProcess(t, "socat", lo)
	sh := script(
		probe("gw", "10.0.2.2", loPort),
		probe("remote", remoteAddr, 80),
		`busybox ping -c1 -W3 `+remoteAddr+` >/dev/null 2>&1; echo "@ping=$?"`,
	)
	for _, c := range []struct {
		label string
		args  []string
		want  map[string]string
	}{
		{"nat: ", nil, map[string]string{"gw": "host-lo", "remote": "svc-80", "ping": "0"}},
		{"host-only: ", []string{"--mode", "host-only"}, map[string]string{"gw": "host-lo", "remote": "refused", "ping": "1"}},
		{"host-only, strict: ", []string{"--mode=host-only", "--sandbox=strict"}, map[string]string{"gw": "host-lo", "remote": "refused", "ping": "1"}},
	} {
		res := runIn(t, ns, c.args, sh)
		checkMarkers(t, testenv.Markers(res.Output), c.want, c.label)
		if t.Failed() {
			t.Fatalf("%soutput:\n%s", c.label, res.Output)
		}
	}
}
