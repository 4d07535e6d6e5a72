// Package stats reduces benchmark samples to the figures the report shows:
// median with min and max over rounds, percentiles of latencies, and
// ratios between backends.
//
// Medians, not means: on a shared two-core machine one round in three can
// be hit by another process, and a median ignores that round while a mean
// does not.
package stats

import (
	"math"
	"slices"
)

// Summary describes a set of samples.
type Summary struct {
	N      int
	Median float64
	Min    float64
	Max    float64
}

// Summarize returns the median, min and max of xs, ignoring NaNs (a
// round whose measurement failed). ok is false when nothing is left.
func Summarize(xs []float64) (s Summary, ok bool) {
	vals := make([]float64, 0, len(xs))
	for _, x := range xs {
		if !math.IsNaN(x) {
			vals = append(vals, x)
		}
	}
	if len(vals) == 0 {
		return Summary{}, false
	}
	slices.Sort(vals)
	return Summary{
		N:      len(vals),
		Median: median(vals),
		Min:    vals[0],
		Max:    vals[len(vals)-1],
	}, true
}

// median of sorted, non-empty vals; an even count averages the middle
// two, so two rounds give their midpoint rather than favouring one.
func median(vals []float64) float64 {
	n := len(vals)
	if n%2 == 1 {
		return vals[n/2]
	}
	return (vals[n/2-1] + vals[n/2]) / 2
}

// Percentile returns the p-th percentile (0 < p <= 100) of sorted by the
// nearest-rank method: the smallest sample such that at least p% of the
// samples are less than or equal to it. Nearest rank always returns a
// real observation, which is what a latency percentile should be. It
// returns NaN for no samples.
func Percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 || p <= 0 || p > 100 {
		return math.NaN()
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	if rank < 1 {
		rank = 1
	}
	return sorted[rank-1]
}

// Ratio returns a/b, or ok=false when either is missing (NaN) or b is
// not positive, so a failed peer never shows up as an infinite lead.
func Ratio(a, b float64) (r float64, ok bool) {
	if math.IsNaN(a) || math.IsNaN(b) || b <= 0 {
		return 0, false
	}
	return a / b, true
}
