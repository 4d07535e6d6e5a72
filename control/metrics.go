package control

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/slipway-net/slipway/network"
)

// collector exports the network's counters to Prometheus, read at scrape
// time from the same table /v1/stats and /v1/links show
// (network.Counters, network.Links), so every counter has one name in
// both: the counter name of section S is, in the metrics,
//
//	slipway_S_total{name="NAME",key="KEY"}  (a running count)
//	slipway_S{name="NAME",key="KEY"}        (a level: leases, flows open)
//
// with key set for counts kept by reason, and a link's counters are
// slipway_link_total{port,link,name}. It is an unchecked collector: the
// families depend on what the network has running.
type collector struct {
	n *network.Network
}

func newCollector(n *network.Network) *collector { return &collector{n: n} }

// Describe sends nothing: the collector is unchecked.
func (c *collector) Describe(chan<- *prometheus.Desc) {}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	link := prometheus.NewDesc("slipway_link_total", "A guest link's traffic (rx is from the guest) and drops, by counter name.", []string{"port", "link", "name"}, nil)
	for _, l := range c.n.Links() {
		port := strconv.Itoa(l.Port)
		for _, v := range l.Counters {
			ch <- prometheus.MustNewConstMetric(link, prometheus.CounterValue, float64(v.Value), port, l.Name, v.Name)
		}
	}
	for _, sec := range c.n.Counters() {
		counters := prometheus.NewDesc("slipway_"+sec.Name+"_total", "Counts of the "+sec.Name+" section of /v1/stats, by counter name and reason (key).", []string{"name", "key"}, nil)
		gauges := prometheus.NewDesc("slipway_"+sec.Name, "Levels of the "+sec.Name+" section of /v1/stats, by counter name.", []string{"name", "key"}, nil)
		// A count by reason with nothing counted yet shows as one
		// sample with an empty key, so that every counter is there.
		for _, v := range sec.Counters {
			d, typ := counters, prometheus.CounterValue
			if v.Gauge {
				d, typ = gauges, prometheus.GaugeValue
			}
			ch <- prometheus.MustNewConstMetric(d, typ, float64(v.Value), v.Name, v.Key)
		}
	}
}
