package publish_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/slipway-net/slipway/control"
	"github.com/slipway-net/slipway/internal/publish"
	"github.com/slipway-net/slipway/network"
)

// runPeerecho starts slipway run with peerecho serving TCP :80 and UDP
// :5000 in the namespace, extra flags before the command.
func runPeerecho(t *testing.T, ns string, flags ...string) *slipwayProc {
	_, peerecho := binaries(t)
	args := append([]string{"run"}, flags...)
	args = append(args, "--", peerecho, "-tcp", ":80", "-udp", ":5000")
	p := startSlipway(t, ns, args...)
	return p
}

// TestNamespacePublishKeepsClientAddress: a client's connection to a
// published TCP port and its datagrams to a published UDP port reach the
// server in the namespace from the client's own address and port; loopback
// clients, which a guest cannot answer, come from the gateway.
func TestNamespacePublishKeepsClientAddress(t *testing.T) {
	needRoot(t)
	ns := hostNS(t)
	p := runPeerecho(t, ns, "-p", "8080:80", "-p", "5000:5000/udp")

	expectTCPPeer(t, ns, 40001, 30*time.Second)
	if !strings.Contains(p.Output(), "tcp peer="+hostAddr+":40001") {
		t.Errorf("the guest did not log the client's address:\n%s", p.Output())
	}
	lo, err := tcpPeer(ns, "127.0.0.1:8080", 0)
	if err != nil || !strings.HasPrefix(lo, "peer=10.0.2.2:") {
		t.Errorf("loopback client: got %q, %v; want it from the gateway 10.0.2.2", lo, err)
	}

	// Two UDP clients each get their own answer.
	expectUDPPeers(t, ns, "hello", 40011, 40012)
	if got, err := udpPeer(ns, "127.0.0.1:5000", 0, "lo"); err != nil || !strings.HasPrefix(got, "peer=10.0.2.2:") {
		t.Errorf("loopback UDP client: got %q, %v; want it from 10.0.2.2", got, err)
	}

	// The UDP flows are in the flow table, published, with their bytes.
	var flows []control.Flow
	if err := p.client().Do(context.Background(), "GET", "/v1/flows", nil, &flows); err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, f := range flows {
		if f.Direction == "published" && f.Proto == "udp" && strings.HasPrefix(f.Host, hostAddr+":4001") {
			found++
			if f.Remote != f.Host || f.Guest != "10.0.2.15:5000" || f.ToGuestBytes != uint64(len("hello-0")) || f.ToHostBytes == 0 {
				t.Errorf("flow %+v: want remote = host, guest 10.0.2.15:5000, %d bytes to the guest and the answer's to the host", f, len("hello-0"))
			}
		}
	}
	if found != 2 {
		t.Errorf("want the 2 UDP client flows in /v1/flows, got %+v", flows)
	}
}

// TestNamespacePublishSourceGateway: --publish-source=gateway hides the
// client behind the gateway address.
func TestNamespacePublishSourceGateway(t *testing.T) {
	needRoot(t)
	ns := hostNS(t)
	runPeerecho(t, ns, "--publish-source=gateway", "-p", "8080:80", "-p", "5000:5000/udp")
	var got string
	waitFor(t, 30*time.Second, "the published TCP port", func() (err error) {
		got, err = tcpPeer(ns, hostAddr+":8080", 40002)
		return err
	})
	if !strings.HasPrefix(got, "peer=10.0.2.2:") {
		t.Errorf("got %q, want the gateway 10.0.2.2", got)
	}
	if got, err := udpPeer(ns, hostAddr+":5000", 40021, "x"); err != nil || !strings.HasPrefix(got, "peer=10.0.2.2:") {
		t.Errorf("UDP: got %q, %v; want the gateway", got, err)
	}
}

