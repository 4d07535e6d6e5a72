package report

import (
	"fmt"
	"io"
	"math"
	"strings"

	"github.com/slipway-net/slipway/bench/internal/stats"
)

// column is one metric as a table column.
type column struct {
	metric string
	title  string
	lower  bool // lower is better
}

// perfColumns are the compared measurements, in the order the tables and
// the chart show them.
func perfColumns(g Group) []column {
	return []column{
		{TCPOut, g.Guest + "→host TCP Gbit/s", false},
		{TCPIn, "host→" + g.Guest + " TCP Gbit/s", false},
		{Latency, "TCP latency µs", true},
		{ConnRate, "HTTP conn/s", false},
		{UDP, g.Guest + "→host UDP Gbit/s", false},
		{UDPIn, "host→" + g.Guest + " UDP Gbit/s", false},
	}
}

// lossOf names the loss metric shown beside a UDP test's rate.
var lossOf = map[string]string{UDP: UDPLoss, UDPIn: UDPInLoss}

// resourceColumns describe what the backend process itself used.
func resourceColumns(g Group) []column {
	return []column{
		{RSSIdle, "idle RSS MiB", true},
		{RSSPeak, "peak RSS MiB", true},
		{CPUOut, "CPU s/GB " + g.Guest + "→host", true},
		{CPUIn, "CPU s/GB host→" + g.Guest, true},
	}
}

