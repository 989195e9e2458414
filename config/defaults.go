package config

import "fmt"

// SetDefaults fills every zero field that has a default. It is for
// configurations built in Go; Parse applies defaults itself, and only to
// fields the file leaves out.
func (c *Config) SetDefaults() { c.setDefaults(func(string) bool { return false }) }

// setDefaults fills zero fields whose path is not present in the file, so
// an explicit zero stays and validation reports it.
func (c *Config) setDefaults(present func(path string) bool) {
	d := defaulter(present)
	def(d, "log.level", &c.Log.Level, DefaultLogLevel)
	def(d, "log.format", &c.Log.Format, DefaultLogFormat)
	if c.Admin.Listen == "" {
		def(d, "admin.socket", &c.Admin.Socket, DefaultAdminSocket)
	}
	def(d, "metrics.path", &c.Metrics.Path, DefaultMetricsPath)
	if c.BGP != nil {
		c.BGP.setDefaults(d)
	}
	c.setProxyDefaults(d)
	c.SlowPath.setDefaults(d)

	for i := range c.Services {
		s := &c.Services[i]
		p := fmt.Sprintf("services[%d]", i)
		def(d, p+".mode", &s.Mode, ModeL4)
		if s.Mode == ModeL4 {
			def(d, p+".forwarding", &s.Forwarding, DefaultForwarding)
			def(d, p+".hash", &s.Hash, DefaultHash)
			def(d, p+".maglev_size", &s.MaglevSize, DefaultMaglevSize)
			def(d, p+".flow_timeout", &s.FlowTimeout, DefaultFlowTimeout)
		}
		for j := range s.Backends {
			def(d, fmt.Sprintf("%s.backends[%d].weight", p, j), &s.Backends[j].Weight, DefaultBackendWeight)
		}
		if s.HealthCheck != nil {
			s.HealthCheck.setDefaults(d, p+".health_check", true)
		}
		for j := range s.Routes {
			def(d, fmt.Sprintf("%s.routes[%d].timeout", p, j), &s.Routes[j].Timeout, DefaultRouteTimeout)
			s.Routes[j].setTunnelDefaults(d, fmt.Sprintf("%s.routes[%d]", p, j))
		}
	}

	for i := range c.Pools {
		pl := &c.Pools[i]
		p := fmt.Sprintf("pools[%d]", i)
		def(d, p+".policy", &pl.Policy, DefaultPolicy)
		for j := range pl.Upstreams {
			def(d, fmt.Sprintf("%s.upstreams[%d].weight", p, j), &pl.Upstreams[j].Weight, DefaultUpstreamWeight)
		}
		def(d, p+".retries.count", &pl.Retries.Count, DefaultRetryCount)
		def(d, p+".retries.budget", &pl.Retries.Budget, DefaultRetryBudget)
		cb := &pl.CircuitBreaker
		def(d, p+".circuit_breaker.consecutive_failures", &cb.ConsecutiveFailures, DefaultBreakerFailures)
		def(d, p+".circuit_breaker.error_ratio", &cb.ErrorRatio, DefaultBreakerErrorRatio)
		def(d, p+".circuit_breaker.window", &cb.Window, DefaultBreakerWindow)
		def(d, p+".circuit_breaker.open_for", &cb.OpenFor, DefaultBreakerOpenFor)
		def(d, p+".circuit_breaker.half_open_probes", &cb.HalfOpenProbes, DefaultBreakerProbes)
		if pl.HealthCheck != nil {
			pl.HealthCheck.setDefaults(d, p+".health_check", false)
		}
	}
}

// setDefaults fills a check's defaults; l4 says whether it belongs to an
// l4 service (which alone chooses an address).
func (h *HealthCheckConfig) setDefaults(d defaulter, p string, l4 bool) {
	if h.Type.IsHTTP() {
		def(d, p+".path", &h.Path, DefaultCheckPath)
		if len(h.ExpectStatus) == 0 && !d(p+".expect_status") {
			h.ExpectStatus = []string{DefaultCheckExpectStatus}
		}
	}
	if h.Type == CheckQUIC {
		def(d, p+".alpn", &h.ALPN, DefaultCheckALPN)
	}
	if l4 {
		def(d, p+".address", &h.Address, DefaultCheckAddress)
	}
	def(d, p+".interval", &h.Interval, DefaultCheckInterval)
	def(d, p+".jitter", &h.Jitter, DefaultCheckJitter)
	def(d, p+".timeout", &h.Timeout, DefaultCheckTimeout)
	def(d, p+".rise", &h.Rise, DefaultCheckRise)
	def(d, p+".fall", &h.Fall, DefaultCheckFall)
}

// defaulter reports whether a path was written in the file.
type defaulter func(path string) bool

// def sets *field to value if it is zero and the file did not set it.
func def[T comparable](present defaulter, path string, field *T, value T) {
	var zero T
	if *field == zero && !present(path) {
		*field = value
	}
}
