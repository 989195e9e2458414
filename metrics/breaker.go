package metrics

import (
	"maps"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

var breakerStateDesc = prometheus.NewDesc(namespace+"_l7_upstream_breaker_state",
	"An upstream's circuit breaker state (closed, open, half_open); 1 for the current state, 0 for the others.",
	[]string{"upstream", "state"}, nil)

// breakerStates are the state label's values.
var breakerStates = [...]string{"closed", "open", "half_open"}

// breakerCollector holds each upstream's breaker state and exports it one
// hot at scrape time, so a scrape never sees two states at 1 (as it could
// between the Sets of a GaugeVec).
type breakerCollector struct {
	mu    sync.Mutex
	state map[string]uint8 // upstream → index in breakerStates
}

func newBreakerCollector() *breakerCollector {
	return &breakerCollector{state: map[string]uint8{}}
}

// SetBreakerState records that upstream's circuit breaker is now in state:
// "closed", "open" or "half_open" ("half-open", as l7.BreakerState writes
// it, is taken too). Other states are ignored.
func (m *Metrics) SetBreakerState(upstream, state string) {
	if state == "half-open" {
		state = "half_open"
	}
	for i, s := range breakerStates {
		if s == state {
			m.breakers.mu.Lock()
			m.breakers.state[upstream] = uint8(i)
			m.breakers.mu.Unlock()
			return
		}
	}
}

// ForgetBreaker drops upstream's breaker series, for an upstream a reload
// removed.
func (m *Metrics) ForgetBreaker(upstream string) {
	m.breakers.mu.Lock()
	delete(m.breakers.state, upstream)
	m.breakers.mu.Unlock()
}

func (c *breakerCollector) Describe(ch chan<- *prometheus.Desc) { ch <- breakerStateDesc }

func (c *breakerCollector) Collect(ch chan<- prometheus.Metric) {
	// Copy first: the request tier's breakers must not wait on a scrape.
	c.mu.Lock()
	state := maps.Clone(c.state)
	c.mu.Unlock()
	for upstream, cur := range state {
		for i, s := range breakerStates {
			ch <- prometheus.MustNewConstMetric(breakerStateDesc, prometheus.GaugeValue, boolValue(int(cur) == i), upstream, s)
		}
	}
}
