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
// whisker and the median printed above.
func Chart(w io.Writer, r *Results) error {
	if len(r.Groups) == 0 {
		return fmt.Errorf("chart: no results")
	}
	cols := len(perfColumns(r.Groups[0]))
	rows := make([][]*plot.Plot, len(r.Groups))
	for i, g := range r.Groups {
		for _, c := range perfColumns(g) {
			p, err := panel(r, g, c)
			if err != nil {
				return fmt.Errorf("chart %s %s: %w", g.Key, c.metric, err)
			}
			rows[i] = append(rows[i], p)
		}
	}
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

// panel draws one measurement of one group.
func panel(r *Results, g Group, c column) (*plot.Plot, error) {
	p := plot.New()
	title, unit := splitUnit(c.title)
	p.Title.Text = shortGroup(g) + ": " + title
	p.Y.Label.Text = unit
	if c.lower {
		p.Y.Label.Text += " (lower is better)"
	}
	p.Y.Min = 0
	var names []string
	var whiskers plotter.XYs
	var errs plotter.YErrors
	var labels plotter.XYLabels
	for i, be := range g.Backends {
		names = append(names, be)
		s, ok := r.Summary(g.Key, be, c.metric)
		if !ok {
			continue
		}
		bar, err := plotter.NewBarChart(plotter.Values{s.Median}, vg.Points(36))
		if err != nil {
			return nil, err
		}
		bar.XMin = float64(i)
		bar.Color = backendColor(be)
		bar.LineStyle.Width = 0
		p.Add(bar)
		x := float64(i)
		whiskers = append(whiskers, plotter.XY{X: x, Y: s.Median})
		errs = append(errs, struct{ Low, High float64 }{s.Median - s.Min, s.Max - s.Median})
		labels.XYs = append(labels.XYs, plotter.XY{X: x, Y: s.Max})
		labels.Labels = append(labels.Labels, num(s.Median))
	}
	p.NominalX(names...)
	if len(whiskers) > 0 {
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
		p.Y.Max = ymax * 1.15
	}
	return p, nil
}

// splitUnit turns "TCP latency µs" into ("TCP latency", "µs"): the unit
// is the last word, or the last two for "HTTP conn/s".
func splitUnit(title string) (string, string) {
	i := strings.LastIndexByte(title, ' ')
	if i < 0 {
		return title, ""
	}
	if strings.HasSuffix(title, "conn/s") {
		return "HTTP connections", "requests/s, new connection each"
	}
	return title[:i], title[i+1:]
}

func shortGroup(g Group) string {
	if g.Key == GroupVM {
		return "VM"
	}
	return "netns"
}
