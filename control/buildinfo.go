package control

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/slipway-net/slipway/internal/buildinfo"
)

// buildInfoGauge is slipway_build_info{version,commit,goversion} 1: the
// build a scrape came from, to join other series against (the usual
// Prometheus *_build_info convention). commit is the short commit, with
// "+dirty" for a modified checkout, or "unknown". How long slipway has run
// is process_start_time_seconds.
func buildInfoGauge() prometheus.Collector {
	in := buildinfo.Read()
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "slipway_build_info",
		Help: "A metric with a constant '1' value labeled by the version, commit and Go version slipway was built from.",
		ConstLabels: prometheus.Labels{
			"version":   in.Version,
			"commit":    in.ShortCommit(),
			"goversion": in.GoVersion,
		},
	})
	g.Set(1)
	return g
}
