package l7

import (
	"slices"
	"strings"
	"time"
)

// UpstreamStatus is one upstream as the admin API shows it.
type UpstreamStatus struct {
	// Name is the upstream's name (the health registry's key).
	Name string
	// Address is host:port and Protocol what is spoken to it.
	Address  string
	Protocol Protocol
	// Pools are the pools listing the upstream, sorted.
	Pools []string
	// Healthy is Config.Health's verdict (true without one).
	Healthy bool
	// Breaker is the circuit breaker's state and BreakerReason why it last
	// opened (empty if it never did).
	Breaker       BreakerState
	BreakerReason string
	// InFlight counts requests from their send to the end of the response
	// body; a drain is complete when it reaches 0.
	InFlight int64
	// Requests counts requests sent since the upstream was configured
	// (retries included; a reload that changes its config starts over).
	Requests uint64
	// Latency is the moving average of time to response headers; 0 before
	// the first response.
	Latency time.Duration
}

// UpstreamStatus returns every configured upstream, sorted by name.
func (s *Server) UpstreamStatus() []UpstreamStatus {
	s.mu.Lock()
	pools := make(map[*Upstream][]string)
	for name, p := range s.pools {
		for _, u := range p.upstreams {
			pools[u] = append(pools[u], name)
		}
	}
	s.mu.Unlock()
	out := make([]UpstreamStatus, 0, len(pools))
	for u, names := range pools {
		slices.Sort(names)
		names = slices.Compact(names)
		out = append(out, UpstreamStatus{
			Name:          u.name,
			Address:       u.cfg.Address,
			Protocol:      u.cfg.Protocol,
			Pools:         names,
			Healthy:       u.Healthy(),
			Breaker:       u.breaker.State(),
			BreakerReason: u.breaker.Reason(),
			InFlight:      u.InFlight(),
			Requests:      u.Requests(),
			Latency:       u.Latency(),
		})
	}
	slices.SortFunc(out, func(a, b UpstreamStatus) int { return strings.Compare(a.Name, b.Name) })
	return out
}