// Markdown writes the report. chart, when not empty, is the chart's path
// relative to the markdown file.
func Markdown(w io.Writer, r *Results, chart string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "## slipway benchmark, %s\n\n", r.Date.UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "- Machine: %s\n", r.Machine)
	rounds := fmt.Sprintf("%d rounds, backends interleaved in each round", r.Rounds)
	if r.Rounds == 1 {
		rounds = "1 round"
	}
	fmt.Fprintf(&b, "- Command: `%s` (%s, %s s per test; each cell is the median with min–max over the rounds)\n",
		r.Command, rounds, num(r.TestSeconds))
	if len(r.Versions) > 0 {
		fmt.Fprintf(&b, "- Versions: %s\n", strings.Join(r.Versions, ", "))
	}
	if r.Elapsed > 0 {
		fmt.Fprintf(&b, "- Run time: %.1f min\n", r.Elapsed/60)
	}
	b.WriteString("\n")
	if chart != "" {
		fmt.Fprintf(&b, "![benchmark chart](%s)\n\n", chart)
	}
	for _, g := range r.Groups {
		writeGroup(&b, r, g)
	}
	if rows := targets(r); len(rows) > 0 {
		b.WriteString("### Targets (issue 6; goals, not assertions)\n\n")
		b.WriteString("| target | measured | met |\n|---|---|---|\n")
		for _, t := range rows {
			fmt.Fprintf(&b, "| %s | %s | %s |\n", t.text, t.measured, yesNo(t.met))
		}
		b.WriteString("\n")
	}
	if len(r.Scale) > 0 {
		writeScale(&b, r.Scale)
	}
	if len(r.Failures) > 0 {
		b.WriteString("### Failed measurements\n\n")
		for _, f := range r.Failures {
			fmt.Fprintf(&b, "- %s\n", f)
		}
		b.WriteString("\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func writeGroup(b *strings.Builder, r *Results, g Group) {
	fmt.Fprintf(b, "### %s\n\n", g.Title)
	cols := perfColumns(g)
	header(b, "backend", cols)
	for _, be := range g.Backends {
		name := be
		if be == Slipway {
			name = "**" + be + "**"
		}
		if note := g.Notes[be]; note != "" {
			name += " (" + note + ")"
		}
		cells := []string{name}
		for _, c := range cols {
			cell := cellText(r, g.Key, be, c.metric)
			if loss, ok := lossOf[c.metric]; ok {
				if s, ok := r.Summary(g.Key, be, loss); ok && cell != "—" {
					cell += fmt.Sprintf(", %s%% lost", num(s.Median))
				}
			}
			cells = append(cells, cell)
		}
		row(b, cells)
	}
	b.WriteString("\n")

	// Ratios of medians. For latency the ratio is still slipway's over
	// the peer's, so there lower is better; the header says so.
	var peers []string
	for _, be := range g.Backends {
		if be != Slipway {
			peers = append(peers, be)
		}
	}
	if len(peers) > 0 {
		rc := make([]column, len(cols))
		for i, c := range cols {
			rc[i] = c
			if c.lower {
				rc[i].title += " (lower is better)"
			}
		}
		header(b, "slipway ÷", rc)
		for _, p := range peers {
			cells := []string{p}
			for _, c := range cols {
				cells = append(cells, ratioText(r.Median(g.Key, Slipway, c.metric), r.Median(g.Key, p, c.metric)))
			}
			row(b, cells)
		}
		b.WriteString("\n")
	}

	// Resources only for backends that are processes of their own.
	rcols := resourceColumns(g)
	var withRes []string
	for _, be := range g.Backends {
		for _, c := range rcols {
			if _, ok := r.Summary(g.Key, be, c.metric); ok {
				withRes = append(withRes, be)
				break
			}
		}
	}
	if len(withRes) > 0 {
		b.WriteString("What the backend's own process used (CPU per GB moved in the TCP tests; " +
			"the guest's own CPU is not counted):\n\n")
		header(b, "backend", rcols)
		for _, be := range withRes {
			cells := []string{be}
			for _, c := range rcols {
				cells = append(cells, cellText(r, g.Key, be, c.metric))
			}
			row(b, cells)
		}
		b.WriteString("\n")
	}
}

func writeScale(b *strings.Builder, pts []ScalePoint) {
	b.WriteString("### Scale: concurrent TCP flows through slipway\n\n")
	fmt.Fprintf(b, "Each flow is a closed loop of 64-byte requests and %s-byte responses "+
		"from a namespace to the host's loopback. RSS per flow is (RSS with the flows open and idle − RSS "+
		"before) ÷ flows.\n\n", num(float64(pts[0].ResponseBytes)))
	b.WriteString("| flows | connected (failed) | connect s | Gbit/s | requests | p50 ms | p99 ms | " +
		"RSS MiB before | RSS MiB idle flows | KiB per idle flow | peak RSS MiB | CPU s/GB | errors |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, p := range pts {
		fmt.Fprintf(b, "| %d | %d (%d) | %s | %s | %d | %s | %s | %s | %s | %s | %s | %s | %d |\n",
			p.Flows, p.Connected, p.ConnectFailed, num(p.ConnectSeconds), num(p.Gbps), p.Requests,
			num(p.P50Ms), num(p.P99Ms), num(p.BaseRSSMiB), num(p.IdleRSSMiB), num(p.PerFlowKiB),
			num(p.PeakRSSMiB), num(p.CPUSecPerGB), p.Errors)
	}
	b.WriteString("\n")
}

// target is one of the goals, evaluated on this run.
type target struct {
	text     string
	measured string
	met      bool
}

// targets evaluates the goals that this run has data for.
func targets(r *Results) []target {
	var out []target
	// pairGoal compares backend a's median with b's; ratioGoal is
	// slipway's against a peer.
	pairGoal := func(text, group, metric, a, b string, bound float64, atMost bool) {
		s, p := r.Median(group, a, metric), r.Median(group, b, metric)
		v, ok := stats.Ratio(s, p)
		if !ok {
			return
		}
		met := v >= bound
		if atMost {
			met = v <= bound
		}
		out = append(out, target{text, fmt.Sprintf("%s (%s vs %s)", ratio(v), num(s), num(p)), met})
	}
	ratioGoal := func(text, group, metric, peer string, bound float64, atMost bool) {
		pairGoal(text, group, metric, Slipway, peer, bound, atMost)
	}
	ratioGoal("namespace→host ≥ 0.75× veth", GroupNS, TCPOut, Veth, 0.75, false)
	if best, ok := bestPeer(r, GroupNS, TCPOut, Slirp4netns, Pasta); ok {
		ratioGoal("namespace→host ≥ 2× the best peer ("+best+")", GroupNS, TCPOut, best, 2, false)
	}
	ratioGoal("host→namespace ≥ 0.75× veth", GroupNS, TCPIn, Veth, 0.75, false)
	ratioGoal("host→namespace ≥ 1× pasta", GroupNS, TCPIn, Pasta, 1, false)
	ratioGoal("latency ≤ 1.1× veth", GroupNS, Latency, Veth, 1.1, true)
	// Issue 17: loss host→namespace at the offered rate, against pasta's.
	if s, ok := r.Summary(GroupNS, Slipway, UDPInLoss); ok {
		if p, ok := r.Summary(GroupNS, Pasta, UDPInLoss); ok {
			out = append(out, target{"host→namespace UDP loss ≤ pasta's", fmt.Sprintf("%s%% vs %s%%", num(s.Median), num(p.Median)),
				s.Median <= p.Median})
		}
	}
	ratioGoal("VM guest→host ≥ 1× passt (stream)", GroupVM, TCPOut, Passt, 1, false)
	ratioGoal("VM host→guest ≥ 1× passt (stream)", GroupVM, TCPIn, Passt, 1, false)
	// vhost-user (issue 11): slipway's vhost-user row against passt's
	// and against slipway's own stream transport.
	pairGoal("VM vhost-user guest→host ≥ 1.5× passt vhost-user", GroupVM, TCPOut, SlipwayVhost, PasstVhost, 1.5, false)
	pairGoal("VM vhost-user host→guest ≥ 1.5× passt vhost-user", GroupVM, TCPIn, SlipwayVhost, PasstVhost, 1.5, false)
	pairGoal("VM vhost-user guest→host ≥ 2× slipway stream", GroupVM, TCPOut, SlipwayVhost, Slipway, 2, false)
	pairGoal("VM vhost-user host→guest ≥ 2× slipway stream", GroupVM, TCPIn, SlipwayVhost, Slipway, 2, false)
	pairGoal("VM vhost-user latency ≤ passt vhost-user", GroupVM, Latency, SlipwayVhost, PasstVhost, 1, true)
	pairGoal("VM vhost-user CPU s/GB ≤ passt vhost-user (guest→host)", GroupVM, CPUOut, SlipwayVhost, PasstVhost, 1, true)
	pairGoal("VM vhost-user CPU s/GB ≤ passt vhost-user (host→guest)", GroupVM, CPUIn, SlipwayVhost, PasstVhost, 1, true)
	// libslirp.so.0 (issue 14): -netdev user on slipway's library against
	// Debian's libslirp in the same run, in the default shape at
	// libslirp's MTU and with the MTU a user can opt into.
	for _, b := range []string{QEMUUserSlipwayProcess, QEMUUserSlipwayBig} {
		pairGoal("VM "+b+" guest→host ≥ 2× libslirp", GroupVM, TCPOut, b, QEMUUser, 2, false)
		pairGoal("VM "+b+" host→guest ≥ 2× libslirp", GroupVM, TCPIn, b, QEMUUser, 2, false)
		pairGoal("VM "+b+" latency ≤ libslirp", GroupVM, Latency, b, QEMUUser, 1, true)
	}
	if s, ok := r.Summary(GroupNS, Slipway, RSSIdle); ok {
		out = append(out, target{"idle RSS ≤ 20 MB (namespace)", num(s.Median) + " MiB", s.Median*1.048576 <= 20})
	}
	for _, p := range r.Scale {
		if p.Flows == 10000 && p.Connected > 0 {
			out = append(out, target{"≤ 10 KB per idle TCP flow at 10,000 flows", num(p.PerFlowKiB) + " KiB",
				p.PerFlowKiB*1.024 <= 10})
		}
	}
	return out
}

// bestPeer returns whichever of peers has the highest median.
func bestPeer(r *Results, group, metric string, peers ...string) (string, bool) {
	best, bestV := "", math.Inf(-1)
	for _, p := range peers {
		if v := r.Median(group, p, metric); !math.IsNaN(v) && v > bestV {
			best, bestV = p, v
		}
	}
	return best, best != ""
}

func cellText(r *Results, group, backend, metric string) string {
	s, ok := r.Summary(group, backend, metric)
	if !ok {
		return "—"
	}
	if s.N == 1 {
		return num(s.Median)
	}
	return fmt.Sprintf("%s (%s–%s)", num(s.Median), num(s.Min), num(s.Max))
}

func ratioText(a, b float64) string {
	v, ok := stats.Ratio(a, b)
	if !ok {
		return "—"
	}
	return ratio(v)
}

func ratio(v float64) string { return num(v) + "×" }

// num prints three significant digits at most and no more than two
// decimals: 18.2, 3.04, 0.28, 1234.
func num(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "—"
	}
	d := 2
	if a := math.Abs(v); a >= 1 {
		d = 2 - int(math.Floor(math.Log10(a)))
	}
	d = max(0, min(2, d))
	return fmt.Sprintf("%.*f", d, v)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func header(b *strings.Builder, first string, cols []column) {
	cells := []string{first}
	for _, c := range cols {
		cells = append(cells, c.title)
	}
	row(b, cells)
	b.WriteString("|" + strings.Repeat("---|", len(cells)) + "\n")
}

func row(b *strings.Builder, cells []string) {
	b.WriteString("| " + strings.Join(cells, " | ") + " |\n")
}
