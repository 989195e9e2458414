package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Reload results, as spooky_config_reloads_total labels them.
const (
	resultOK     = "ok"
	resultFailed = "failed"
)

var (
	reloadsDesc = prometheus.NewDesc(namespace+"_config_reloads_total",
		"Config loads and reloads, by result: ok (applied) or failed (rejected; the running config stays).",
		[]string{"result"}, nil)
	reloadSuccessDesc = prometheus.NewDesc(namespace+"_config_last_reload_success_timestamp_seconds",
		"When the running config was applied, in seconds since the Unix epoch.", nil, nil)
	reloadOKDesc = prometheus.NewDesc(namespace+"_config_last_reload_successful",
		"Whether the last load or reload of the config was applied (1) or rejected (0).", nil, nil)
	configInfoDesc = prometheus.NewDesc(namespace+"_config_info",
		"The running config, by SHA-256 of the file it was loaded from; always 1.",
		[]string{"sha256"}, nil)
)

// reloadCollector exports the reload counters and the running config's
// hash from one locked state, so a scrape never sees a hash without its
// timestamp.
type reloadCollector struct {
	mu          sync.Mutex
	ok, failed  uint64
	observed    bool
	lastOK      bool
	lastSuccess time.Time
	sha256      string
	now         func() time.Time
}

func newReloadCollector() *reloadCollector { return &reloadCollector{now: time.Now} }

// ObserveReload records a load or reload of the config file. The daemon
// calls it for the first load too, so spooky_config_info names the
// running config from the start. sha256 is the hex SHA-256 of the file;
// it is recorded only if ok: a rejected file changes nothing, so the
// running config's hash stays.
func (m *Metrics) ObserveReload(ok bool, sha256 string) {
	r := m.reload
	r.mu.Lock()
	defer r.mu.Unlock()
	r.observed, r.lastOK = true, ok
	if !ok {
		r.failed++
		return
	}
	r.ok++
	r.lastSuccess = r.now()
	r.sha256 = sha256
}

func (r *reloadCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- reloadsDesc
	ch <- reloadSuccessDesc
	ch <- reloadOKDesc
	ch <- configInfoDesc
}

func (r *reloadCollector) Collect(ch chan<- prometheus.Metric) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(reloadsDesc, prometheus.CounterValue, float64(r.ok), resultOK)
	ch <- prometheus.MustNewConstMetric(reloadsDesc, prometheus.CounterValue, float64(r.failed), resultFailed)
	if !r.observed {
		return
	}
	ch <- prometheus.MustNewConstMetric(reloadOKDesc, prometheus.GaugeValue, boolValue(r.lastOK))
	if r.ok > 0 {
		ch <- prometheus.MustNewConstMetric(reloadSuccessDesc, prometheus.GaugeValue, unixSeconds(r.lastSuccess))
		ch <- prometheus.MustNewConstMetric(configInfoDesc, prometheus.GaugeValue, 1, r.sha256)
	}
}

// boolValue is 1 for true, 0 for false.
func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// unixSeconds is t in seconds since the Unix epoch, with sub-second
// precision.
func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }
