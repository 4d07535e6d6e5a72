package report

import (
	"fmt"
	"image/color"
	"io"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Chart sizes: one panel per measurement, one row per group, wide enough
// that four backend names fit under a panel's bars.
const (
	panelWidthPx  = 360
	panelHeightPx = 320
	chartDPI      = 96
	panelWidth    = panelWidthPx * vg.Inch / chartDPI
	panelHeight   = panelHeightPx * vg.Inch / chartDPI
)

// backendColor makes slipway stand out, the kernel's own limit (veth)
// read as a reference line rather than a competitor, and the peers
// neutral.
func backendColor(backend string) color.Color {
	switch backend {
	case Slipway:
		return color.RGBA{R: 0x1f, G: 0x6f, B: 0xd0, A: 0xff}
	case Veth:
		return color.RGBA{R: 0x9a, G: 0xc8, B: 0x8a, A: 0xff}
	default:
		return color.RGBA{R: 0xa0, G: 0xa0, B: 0xa0, A: 0xff}
	}
}

// Chart writes a PNG: for every group a row of bar charts, one per
// measurement, each bar a backend's median with its min–max as a
// whisker and the median printed above; then, if there were scale runs,
// a row showing how slipway's cost grows with the number of flows.
func Chart(w io.Writer, r *Results) error {
	var rows [][]*plot.Plot
	for _, g := range r.Groups {
		var row []*plot.Plot
		for _, c := range perfColumns(g) {
			title, unit := splitUnit(c.title)
			var bars []bar
			for _, be := range g.Backends {
				s, ok := r.Summary(g.Key, be, c.metric)
				bars = append(bars, bar{name: be, color: backendColor(be), med: s.Median, lo: s.Min, hi: s.Max, ok: ok})
			}
			p, err := barPanel(shortGroup(g)+": "+title, unit, c.lower, bars)
			if err != nil {
				return fmt.Errorf("chart %s %s: %w", g.Key, c.metric, err)
			}
			row = append(row, p)
		}
		rows = append(rows, row)
	}
	if len(r.Scale) > 0 {
		row, err := scaleRow(r.Scale)
		if err != nil {
			return err
		}
		rows = append(rows, row)
	}
	if len(rows) == 0 {
		return fmt.Errorf("chart: no results")
	}
	cols := len(rows[0])
	img := vgimg.NewWith(vgimg.UseWH(panelWidth*vg.Length(cols), panelHeight*vg.Length(len(rows))),
		vgimg.UseDPI(chartDPI))
	dc := draw.New(img)
	// A white background: the default is transparent, which renders as
	// black in some viewers.
	dc.SetColor(color.White)
	dc.Fill(dc.Rectangle.Path())
	tiles := draw.Tiles{Rows: len(rows), Cols: cols, PadX: vg.Millimeter * 4, PadY: vg.Millimeter * 6,
		PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2}
	canvases := plot.Align(rows, tiles, dc)
	for i := range rows {
		for j, p := range rows[i] {
			p.Draw(canvases[i][j])
		}
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(w); err != nil {
		return fmt.Errorf("chart: writing PNG: %w", err)
	}
	return nil
}

// scaleRow charts the scale runs, one bar per flow count, as many panels
// as a group row has.
func scaleRow(pts []ScalePoint) ([]*plot.Plot, error) {
	panels := []struct {
		title, unit string
		lower       bool
		value       func(ScalePoint) float64
		minFlows    int
	}{
		{"scale: throughput by flows", "Gbit/s, all flows", false, func(p ScalePoint) float64 { return p.Gbps }, 1},
		{"scale: p50 latency by flows", "ms per request", true, func(p ScalePoint) float64 { return p.P50Ms }, 1},
		{"scale: p99 latency by flows", "ms per request", true, func(p ScalePoint) float64 { return p.P99Ms }, 1},
		// With a handful of flows the difference is the noise of the
		// heap, not the flows: the table has it, the chart leaves it out.
		{"scale: RSS per idle flow (≥ 100)", "KiB", true, func(p ScalePoint) float64 { return p.PerFlowKiB }, 100},
		{"scale: slipway's peak RSS", "MiB", true, func(p ScalePoint) float64 { return p.PeakRSSMiB }, 1},
		{"scale: slipway's CPU", "s per GB moved", true, func(p ScalePoint) float64 { return p.CPUSecPerGB }, 1},
	}
	var row []*plot.Plot
	for _, pn := range panels {
		var bars []bar
		for _, p := range pts {
			v := pn.value(p)
			bars = append(bars, bar{name: fmt.Sprint(p.Flows), color: backendColor(Slipway),
				med: v, lo: v, hi: v, ok: p.Connected > 0 && p.Flows >= pn.minFlows})
		}
		p, err := barPanel(pn.title, pn.unit, pn.lower, bars)
		if err != nil {
			return nil, fmt.Errorf("chart %s: %w", pn.title, err)
		}
		row = append(row, p)
	}
	return row, nil
}

// bar is one bar of a panel: a median with its range.
type bar struct {
	name        string
	color       color.Color
	med, lo, hi float64
	ok          bool // false: no data, an empty slot
}

// barPanel draws one panel.
func barPanel(title, unit string, lower bool, bars []bar) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title
	p.Y.Label.Text = unit
	if lower {
		p.Y.Label.Text += " (lower is better)"
	}
	p.Y.Min = 0
	var names []string
	var whiskers plotter.XYs
	var errs plotter.YErrors
	var labels plotter.XYLabels
	for i, b := range bars {
		names = append(names, b.name)
		if !b.ok {
			continue
		}
		bc, err := plotter.NewBarChart(plotter.Values{b.med}, vg.Points(36))
		if err != nil {
			return nil, err
		}
		bc.XMin = float64(i)
		bc.Color = b.color
		bc.LineStyle.Width = 0
		p.Add(bc)
		x := float64(i)
		whiskers = append(whiskers, plotter.XY{X: x, Y: b.med})
		errs = append(errs, struct{ Low, High float64 }{b.med - b.lo, b.hi - b.med})
		labels.XYs = append(labels.XYs, plotter.XY{X: x, Y: b.hi})
		labels.Labels = append(labels.Labels, num(b.med))
	}
	p.NominalX(names...)
	if len(whiskers) == 0 {
		return p, nil
	}
	eb, err := plotter.NewYErrorBars(struct {
		plotter.XYs
		plotter.YErrors
	}{whiskers, errs})
	if err != nil {
		return nil, err
	}
	eb.CapWidth = vg.Points(8)
	p.Add(eb)
	lb, err := plotter.NewLabels(labels)
	if err != nil {
		return nil, err
	}
	for i := range lb.TextStyle {
		lb.TextStyle[i].XAlign = draw.XCenter
		lb.TextStyle[i].YAlign = draw.YBottom
	}
	lb.Offset = vg.Point{Y: vg.Points(3)}
	p.Add(lb)
	// Leave room above the tallest whisker for its label.
	_, _, _, ymax := plotter.XYRange(labels.XYs)
	if ymax > 0 {
		p.Y.Max = ymax * 1.15
	}
	return p, nil
}

// splitUnit turns "TCP latency µs" into ("TCP latency", "µs"): the unit
// is the last word; the connection rate gets a fuller one.
func splitUnit(title string) (string, string) {
	if strings.HasSuffix(title, "conn/s") {
		return "HTTP connections", "requests/s, new connection each"
	}
	i := strings.LastIndexByte(title, ' ')
	if i < 0 {
		return title, ""
	}
	return title[:i], title[i+1:]
}

func shortGroup(g Group) string {
	if g.Key == GroupVM {
		return "VM"
	}
	return "netns"
}
