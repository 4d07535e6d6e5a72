package report

import (
	"bytes"
	"image/png"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// sample builds a run with three rounds of made-up numbers.
func sample() *Results {
	r := &Results{
		Date:        time.Date(2026, 11, 23, 18, 0, 0, 0, time.UTC),
		Machine:     "test box (2 cores)",
		Command:     "make bench",
		Rounds:      3,
		TestSeconds: 5,
		Groups: []Group{
			{Key: GroupNS, Title: "Namespaces", Guest: "ns", Backends: []string{Slipway, Slirp4netns, Pasta, Veth},
				Notes: map[string]string{Slirp4netns: "MTU 65520"}},
			{Key: GroupVM, Title: "VMs", Guest: "VM", Backends: []string{Slipway, Passt, QEMUUser}},
		},
		Scale: []ScalePoint{
			{Flows: 10000, Connected: 10000, PerFlowKiB: 12.5, Gbps: 1.5, ResponseBytes: 16384},
		},
		Failures: []string{"round 2 pasta tcp_out: iperf3: timeout"},
	}
	add := func(g, be, m string, vals ...float64) {
		for i, v := range vals {
			r.Add(g, be, i+1, m, v)
		}
	}
	add(GroupNS, Slipway, TCPOut, 9, 10, 11)
	add(GroupNS, Slirp4netns, TCPOut, 3, 3.5, 2.5)
	add(GroupNS, Pasta, TCPOut, 1, 4) // one round failed
	add(GroupNS, Veth, TCPOut, 16, 20, 18)
	add(GroupNS, Slipway, TCPIn, 15, 15, 15)
	add(GroupNS, Pasta, TCPIn, 12, 12, 12)
	add(GroupNS, Veth, TCPIn, 18, 18, 18)
	add(GroupNS, Slipway, Latency, 40, 40, 40)
	add(GroupNS, Veth, Latency, 36, 36, 36)
	add(GroupNS, Slipway, UDP, 2, 2, 2)
	add(GroupNS, Slipway, UDPLoss, 10, 20, 30)
	add(GroupNS, Slipway, UDPIn, 0.9, 0.9, 0.9)
	add(GroupNS, Slipway, UDPInLoss, 1, 2, 3)
	add(GroupNS, Pasta, UDPInLoss, 4, 4, 4)
	add(GroupNS, Slipway, RSSIdle, 15, 15, 15)
	add(GroupVM, Slipway, TCPOut, 3, 3, 3)
	add(GroupVM, Passt, TCPOut, 2.7, 2.7, 2.7)
	add(GroupVM, Slipway, TCPIn, 4, 4, 4)
	add(GroupVM, Passt, TCPIn, 4.4, 4.4, 4.4)
	return r
}

func TestMarkdown(t *testing.T) {
	var b bytes.Buffer
	if err := Markdown(&b, sample(), "latest.png"); err != nil {
		t.Fatal(err)
	}
	md := b.String()
	for _, want := range []string{
		"## slipway benchmark, 2026-11-23 18:00 UTC",
		"`make bench` (3 rounds",
		"![benchmark chart](latest.png)",
		"| **slipway** | 10.0 (9.00–11.0) | 15.0 (15.0–15.0) | 40.0 (40.0–40.0) | — |",
		"| slirp4netns (MTU 65520) | 3.00 (2.50–3.50) |",
		"| pasta | 2.50 (1.00–4.00) |", // the median of the two rounds that worked
		"2.00 (2.00–2.00), 20.0% lost",
		"0.90 (0.90–0.90), 2.00% lost",
		"| host→namespace UDP loss ≤ pasta's | 2.00% vs 4.00% | yes |",
		"| slirp4netns | 3.33× |",
		"| veth | 0.56× | 0.83× | 1.11× |",
		"TCP latency µs (lower is better)",
		"| namespace→host ≥ 0.75× veth | 0.56× (10.0 vs 18.0) | no |",
		"| namespace→host ≥ 2× the best peer (slirp4netns) | 3.33× (10.0 vs 3.00) | yes |",
		"| host→namespace ≥ 1× pasta | 1.25× (15.0 vs 12.0) | yes |",
		"| latency ≤ 1.1× veth | 1.11× (40.0 vs 36.0) | no |",
		"| VM guest→host ≥ 1× passt (stream) | 1.11× (3.00 vs 2.70) | yes |",
		"| VM host→guest ≥ 1× passt (stream) | 0.91× (4.00 vs 4.40) | no |",
		"| idle RSS ≤ 20 MB (namespace) | 15.0 MiB | yes |",
		"| ≤ 10 KB per idle TCP flow at 10,000 flows | 12.5 KiB | no |",
		"| 10000 | 10000 (0) |",
		"- round 2 pasta tcp_out: iperf3: timeout",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("report:\n%s", md)
	}
}

func TestMarkdownMissingPeer(t *testing.T) {
	r := sample()
	r.Groups = r.Groups[:1]
	var kept []Sample
	for _, s := range r.Samples {
		if s.Group == GroupNS && s.Backend != Veth {
			kept = append(kept, s)
		}
	}
	r.Samples = kept
	var b bytes.Buffer
	if err := Markdown(&b, r, ""); err != nil {
		t.Fatal(err)
	}
	md := b.String()
	// No veth data: its row shows dashes and its targets are left out
	// rather than claimed met or missed.
	if !strings.Contains(md, "| veth | — | — |") {
		t.Errorf("veth row not dashed:\n%s", md)
	}
	if strings.Contains(md, "× veth |") || strings.Contains(md, "VM guest") {
		t.Errorf("targets without data shown:\n%s", md)
	}
}

func TestNum(t *testing.T) {
	for in, want := range map[float64]string{
		18.23: "18.2", 3.04: "3.04", 0.2812: "0.28", 1234.6: "1235", 100: "100", 0: "0.00", -2.5: "-2.50",
	} {
		if got := num(in); got != want {
			t.Errorf("num(%v) = %q, want %q", in, got, want)
		}
	}
}

func TestSaveLoad(t *testing.T) {
	r := sample()
	path := filepath.Join(t.TempDir(), "r.json")
	if err := r.Save(path); err != nil {
		t.Fatal(err)
	}
	got, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&got, r) {
		t.Errorf("round trip changed the results:\n%+v\n%+v", got, *r)
	}
}

func TestChart(t *testing.T) {
	var b bytes.Buffer
	if err := Chart(&b, sample()); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(&b)
	if err != nil {
		t.Fatal(err)
	}
	// Six panels across; two groups and the scale runs down, at 96 dpi.
	if sz := img.Bounds().Size(); sz.X != 6*panelWidthPx || sz.Y != 3*panelHeightPx {
		t.Errorf("chart is %v", sz)
	}
	if err := Chart(&b, &Results{}); err == nil {
		t.Error("chart of nothing: no error")
	}
}
