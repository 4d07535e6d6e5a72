package control

import (
	"github.com/prometheus/client_golang/prometheus"
)

// ProcessUsage is what the process_* metrics say about the process that
// serves the API. A sandboxed engine has no /proc of its own to read it
// from: its launcher reads the engine's and answers (internal/broker).
type ProcessUsage struct {
	CPUSeconds     float64 `json:"cpu_seconds"`
	OpenFDs        float64 `json:"open_fds"`
	MaxFDs         float64 `json:"max_fds"`
	ResidentBytes  float64 `json:"resident_bytes"`
	VirtualBytes   float64 `json:"virtual_bytes"`
	StartTimeEpoch float64 `json:"start_time_seconds"`
}

// ProcessUsageFunc reports the serving process's usage on demand.
type ProcessUsageFunc func() (ProcessUsage, error)

// processCollector exports a ProcessUsageFunc's answer under the names
// Prometheus' own process collector uses, so dashboards need no change.
type processCollector struct {
	usage ProcessUsageFunc
	descs [6]*prometheus.Desc
}

func newProcessCollector(f ProcessUsageFunc) *processCollector {
	d := func(name, help string) *prometheus.Desc { return prometheus.NewDesc(name, help, nil, nil) }
	return &processCollector{usage: f, descs: [6]*prometheus.Desc{
		d("process_cpu_seconds_total", "Total user and system CPU time spent in seconds."),
		d("process_open_fds", "Number of open file descriptors."),
		d("process_max_fds", "Maximum number of open file descriptors."),
		d("process_resident_memory_bytes", "Resident memory size in bytes."),
		d("process_virtual_memory_bytes", "Virtual memory size in bytes."),
		d("process_start_time_seconds", "Start time of the process since unix epoch in seconds."),
	}}
}

func (c *processCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

func (c *processCollector) Collect(ch chan<- prometheus.Metric) {
	u, err := c.usage()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.descs[0], err)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.descs[0], prometheus.CounterValue, u.CPUSeconds)
	for i, v := range []float64{u.OpenFDs, u.MaxFDs, u.ResidentBytes, u.VirtualBytes, u.StartTimeEpoch} {
		ch <- prometheus.MustNewConstMetric(c.descs[i+1], prometheus.GaugeValue, v)
	}
}
