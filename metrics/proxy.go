package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/spooky-lb/spooky/forwarder"
)

var (
	proxyEventsDesc = prometheus.NewDesc(namespace+"_proxy_events_total",
		"The userspace proxy's datagrams and sessions by event: from_clients, to_backends, replies, drop_* (why a datagram was dropped), backend_unreachable (ICMP errors), sessions_created/expired/closed, gro_receives, gso_sends.",
		[]string{"event"}, nil)
	proxyReasonsDesc = prometheus.NewDesc(namespace+"_proxy_decisions_total",
		"The userspace proxy's routing decisions by reason, named as spooky_xdp_packets_total and spooky_xdp_events_total name them.",
		[]string{"reason"}, nil)
	proxySessionsDesc = prometheus.NewDesc(namespace+"_proxy_sessions",
		"Sessions the userspace proxy has open.", nil, nil)
	proxyMaxSessionsDesc = prometheus.NewDesc(namespace+"_proxy_sessions_max",
		"The bound on the userspace proxy's sessions (proxy.max_sessions).", nil, nil)
	proxyBackendPacketsDesc = prometheus.NewDesc(namespace+"_proxy_backend_packets_total",
		"Datagrams the userspace proxy sent to a backend (direction to_backend) or relayed from it (from_backend).",
		[]string{"service", "backend", "direction"}, nil)
	proxyBackendSessionsDesc = prometheus.NewDesc(namespace+"_proxy_backend_sessions",
		"Sessions the userspace proxy has open to a backend.",
		[]string{"service", "backend"}, nil)
)

// proxyCollector reads the proxy's counters when scraped.
type proxyCollector struct {
	read func() *forwarder.ProxyStats
}

func newProxyCollector(read func() *forwarder.ProxyStats) *proxyCollector {
	return &proxyCollector{read: read}
}

func (c *proxyCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{proxyEventsDesc, proxyReasonsDesc, proxySessionsDesc, proxyMaxSessionsDesc,
		proxyBackendPacketsDesc, proxyBackendSessionsDesc} {
		ch <- d
	}
}

func (c *proxyCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.read()
	for name, v := range st.Events {
		ch <- prometheus.MustNewConstMetric(proxyEventsDesc, prometheus.CounterValue, float64(v), name)
	}
	for name, v := range st.Reasons {
		ch <- prometheus.MustNewConstMetric(proxyReasonsDesc, prometheus.CounterValue, float64(v), name)
	}
	ch <- prometheus.MustNewConstMetric(proxySessionsDesc, prometheus.GaugeValue, float64(st.Sessions))
	ch <- prometheus.MustNewConstMetric(proxyMaxSessionsDesc, prometheus.GaugeValue, float64(st.MaxSessions))
	for _, b := range st.Backends {
		ch <- prometheus.MustNewConstMetric(proxyBackendPacketsDesc, prometheus.CounterValue, float64(b.Packets), b.Service, b.Name, "to_backend")
		ch <- prometheus.MustNewConstMetric(proxyBackendPacketsDesc, prometheus.CounterValue, float64(b.Replies), b.Service, b.Name, "from_backend")
		ch <- prometheus.MustNewConstMetric(proxyBackendSessionsDesc, prometheus.GaugeValue, float64(b.Sessions), b.Service, b.Name)
	}
}
