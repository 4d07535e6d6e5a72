package control

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/slipway-net/slipway/network"
)

// collector exports the network's counters to Prometheus. It reads them at
// scrape time from the same snapshot /v1/stats shows, so the data path
// keeps only its own atomic counters.
type collector struct {
	n *network.Network

	linkFrames, linkBytes, linkDrops           *prometheus.Desc
	flows, flowsMax, flowsRefused              *prometheus.Desc
	refused, connectFailed                     *prometheus.Desc
	forwards, publishedPorts, publishRefused   *prometheus.Desc
	publishConnectFailed, stackDrops, uptime   *prometheus.Desc
	dhcpLeases, dhcpMessages, dnsQueries, dnsX *prometheus.Desc
}

func newCollector(n *network.Network) *collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("slipway_"+name, help, labels, nil)
	}
	return &collector{
		n:                    n,
		linkFrames:           d("link_frames_total", "Frames through a guest link; direction rx is from the guest.", "port", "link", "direction"),
		linkBytes:            d("link_bytes_total", "Bytes through a guest link; direction rx is from the guest.", "port", "link", "direction"),
		linkDrops:            d("link_drops_total", "Frames a guest link dropped, by reason.", "port", "link", "reason"),
		flows:                d("flows", "Live flows between guests and the host.", "proto", "direction"),
		flowsMax:             d("flows_max", "The flow table's limit (--max-flows)."),
		flowsRefused:         d("flows_refused_full_total", "Flows refused because the flow table was full."),
		refused:              d("forwarder_refused_total", "Outbound flows the policy refused, by reason.", "reason"),
		connectFailed:        d("forwarder_connect_failed_total", "Outbound host connects or sockets that failed."),
		forwards:             d("forwards", "Published port rules."),
		publishedPorts:       d("published_ports", "Host ports published."),
		publishRefused:       d("publish_refused_total", "Clients of published ports refused because the flow table was full."),
		publishConnectFailed: d("publish_connect_failed_total", "Connections to published ports the guest did not accept."),
		stackDrops:           d("stack_drops_total", "Frames dropped at the stack's input, by reason.", "reason"),
		uptime:               d("uptime_seconds", "Seconds since the network started."),
		dhcpLeases:           d("dhcp_leases", "DHCP leases held."),
		dhcpMessages:         d("dhcp_messages_total", "DHCP messages received, by outcome.", "outcome"),
		dnsQueries:           d("dns_queries_total", "DNS queries from guests."),
		dnsX:                 d("dns_answers_total", "DNS answers to guests, by kind.", "kind"),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.linkFrames, c.linkBytes, c.linkDrops, c.flows, c.flowsMax, c.flowsRefused, c.refused,
		c.connectFailed, c.forwards, c.publishedPorts, c.publishRefused, c.publishConnectFailed,
		c.stackDrops, c.uptime, c.dhcpLeases, c.dhcpMessages, c.dnsQueries, c.dnsX,
	} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for _, l := range links(c.n) {
		port := strconv.Itoa(l.Port)
		counter(c.linkFrames, l.RxFrames, port, l.Name, "rx")
		counter(c.linkFrames, l.TxFrames, port, l.Name, "tx")
		counter(c.linkBytes, l.RxBytes, port, l.Name, "rx")
		counter(c.linkBytes, l.TxBytes, port, l.Name, "tx")
		for reason, v := range l.Drops {
			counter(c.linkDrops, v, port, l.Name, reason)
		}
	}
	st := stats(c.n)
	live := map[[2]string]int{}
	for _, f := range c.n.Flows().List() {
		dir := "outbound"
		if f.Forward != 0 {
			dir = "published"
		}
		live[[2]string{string(f.Proto), dir}]++
	}
	for _, proto := range []string{"tcp", "udp"} {
		for _, dir := range []string{"outbound", "published"} {
			gauge(c.flows, float64(live[[2]string{proto, dir}]), proto, dir)
		}
	}
	gauge(c.flowsMax, float64(st.Flows.Max))
	counter(c.flowsRefused, st.Flows.RefusedFull)
	for reason, v := range st.Forwarder.Refused {
		counter(c.refused, v, reason)
	}
	counter(c.connectFailed, st.Forwarder.ConnectFailed)
	gauge(c.forwards, float64(st.Publish.Forwards))
	gauge(c.publishedPorts, float64(st.Publish.Ports))
	counter(c.publishRefused, st.Publish.Refused)
	counter(c.publishConnectFailed, st.Publish.ConnectFailed)
	for reason, v := range st.StackDrops {
		counter(c.stackDrops, v, reason)
	}
	gauge(c.uptime, st.UptimeSeconds)
	gauge(c.dhcpLeases, float64(st.DHCP.Leases))
	counter(c.dhcpMessages, st.DHCP.Replied, "replied")
	for reason, v := range st.DHCP.Dropped {
		counter(c.dhcpMessages, v, "dropped-"+reason)
	}
	counter(c.dnsQueries, st.DNS.Queries)
	for kind, v := range map[string]uint64{
		"local": st.DNS.Local, "forwarded": st.DNS.Forwarded, "servfail": st.DNS.ServFail,
		"overload": st.DNS.Overload, "formerr": st.DNS.FormErr,
	} {
		counter(c.dnsX, v, kind)
	}
}
