package metrics

import "github.com/prometheus/client_golang/prometheus"

// tunnelKey is one label set of spooky_l7_open_tunnels.
type tunnelKey struct{ service, route, kind string }

// tunnelBytesKey is one label set of spooky_l7_tunnel_bytes_total.
type tunnelBytesKey struct{ service, route, kind, direction string }

// tunnelMetrics are the request tier's WebSocket and CONNECT tunnels.
type tunnelMetrics struct {
	open       *prometheus.GaugeVec
	opened     *prometheus.CounterVec
	bytes      *prometheus.CounterVec
	openCache  *childCache[tunnelKey, tunnelSeries]
	bytesCache *childCache[tunnelBytesKey, prometheus.Counter]
}

// tunnelSeries are the series a tunnel's opening and closing update.
type tunnelSeries struct {
	open   prometheus.Gauge
	opened prometheus.Counter
}

func newTunnelMetrics() *tunnelMetrics {
	t := &tunnelMetrics{
		open: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "l7", Name: "open_tunnels",
			Help: "Tunnels the request tier holds open, by service, route and kind (websocket, connect, connect-udp).",
		}, []string{"service", "route", "kind"}),
		opened: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "l7", Name: "tunnels_total",
			Help: "Tunnels the request tier opened, by service, route and kind (websocket, connect, connect-udp).",
		}, []string{"service", "route", "kind"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "l7", Name: "tunnel_bytes_total",
			Help: "Bytes relayed through tunnels, by service, route, kind and direction (up: from the client, down: to it).",
		}, []string{"service", "route", "kind", "direction"}),
	}
	t.openCache = newChildCache(func(k tunnelKey) tunnelSeries {
		return tunnelSeries{
			open:   t.open.WithLabelValues(k.service, k.route, k.kind),
			opened: t.opened.WithLabelValues(k.service, k.route, k.kind),
		}
	})
	t.bytesCache = newChildCache(func(k tunnelBytesKey) prometheus.Counter {
		return t.bytes.WithLabelValues(k.service, k.route, k.kind, k.direction)
	})
	return t
}

// TunnelOpened records a tunnel of kind ("websocket", "connect" or
// "connect-udp") opened on route of service. Each call must be matched by
// one TunnelClosed.
func (m *Metrics) TunnelOpened(service, route, kind string) {
	s := m.tunnels.openCache.get(tunnelKey{service, route, kind})
	s.open.Inc()
	s.opened.Inc()
}

// TunnelClosed records the end of a tunnel TunnelOpened recorded.
func (m *Metrics) TunnelClosed(service, route, kind string) {
	m.tunnels.openCache.get(tunnelKey{service, route, kind}).open.Dec()
}

// TunnelBytes counts n bytes relayed in direction ("up" or "down").
func (m *Metrics) TunnelBytes(service, route, kind, direction string, n int) {
	m.tunnels.bytesCache.get(tunnelBytesKey{service, route, kind, direction}).Add(float64(n))
}
