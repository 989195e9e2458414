package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spooky-lb/spooky/health"
)

var (
	targetHealthDesc = prometheus.NewDesc(namespace+"_target_health",
		"A target's combined health (healthy, unhealthy, draining); 1 for the current state, 0 for the others. Group is the service of a backend, empty for an upstream. Targets no source has reported on are healthy and not listed.",
		[]string{"kind", "group", "target", "state"}, nil)
	targetHealthSinceDesc = prometheus.NewDesc(namespace+"_target_health_since_timestamp_seconds",
		"When a target's combined health last changed, in seconds since the Unix epoch; absent while it has been healthy from the start.",
		[]string{"kind", "group", "target"}, nil)
)

// healthStates are the state label's values of spooky_target_health.
var healthStates = [...]health.State{health.Healthy, health.Unhealthy, health.Draining}

// healthCollector exports the registry's combined states at scrape time.
type healthCollector struct{ reg *health.Registry }

func newHealthCollector(reg *health.Registry) *healthCollector { return &healthCollector{reg: reg} }

func (c *healthCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- targetHealthDesc
	ch <- targetHealthSinceDesc
}

func (c *healthCollector) Collect(ch chan<- prometheus.Metric) {
	for _, e := range c.reg.Snapshot() {
		kind, group, name := e.Target.Kind.String(), e.Target.Group, e.Target.Name
		for _, s := range healthStates {
			ch <- prometheus.MustNewConstMetric(targetHealthDesc, prometheus.GaugeValue,
				boolValue(e.Status.State == s), kind, group, name, s.String())
		}
		// A target reported healthy from the start never changed: the
		// registry leaves Since zero, and 0 would read as 1970.
		if !e.Status.Since.IsZero() {
			ch <- prometheus.MustNewConstMetric(targetHealthSinceDesc, prometheus.GaugeValue,
				unixSeconds(e.Status.Since), kind, group, name)
		}
	}
}

// checkBuckets are the bounds, in seconds, of the health check duration
// histogram: from a TCP connect on the same segment (under 1 ms) to a
// probe that ran into a typical check timeout (10 s).
var checkBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// checkKey is one label set of spooky_health_checks_total.
type checkKey struct {
	target    health.Target
	checkType string
	ok        bool
}

// checkSeries are the series one health check updates.
type checkSeries struct {
	count prometheus.Counter
	took  prometheus.Observer
}

// checkMetrics are the active health checks' series.
type checkMetrics struct {
	total    *prometheus.CounterVec
	duration *prometheus.HistogramVec
	cache    *childCache[checkKey, checkSeries]
}

func newCheckMetrics() *checkMetrics {
	c := &checkMetrics{
		total: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "health", Name: "checks_total",
			Help: "Active health checks run, by target, check type and result (pass, fail); group is the service of a backend, empty for an upstream.",
		}, []string{"kind", "group", "target", "type", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "health", Name: "check_duration_seconds",
			Help:    "How long active health checks took, by target kind and check type.",
			Buckets: checkBuckets,
		}, []string{"kind", "type"}),
	}
	c.cache = newChildCache(func(k checkKey) checkSeries {
		result := "fail"
		if k.ok {
			result = "pass"
		}
		kind := k.target.Kind.String()
		return checkSeries{
			count: c.total.WithLabelValues(kind, k.target.Group, k.target.Name, k.checkType, result),
			took:  c.duration.WithLabelValues(kind, k.checkType),
		}
	})
	return c
}

// ObserveCheck records one active health check of t: its type ("http3",
// "https", "tcp", "quic"), whether it passed, and how long it took. It
// satisfies the active checker's observer in package health.
func (m *Metrics) ObserveCheck(t health.Target, checkType string, ok bool, took time.Duration) {
	s := m.checks.cache.get(checkKey{t, checkType, ok})
	s.count.Inc()
	s.took.Observe(took.Seconds())
}