// TestNamespacePublishBindError: a port that cannot be bound stops
// start-up with an error naming the rule.
func TestNamespacePublishBindError(t *testing.T) {
	needRoot(t)
	slipway, _ := binaries(t)
	ns := hostNS(t)
	holder := exec.Command("ip", "netns", "exec", ns, "socat", "TCP4-LISTEN:8080,reuseaddr", "-")
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { holder.Process.Kill(); holder.Wait() })
	waitFor(t, 10*time.Second, "socat to listen", func() error {
		return exec.Command("ip", "netns", "exec", ns, "sh", "-c", "cat /proc/net/tcp | grep -q ':1F90 00000000:0000 0A'").Run()
	})
	out, err := exec.Command("ip", "netns", "exec", ns, slipway, "run", "-p", "8080:80", "--", "true").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "0.0.0.0:8080:10.0.2.15:80/tcp") || !strings.Contains(string(out), "address already in use") {
		t.Errorf("want a start-up error naming the rule and the cause, got %v:\n%s", err, out)
	}
}

// checkRuntimeForwards adds and removes a forward to guest port 80 (and
// UDP 5000) through each of the three APIs, checking each takes effect at
// once, and that the event stream reported every change.
func checkRuntimeForwards(t *testing.T, ns string, p *slipwayProc) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := subscribe(t, ctx, p.api)
	c := p.client()
	// The first connection may find the guest's server still starting.
	reachable := func(port int) error {
		waitFor(t, 30*time.Second, fmt.Sprintf("port %d", port), func() error {
			_, err := tcpPeer(ns, fmt.Sprintf("%s:%d", hostAddr, port), 0)
			return err
		})
		return nil
	}
	expectGone := func(api string, port int) {
		if _, err := tcpPeer(ns, fmt.Sprintf("%s:%d", hostAddr, port), 0); err == nil {
			t.Errorf("%s: port %d still answers after removal", api, port)
		}
	}

	// slipway's own API.
	var fw publish.Forward
	if err := c.Do(ctx, "POST", "/v1/forwards", control.ForwardRequest{Spec: "9101:80"}, &fw); err != nil {
		t.Fatalf("/v1: add: %v", err)
	}
	if err := reachable(9101); err != nil {
		t.Errorf("/v1: added forward does not answer: %v", err)
	}
	var udp publish.Forward
	if err := c.Do(ctx, "POST", "/v1/forwards", control.ForwardRequest{Spec: "9104:5000/udp"}, &udp); err != nil {
		t.Fatalf("/v1: add udp: %v", err)
	}
	if got, err := udpPeer(ns, hostAddr+":9104", 40031, "rt"); err != nil || got != "peer="+hostAddr+":40031 rt" {
		t.Errorf("/v1: added UDP forward: got %q, %v", got, err)
	}
	for _, id := range []uint64{fw.ID, udp.ID} {
		if err := c.Do(ctx, "DELETE", "/v1/forwards/"+strconv.FormatUint(id, 10), nil, nil); err != nil {
			t.Fatalf("/v1: remove %d: %v", id, err)
		}
	}
	expectGone("/v1", 9101)

	// slirp4netns's API, as rootlesskit's port driver speaks it.
	reply := slirpCall(t, p.api, `{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"0.0.0.0","host_port":9102,"guest_addr":"","guest_port":80}}`)
	ret, _ := reply["return"].(map[string]any)
	id, ok := ret["id"].(float64)
	if !ok {
		t.Fatalf("slirp4netns add_hostfwd: %v", reply)
	}
	if err := reachable(9102); err != nil {
		t.Errorf("slirp4netns: added forward does not answer: %v", err)
	}
	list := slirpCall(t, p.api, `{"execute":"list_hostfwd"}`)
	if !strings.Contains(fmt.Sprint(list), "host_port:9102") {
		t.Errorf("slirp4netns list_hostfwd lacks the forward: %v", list)
	}
	reply = slirpCall(t, p.api, fmt.Sprintf(`{"execute":"remove_hostfwd","arguments":{"id":%d}}`, int(id)))
	if _, ok := reply["return"]; !ok {
		t.Fatalf("slirp4netns remove_hostfwd: %v", reply)
	}
	expectGone("slirp4netns", 9102)

	// gvproxy's API.
	hc := &http.Client{Transport: &http.Transport{DialContext: unixDialer(p.api)}}
	post := func(path, body string) int {
		resp, err := hc.Post("http://gvproxy"+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if st := post("/services/forwarder/expose", `{"local":":9103","remote":"10.0.2.15:80","protocol":"tcp"}`); st != http.StatusOK {
		t.Fatalf("gvproxy expose: HTTP %d", st)
	}
	if err := reachable(9103); err != nil {
		t.Errorf("gvproxy: exposed port does not answer: %v", err)
	}
	if st := post("/services/forwarder/unexpose", `{"local":":9103","protocol":"tcp"}`); st != http.StatusOK {
		t.Fatalf("gvproxy unexpose: HTTP %d", st)
	}
	expectGone("gvproxy", 9103)

	// Every change was an event, in order.
	want := []string{"forward-added 9101", "forward-added 9104", "forward-removed 9101", "forward-removed 9104",
		"forward-added 9102", "forward-removed 9102", "forward-added 9103", "forward-removed 9103"}
	for i, w := range want {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatalf("event stream ended after %d events", i)
			}
			if got := fmt.Sprintf("%s %d", ev.Type, ev.Forward.HostPort); got != w {
				t.Errorf("event %d: %s, want %s", i, got, w)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("event %d (%s) never came", i, w)
		}
	}
}

// subscribe streams /v1/events, forwarding forward events only.
func subscribe(t *testing.T, ctx context.Context, sock string) <-chan network.Event {
	hc := &http.Client{Transport: &http.Transport{DialContext: unixDialer(sock)}}
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://slipway/v1/events", nil)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("events: HTTP %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	ch := make(chan network.Event, 64)
	go func() {
		defer close(ch)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			var ev network.Event
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				t.Errorf("event %q: %v", sc.Text(), err)
				return
			}
			if ev.Forward != nil {
				ch <- ev
			}
		}
	}()
	return ch
}

// TestNamespaceRuntimeForwards: forwards added and removed at run time
// through /v1, slirp4netns's and gvproxy's APIs take effect at once.
func TestNamespaceRuntimeForwards(t *testing.T) {
	needRoot(t)
	ns := hostNS(t)
	// No port is published at start; the APIs add them.
	p := runPeerecho(t, ns)
	checkRuntimeForwards(t, ns, p)
}

// TestNamespaceWrk: 100 concurrent clients for 30 s through a published
// port, each request on a new connection (so tens of thousands of
// connections come and go, client ports are reused while the guest still
// holds them in TIME-WAIT), with no errors; afterwards every flow is gone
// and slipway holds no more file descriptors than before.
//
// The server is Go's net/http in peerecho: busybox httpd listens with a
// backlog of 9, and 100 clients overflow it within the guest itself.
func TestNamespaceWrk(t *testing.T) {
	if testing.Short() {
		t.Skip("30 s load test")
	}
	needRoot(t, "wrk", "curl")
	ns := hostNS(t)
	_, peerecho := binaries(t)
	p := startSlipway(t, ns, "run", "-p", "8080:8000", "--", peerecho, "-http", ":8000")
	url := "http://" + hostAddr + ":8080/"
	waitFor(t, 30*time.Second, "the server through the published port", func() error {
		return exec.Command("ip", "netns", "exec", ns, "curl", "-sf", "-o", "/dev/null", "--max-time", "5", url).Run()
	})
	c := p.client()
	noFlows := func() error {
		var flows []control.Flow
		if err := c.Do(context.Background(), "GET", "/v1/flows", nil, &flows); err != nil {
			return err
		}
		if len(flows) != 0 {
			return fmt.Errorf("%d flows still open", len(flows))
		}
		return nil
	}
	waitFor(t, 60*time.Second, "no flows", noFlows)
	before := p.fds(t)
	// Counted from here: the readiness probes above may have reached the
	// guest before its server listened (a refused connect, counted).
	var st0 control.Stats
	if err := c.Do(context.Background(), "GET", "/v1/stats", nil, &st0); err != nil {
		t.Fatal(err)
	}

	out, err := exec.Command("ip", "netns", "exec", ns, "wrk", "-c", "100", "-t", "2", "-d", "30s", "--timeout", "10s",
		"-H", "Connection: close", url).CombinedOutput()
	if err != nil {
		t.Fatalf("wrk: %v\n%s", err, out)
	}
	t.Logf("wrk:\n%s", out)
	if m := regexp.MustCompile(`(\d+) requests in`).FindSubmatch(out); m == nil || string(m[1]) == "0" {
		t.Errorf("wrk made no requests")
	}
	if strings.Contains(string(out), "Socket errors") || strings.Contains(string(out), "Non-2xx") {
		t.Errorf("wrk saw errors")
	}
	waitFor(t, 60*time.Second, "every flow to close", noFlows)
	if after := p.fds(t); after != before {
		t.Errorf("slipway holds %d file descriptors after the load, %d before", after, before)
	}
	var st control.Stats
	if err := c.Do(context.Background(), "GET", "/v1/stats", nil, &st); err != nil {
		t.Fatal(err)
	}
	refused := st.Counter("publish", "refused") - st0.Counter("publish", "refused")
	failed := st.Counter("publish", "connect_failed") - st0.Counter("publish", "connect_failed")
	if refused != 0 || failed != 0 {
		t.Errorf("published port refused %d and failed %d connections under wrk", refused, failed)
	}
}

