package soak

import (
	"fmt"
	"image/color"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// The trend test. A leak under a steady load grows a metric by the same
// amount in every stretch of time, so after warm-up (the first third of
// the load, while pools, caches and the GC's target settle) the mean of
// the last third exceeds the mean of the middle third by the leak's rate
// × a third of the run. Means over a third smooth out the churn's noise
// (flows open at the moment of a sample, the GC's sawtooth in RSS), and a
// margin of 10% plus a small absolute slack per metric keeps that noise
// from failing the run. A slope from a linear regression would say the
// same, but one outlier (a GC just before a sample) moves it more than
// it moves a mean. Then, once the load has stopped, slipway must come
// back: no flow left, and descriptors and goroutines no more than the
// fewest seen under load plus a little (RSS is not checked there: Go
// hands memory back to the system lazily).
const relMargin = 0.10

var absMargin = map[string]float64{"rss_mib": 8, "fds": 16, "goroutines": 16, "flows": 32,
	"vm_rss_mib": 8, "vm_fds": 16, "vm_goroutines": 16, "vm_flows": 32}

// verdict is the trend test's finding for one metric.
type verdict struct {
	Metric         string
	Middle, Last   float64 // means of the load's middle and last thirds
	Quiet, LoadMin float64 // after the load; the fewest under load
	OK             bool
	Why            string
}

func mean(ss []sample, m string) float64 {
	if len(ss) == 0 {
		return 0
	}
	var t float64
	for _, s := range ss {
		t += s.value(m)
	}
	return t / float64(len(ss))
}

// judge applies the trend test to every metric, the VM's slipway's too if
// withVM. The after-the-load checks are the namespace's slipway's only:
// the VM's last boot may still hold its link then.
func judge(samples []sample, withVM bool) []verdict {
	var load []sample
	var last sample
	for _, s := range samples {
		if s.Load {
			load = append(load, s)
		}
		last = s
	}
	third := len(load) / 3
	var out []verdict
	ms := metrics
	if withVM {
		ms = append(append([]string(nil), metrics...), vmMetrics...)
	}
	for _, m := range ms {
		v := verdict{Metric: m, OK: true}
		if third < 3 {
			v.OK, v.Why = false, fmt.Sprintf("only %d samples under load", len(load))
			out = append(out, v)
			continue
		}
		v.Middle, v.Last = mean(load[third:2*third], m), mean(load[2*third:], m)
		v.Quiet = last.value(m)
		v.LoadMin = load[0].value(m)
		for _, s := range load {
			v.LoadMin = min(v.LoadMin, s.value(m))
		}
		if bound := v.Middle*(1+relMargin) + absMargin[m]; v.Last > bound {
			v.OK, v.Why = false, fmt.Sprintf("trends upward: mean %.1f in the last third, %.1f in the middle one (bound %.1f)", v.Last, v.Middle, bound)
		}
		switch m {
		case "flows":
			if v.Quiet > 0 {
				v.OK, v.Why = false, fmt.Sprintf("%.0f flows still open %v after the load", v.Quiet, quiet)
			}
		case "fds", "goroutines":
			if v.Quiet > v.LoadMin+8 {
				v.OK, v.Why = false, fmt.Sprintf("%.0f after the load, more than the %.0f seen under load", v.Quiet, v.LoadMin)
			}
		}
		out = append(out, v)
	}
	return out
}

// guestReport is the guest's tally as the test reads it back.
type guestReport struct {
	TCPFlows   int64  `json:"tcp_flows"`
	TCPFails   int64  `json:"tcp_fails"`
	UDPFlows   int64  `json:"udp_flows"`
	UDPFails   int64  `json:"udp_fails"`
	Bulk       int64  `json:"bulk"`
	BulkFails  int64  `json:"bulk_fails"`
	BulkBytes  int64  `json:"bulk_bytes"`
	DNS        int64  `json:"dns"`
	DNSFails   int64  `json:"dns_fails"`
	Published  int64  `json:"published_served"`
	FirstError string `json:"first_error"`
}

type report struct {
	Duration, Every            time.Duration
	Samples                    []sample
	Guest                      guestReport
	PublishedOK, PublishedFail int64
	VMBoots, VMFails           int64
	VMError                    string
	Verdicts                   []verdict
}

// table is the run in Markdown: the load done, then each metric's trend.
func (r *report) table() string {
	var b strings.Builder
	g := r.Guest
	fmt.Fprintf(&b, "Soak: %v of load, sampled every %v (%d samples), then %v quiet.\n\n", r.Duration, r.Every, len(r.Samples), quiet)
	fmt.Fprintf(&b, "| load | done | failed |\n|---|---:|---:|\n")
	fmt.Fprintf(&b, "| TCP flows (connect, echo, close) | %d | %d |\n", g.TCPFlows, g.TCPFails)
	fmt.Fprintf(&b, "| UDP flows (new source port each) | %d | %d |\n", g.UDPFlows, g.UDPFails)
	fmt.Fprintf(&b, "| bulk downloads, sha256 checked | %d (%d MiB) | %d |\n", g.Bulk, g.BulkBytes>>20, g.BulkFails)
	fmt.Fprintf(&b, "| DNS queries via dnsmasq | %d | %d |\n", g.DNS, g.DNSFails)
	fmt.Fprintf(&b, "| published-port clients | %d | %d |\n", r.PublishedOK, r.PublishedFail)
	fmt.Fprintf(&b, "| QEMU guest boots (reconnects), lease and sha256 checked | %d | %d |\n\n", r.VMBoots, r.VMFails)
	fmt.Fprintf(&b, "| metric | middle third | last third | fewest under load | after the load | verdict |\n|---|---:|---:|---:|---:|---|\n")
	for _, v := range r.Verdicts {
		verdict := "ok"
		if !v.OK {
			verdict = "FAIL: " + v.Why
		}
		fmt.Fprintf(&b, "| %s | %.1f | %.1f | %.1f | %.1f | %s |\n", v.Metric, v.Middle, v.Last, v.LoadMin, v.Quiet, verdict)
	}
	fmt.Fprintf(&b, "\n| t | rss MiB | fds | goroutines | flows | VM's slipway: rss MiB | fds | goroutines | flows |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	step := max(1, len(r.Samples)/30) // the table shows about 30 rows; the plot all
	for i, s := range r.Samples {
		if i%step == 0 || i == len(r.Samples)-1 {
			fmt.Fprintf(&b, "| %v | %.1f | %.0f | %.0f | %.0f | %.1f | %.0f | %.0f | %.0f |\n", s.At.Round(time.Second),
				s.RSSMiB, s.FDs, s.Goroutines, s.Flows, s.VMRSSMiB, s.VMFDs, s.VMGoroutines, s.VMFlows)
		}
	}
	return b.String()
}

// write puts soak.md and soak.png in dir.
func (r *report) write(dir string) error {
	if err := os.WriteFile(filepath.Join(dir, "soak.md"), []byte(r.table()), 0o644); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(dir, "soak.png"))
	if err != nil {
		return err
	}
	defer f.Close()
	return r.plot(f)
}

// plot draws one panel per metric against minutes, with lines where the
// warm-up and the load end.
func (r *report) plot(f *os.File) error {
	const w, h = 900 * vg.Inch / 96, 220 * vg.Inch / 96
	titles := map[string]string{"rss_mib": "resident memory (MiB)", "fds": "open descriptors", "goroutines": "goroutines", "flows": "flows open",
		"vm_rss_mib": "the VM's slipway: resident memory (MiB)", "vm_fds": "the VM's slipway: open descriptors",
		"vm_goroutines": "the VM's slipway: goroutines", "vm_flows": "the VM's slipway: flows open"}
	var rows [][]*plot.Plot
	warm := r.Duration.Minutes() / 3
	for _, v := range r.Verdicts {
		m := v.Metric
		p := plot.New()
		p.Title.Text = titles[m]
		p.X.Label.Text = "minutes"
		xys := make(plotter.XYs, len(r.Samples))
		top := 1.0
		for i, s := range r.Samples {
			xys[i] = plotter.XY{X: s.At.Minutes(), Y: s.value(m)}
			top = max(top, s.value(m))
		}
		line, err := plotter.NewLine(xys)
		if err != nil {
			return err
		}
		line.Color = color.RGBA{R: 0x1f, G: 0x6f, B: 0xd0, A: 0xff}
		p.Add(line)
		for _, x := range []float64{warm, r.Duration.Minutes()} {
			mark, err := plotter.NewLine(plotter.XYs{{X: x, Y: 0}, {X: x, Y: top}})
			if err != nil {
				return err
			}
			mark.Color = color.Gray{Y: 0xa0}
			mark.Dashes = []vg.Length{vg.Points(4), vg.Points(4)}
			p.Add(mark)
		}
		p.Y.Min = 0
		rows = append(rows, []*plot.Plot{p})
	}
	img := vgimg.NewWith(vgimg.UseWH(w, h*vg.Length(len(rows))), vgimg.UseDPI(96))
	dc := draw.New(img)
	dc.SetColor(color.White)
	dc.Fill(dc.Rectangle.Path())
	tiles := draw.Tiles{Rows: len(rows), Cols: 1, PadX: vg.Millimeter * 4, PadY: vg.Millimeter * 4,
		PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 4}
	canvases := plot.Align(rows, tiles, dc)
	for i := range rows {
		rows[i][0].Draw(canvases[i][0])
	}
	_, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f)
	return err
}

// TestJudge: the trend test fails a slow leak and a flow left behind, and
// passes a noisy but flat run.
func TestJudge(t *testing.T) {
	run := func(f func(i int) sample) []sample {
		var ss []sample
		for i := range 150 {
			s := f(i)
			s.At, s.Load = time.Duration(i)*2*time.Second, i < 140
			ss = append(ss, s)
		}
		return ss
	}
	flat := func(i int) sample {
		wobble := float64(i%7) * 3
		return sample{RSSMiB: 30 + wobble, FDs: 40 + wobble, Goroutines: 60 + wobble, Flows: 20 + wobble}
	}
	for _, v := range judge(run(func(i int) sample {
		s := flat(i)
		if i >= 140 {
			s.Flows, s.FDs, s.Goroutines = 0, 30, 50
		}
		return s
	}), false) {
		if !v.OK {
			t.Errorf("a flat run fails: %s: %s", v.Metric, v.Why)
		}
	}
	leak := judge(run(func(i int) sample {
		s := flat(i)
		s.Goroutines += float64(i) / 2 // 70 more over the run
		if i >= 140 {
			s.Flows = 3
		}
		return s
	}), false)
	failed := map[string]bool{}
	for _, v := range leak {
		failed[v.Metric] = !v.OK
	}
	if !failed["goroutines"] || !failed["flows"] || failed["rss_mib"] {
		t.Errorf("verdicts %+v: want goroutines and flows failed, rss passed", leak)
	}
}
