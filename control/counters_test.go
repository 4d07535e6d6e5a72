package control

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slipway-net/slipway/internal/counters"
	"github.com/slipway-net/slipway/internal/endpoint"
	"github.com/slipway-net/slipway/internal/netstack"
	"github.com/slipway-net/slipway/internal/outbound"
	"github.com/slipway-net/slipway/internal/publish"
	"github.com/slipway-net/slipway/internal/vswitch"
	"github.com/slipway-net/slipway/link"
	"github.com/slipway-net/slipway/link/dgram"
	"github.com/slipway-net/slipway/link/pipe"
	"github.com/slipway-net/slipway/network"
	"github.com/slipway-net/slipway/services/dhcp4"
	"github.com/slipway-net/slipway/services/dhcp6"
	"github.com/slipway-net/slipway/services/dns"
	"github.com/slipway-net/slipway/services/ra"
)

// Every counter slipway keeps is shown, under its own name, both in the
// JSON API and in the metrics: the structs' tags are the one table both
// are made from, and a counter field without a tag fails here.
func TestEveryCounterIsShown(t *testing.T) {
	f := newFixture(t)
	near, far := pipe.New("guest", false)
	defer far.Close()
	f.n.Attach(near)
	l, err := endpoint.Listen(endpoint.Spec{Kind: endpoint.Dgram, Network: "unix", Address: filepath.Join(t.TempDir(), "vm.dgram")})
	if err != nil {
		t.Fatal(err)
	}
	go f.n.Serve(l)

	sections := []struct {
		name string
		of   any
	}{
		{"forwarder", &outbound.Stats{}},
		{"publish", &publish.Stats{}},
		{"stack_drops", &netstack.DropCounters{}},
		{"router", &ra.RouterStats{}},
		{"dhcp", &dhcp4.Stats{}},
		{"dhcp6", &dhcp6.Stats{}},
		{"dns", &dns.Stats{}},
		{"listeners", &dgram.MuxStats{}},
	}
	perLink := []any{&vswitch.PortStats{}, &link.Counters{}}
	for _, s := range sections {
		if u := counters.Untagged(s.of); len(u) > 0 {
			t.Errorf("%T: counter fields without a tag: %v", s.of, u)
		}
	}
	for _, s := range perLink {
		if u := counters.Untagged(s); len(u) > 0 {
			t.Errorf("%T: counter fields without a tag: %v", s, u)
		}
	}

	deadline := time.Now().Add(10 * time.Second)
	for !hasSection(f.n, "listeners") {
		if time.Now().After(deadline) {
			t.Fatal("the datagram listener's counters never showed")
		}
		time.Sleep(5 * time.Millisecond)
	}
	_, body := f.do(t, "GET", "/v1/stats", "")
	var stats map[string]map[string]any
	var raw map[string]json.RawMessage
	if err := json.Unmarshal([]byte(body), &raw); err != nil {
		t.Fatal(err)
	}
	stats = map[string]map[string]any{}
	for k, v := range raw {
		var m map[string]any
		if json.Unmarshal(v, &m) == nil {
			stats[k] = m
		}
	}
	_, metrics := f.do(t, "GET", "/metrics", "")
	inMetrics := func(family, name string, labels ...string) bool {
		for _, line := range strings.Split(metrics, "\n") {
			if !strings.HasPrefix(line, family+"{") || !strings.Contains(line, `name="`+name+`"`) {
				continue
			}
			ok := true
			for _, l := range labels {
				ok = ok && strings.Contains(line, l)
			}
			if ok {
				return true
			}
		}
		return false
	}
	for _, s := range sections {
		for _, name := range counters.Names(s.of) {
			if _, ok := stats[s.name][name]; !ok {
				t.Errorf("/v1/stats has no %s.%s", s.name, name)
			}
			if !inMetrics("slipway_"+s.name+"_total", name) && !inMetrics("slipway_"+s.name, name) {
				t.Errorf("/metrics has no slipway_%s[_total]{name=%q}", s.name, name)
			}
		}
	}
	for _, name := range []string{"total", "tcp", "udp", "icmp", "published", "max", "refused_full"} {
		if _, ok := stats["flows"][name]; !ok || (!inMetrics("slipway_flows", name) && !inMetrics("slipway_flows_total", name)) {
			t.Errorf("flows.%s missing from /v1/stats or /metrics", name)
		}
	}

	_, body = f.do(t, "GET", "/v1/links", "")
	var links []map[string]any
	if err := json.Unmarshal([]byte(body), &links); err != nil || len(links) != 1 {
		t.Fatalf("/v1/links: %v %s", err, body)
	}
	drops, _ := links[0]["drops"].(map[string]any)
	for _, s := range perLink {
		for _, name := range counters.Names(s) {
			_, field := links[0][name]
			_, drop := drops[name]
			if !field && !drop {
				t.Errorf("/v1/links has no %s (neither a field nor a drop)", name)
			}
			if !inMetrics("slipway_link_total", name, `link="pipe:guest/a"`) {
				t.Errorf("/metrics has no slipway_link_total{name=%q} for the link", name)
			}
		}
	}
}

func hasSection(n *network.Network, name string) bool {
	for _, s := range n.Counters() {
		if s.Name == name {
			return true
		}
	}
	return false
}