// nsSLAAC is the `slipway run` namespace's SLAAC address (fd00::/64 and the
// EUI-64 of its MAC 52:54:0a:00:02:0f).
const nsSLAAC = "fd00::5054:aff:fe00:20f"

// TestNamespacePublishIPv6: ports published on IPv6 host addresses reach an
// IPv4 guest (from the gateway: the client's family cannot be kept) and an
// IPv6 guest (keeping the IPv6 client's own address), TCP and UDP.
func TestNamespacePublishIPv6(t *testing.T) {
	needRoot(t)
	ns := hostNS(t)
	runPeerecho(t, ns,
		"-p", "[::]:8080:80", // to the IPv4 guest address
		"-p", "[::]:8086:["+nsSLAAC+"]:80",
		"-p", "[::]:5006:["+nsSLAAC+"]:5000/udp")
	var got string
	waitFor(t, 30*time.Second, "the published TCP port over IPv6", func() (err error) {
		got, err = tcpPeer(ns, "["+hostAddr6+"]:8080", 0)
		return err
	})
	if !strings.HasPrefix(got, "peer=10.0.2.2:") {
		t.Errorf("IPv6 client of the IPv4 guest: %q, want it from the gateway 10.0.2.2", got)
	}
	got, err := tcpPeer(ns, "["+hostAddr6+"]:8086", 40061)
	if want := "peer=[" + hostAddr6 + "]:40061"; err != nil || got != want {
		t.Errorf("IPv6 client of the IPv6 guest: %q, %v; want %q", got, err, want)
	}
	got, err = tcpPeer(ns, "[::1]:8086", 0)
	if err != nil || !strings.HasPrefix(got, "peer=[fd00::2]:") {
		t.Errorf("loopback IPv6 client: %q, %v; want it from the IPv6 gateway fd00::2", got, err)
	}
	got, err = udpPeer(ns, "["+hostAddr6+"]:5006", 40062, "v6")
	if want := "peer=[" + hostAddr6 + "]:40062 v6"; err != nil || got != want {
		t.Errorf("IPv6 UDP client of the IPv6 guest: %q, %v; want %q", got, err, want)
	}
}
