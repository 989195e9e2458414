// Package metrics exports spooky's Prometheus metrics: the XDP counters
// (per-CPU maps summed at scrape time), the request tier's requests,
// latencies, connections and breakers, the health registry's state and
// checks, the BGP sessions and announced routes, config reloads and build
// information (DESIGN.md, "Operations").
// It is the only package that imports Prometheus: the tiers call plain
// methods on *Metrics with strings and numbers.
//
// Every label takes its values from the config (services, backends, pools,
// upstreams, routes) or from a fixed set (status classes, reasons, states),
// never from clients, so the number of series is bounded by the config.
package metrics

import (
	"fmt"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/spooky-lb/spooky/forwarder"
	"github.com/spooky-lb/spooky/health"
)

// namespace prefixes every metric spooky defines.
const namespace = "spooky"

// Options says where the metrics read the state they export at scrape time.
type Options struct {
	// Version is the version in spooky_build_info. If empty, the main
	// module's version from the binary's build information.
	Version string
	// XDPStats reads the XDP program's counters, summed over CPUs (for
	// example forwarder.ReadStats for the attached interface). It is called
	// once per scrape. If nil, no spooky_xdp_* metrics are exported.
	XDPStats func() (*forwarder.Stats, error)
	// ProxyStats reads the userspace proxy's counters, once per scrape.
	// If nil, no spooky_proxy_* metrics are exported.
	ProxyStats func() *forwarder.ProxyStats
	// Health is the daemon's health registry, read once per scrape. If nil,
	// no spooky_target_health* metrics are exported.
	Health *health.Registry
	// BGP reads the BGP speaker's sessions and announced routes, once per
	// scrape; nil from it means no speaker runs. If BGP is nil, no
	// spooky_bgp_* metrics are exported.
	BGP func() *BGPState
	// Logger receives errors met while scraping. If nil, they are not
	// logged (spooky_xdp_up still shows a failing read).
	Logger *slog.Logger
}

// Metrics holds spooky's metrics in a registry of its own (not
// Prometheus's global one, so tests and several instances do not share
// state). It is safe for concurrent use.
type Metrics struct {
	reg *prometheus.Registry
	log *slog.Logger

	reload   *reloadCollector
	requests *requestMetrics
	conns    *connMetrics
	tunnels  *tunnelMetrics
	breakers *breakerCollector
	checks   *checkMetrics
}

// New returns metrics with the Go runtime and process collectors, build
// information, and the collectors opts asks for.
func New(opts Options) *Metrics {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Metrics{
		reg:      prometheus.NewRegistry(),
		log:      log,
		reload:   newReloadCollector(),
		requests: newRequestMetrics(),
		conns:    newConnMetrics(),
		tunnels:  newTunnelMetrics(),
		breakers: newBreakerCollector(),
		checks:   newCheckMetrics(),
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		newBuildInfo(opts.Version),
		m.reload,
		m.requests.total, m.requests.duration,
		m.conns.open,
		m.tunnels.open, m.tunnels.opened, m.tunnels.bytes,
		m.breakers,
		m.checks.total, m.checks.duration,
	)
	if opts.XDPStats != nil {
		m.reg.MustRegister(newXDPCollector(opts.XDPStats, log))
	}
	if opts.ProxyStats != nil {
		m.reg.MustRegister(newProxyCollector(opts.ProxyStats))
	}
	if opts.Health != nil {
		m.reg.MustRegister(newHealthCollector(opts.Health))
	}
	if opts.BGP != nil {
		m.reg.MustRegister(&bgpCollector{read: opts.BGP})
	}
	return m
}

// Handler returns the HTTP handler that serves the metrics in the
// Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog: errorLog{m.log},
		// One collector's error must not hide every other metric.
		ErrorHandling: promhttp.ContinueOnError,
		// Scrapes read BPF maps; a pile-up of slow scrapes should not
		// pile up map reads.
		MaxRequestsInFlight: 4,
	})
}

// errorLog adapts a slog.Logger to promhttp.Logger.
type errorLog struct{ log *slog.Logger }

func (l errorLog) Println(v ...any) {
	l.log.Warn("serve metrics", "error", fmt.Sprint(v...))
}
