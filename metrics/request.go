package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// requestBuckets are the bounds, in seconds, of the request latency
// histogram: from a cached answer on the same host (1 ms) to a slow
// upstream near a typical proxy timeout (30 s).
var requestBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// statusClasses are the code label's values, indexed by status/100.
var statusClasses = [...]string{"other", "1xx", "2xx", "3xx", "4xx", "5xx"}

// statusClass returns the class of an HTTP status ("2xx"), or "other" for
// a value outside 100..599 (no status was sent).
func statusClass(status int) uint8 {
	if status < 100 || status > 599 {
		return 0
	}
	return uint8(status / 100)
}

// requestKey is one label set of spooky_l7_requests_total.
type requestKey struct {
	service, route, pool, upstream string
	class                          uint8
}

// requestSeries are the series one finished request updates.
type requestSeries struct {
	count prometheus.Counter
	took  prometheus.Observer
}

// requestMetrics are the request tier's per-request series.
type requestMetrics struct {
	total    *prometheus.CounterVec
	duration *prometheus.HistogramVec
	cache    *childCache[requestKey, requestSeries]
}

func newRequestMetrics() *requestMetrics {
	r := &requestMetrics{
		total: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "l7", Name: "requests_total",
			Help: "Requests the request tier answered, by service, route, pool, upstream and status class (code); route, pool and upstream are empty when no route matched or no upstream was tried.",
		}, []string{"service", "route", "pool", "upstream", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "l7", Name: "request_duration_seconds",
			Help:    "Time from a request's arrival to the end of its response, by service and pool.",
			Buckets: requestBuckets,
		}, []string{"service", "pool"}),
	}
	r.cache = newChildCache(func(k requestKey) requestSeries {
		return requestSeries{
			count: r.total.WithLabelValues(k.service, k.route, k.pool, k.upstream, statusClasses[k.class]),
			took:  r.duration.WithLabelValues(k.service, k.pool),
		}
	})
	return r
}

// ObserveRequest records one finished request of service: the route that
// matched, the pool and the upstream that answered (each "" if none: no
// route matched, or the request failed before an upstream was tried), the
// status sent to the client (counted by class: "2xx") and how long it
// took. It does not allocate once a label set has been seen.
func (m *Metrics) ObserveRequest(service, route, pool, upstream string, status int, took time.Duration) {
	s := m.requests.cache.get(requestKey{service, route, pool, upstream, statusClass(status)})
	s.count.Inc()
	s.took.Observe(took.Seconds())
}

// Connection protocols of spooky_l7_open_connections.
const (
	// ProtoQUIC is an HTTP/3 connection.
	ProtoQUIC = "quic"
	// ProtoTCP is an HTTP/1.1 or HTTP/2 connection on the TCP listener.
	ProtoTCP = "tcp"
)

// connKey is one label set of spooky_l7_open_connections.
type connKey struct{ service, proto string }

// connMetrics are the request tier's open connections.
type connMetrics struct {
	open  *prometheus.GaugeVec
	cache *childCache[connKey, prometheus.Gauge]
}

func newConnMetrics() *connMetrics {
	c := &connMetrics{open: prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: namespace, Subsystem: "l7", Name: "open_connections",
		Help: "Client connections the request tier holds open, by service and protocol (quic, tcp).",
	}, []string{"service", "proto"})}
	c.cache = newChildCache(func(k connKey) prometheus.Gauge { return c.open.WithLabelValues(k.service, k.proto) })
	return c
}

// ConnOpened records a client connection of service accepted over proto
// (ProtoQUIC or ProtoTCP). Each call must be matched by one ConnClosed.
func (m *Metrics) ConnOpened(service, proto string) { m.conns.cache.get(connKey{service, proto}).Inc() }

// ConnClosed records the end of a connection ConnOpened recorded.
func (m *Metrics) ConnClosed(service, proto string) { m.conns.cache.get(connKey{service, proto}).Dec() }
