package l7

import "github.com/spooky-lb/spooky/health"

// BreakerToHealth returns a Config.OnBreakerStateChange that makes the
// circuit breakers the registry's passive source for upstreams (targets
// health.Upstream(name)):
//
//   - open reports the upstream unhealthy, with the breaker's reason, so
//     every tier reading the registry sees it and the pools skip it;
//   - half-open clears the verdict: the pools skip unhealthy upstreams, so
//     an upstream still reported unhealthy would never get the probes that
//     close its breaker (the breaker itself lets only HalfOpenProbes through);
//   - closed clears it too.
//
// The registry's precedence keeps an active checker's or an operator's
// verdict standing whatever the breaker says.
func BreakerToHealth(reg *health.Registry) func(BreakerChange) {
	return func(c BreakerChange) {
		t := health.Upstream(c.Upstream)
		if c.To == BreakerOpen {
			reg.Report(t, health.Passive, health.Unhealthy, "circuit breaker open: "+c.Reason)
			return
		}
		reg.Clear(t, health.Passive)
	}
}
