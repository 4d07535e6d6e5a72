package stats

import (
	"math"
	"testing"
)

func TestSummarize(t *testing.T) {
	nan := math.NaN()
	for _, tc := range []struct {
		name string
		in   []float64
		want Summary
		ok   bool
	}{
		{"empty", nil, Summary{}, false},
		{"only failures", []float64{nan, nan}, Summary{}, false},
		{"one", []float64{4}, Summary{N: 1, Median: 4, Min: 4, Max: 4}, true},
		{"odd unsorted", []float64{9, 1, 5}, Summary{N: 3, Median: 5, Min: 1, Max: 9}, true},
		{"even averages the middle", []float64{4, 1, 3, 10}, Summary{N: 4, Median: 3.5, Min: 1, Max: 10}, true},
		{"failure skipped", []float64{2, nan, 8, 6}, Summary{N: 3, Median: 6, Min: 2, Max: 8}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := Summarize(tc.in)
			if ok != tc.ok || got != tc.want {
				t.Errorf("Summarize(%v) = %+v, %v; want %+v, %v", tc.in, got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestSummarizeLeavesInputAlone(t *testing.T) {
	in := []float64{3, 1, 2}
	Summarize(in)
	if in[0] != 3 || in[1] != 1 || in[2] != 2 {
		t.Errorf("input reordered: %v", in)
	}
}

func TestPercentile(t *testing.T) {
	sorted := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for _, tc := range []struct {
		p    float64
		want float64
	}{
		{50, 5}, {90, 9}, {99, 10}, {100, 10}, {10, 1}, {0.1, 1}, {55, 6},
	} {
		if got := Percentile(sorted, tc.p); got != tc.want {
			t.Errorf("Percentile(1..10, %v) = %v, want %v", tc.p, got, tc.want)
		}
	}
	if got := Percentile([]float64{7}, 99); got != 7 {
		t.Errorf("one sample: got %v", got)
	}
	for _, p := range []float64{0, -1, 101} {
		if got := Percentile(sorted, p); !math.IsNaN(got) {
			t.Errorf("Percentile(p=%v) = %v, want NaN", p, got)
		}
	}
	if got := Percentile(nil, 50); !math.IsNaN(got) {
		t.Errorf("no samples: got %v, want NaN", got)
	}
}

func TestRatio(t *testing.T) {
	if r, ok := Ratio(3, 2); !ok || r != 1.5 {
		t.Errorf("Ratio(3, 2) = %v, %v", r, ok)
	}
	for _, tc := range [][2]float64{{1, 0}, {1, -2}, {math.NaN(), 1}, {1, math.NaN()}} {
		if _, ok := Ratio(tc[0], tc[1]); ok {
			t.Errorf("Ratio(%v, %v) ok, want not ok", tc[0], tc[1])
		}
	}
	if r, ok := Ratio(0, 5); !ok || r != 0 {
		t.Errorf("Ratio(0, 5) = %v, %v; a zero result is a real result", r, ok)
	}
}
