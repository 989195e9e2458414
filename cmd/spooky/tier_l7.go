package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/spooky-lb/spooky/config"
	"github.com/spooky-lb/spooky/health"
	"github.com/spooky-lb/spooky/l7"
	"github.com/spooky-lb/spooky/metrics"
)

// l7Tier is the HTTP/3 request tier; it starts with the first config that
// has l7 services. Its pools read the daemon's health registry.
type l7Tier struct {
	srv     *l7.Server
	log     *slog.Logger
	health  *health.Registry
	metrics *metrics.Metrics
}

func (t *l7Tier) apply(_ context.Context, cfg *config.Config) error {
	c, err := l7.FromConfig(cfg, t.log)
	if err != nil {
		return fmt.Errorf("l7: %w", err)
	}
	// Pools follow the one registry; breakers are its passive source and
	// the metrics see every change and request.
	c.Health = t.health.Upstreams()
	toHealth := l7.BreakerToHealth(t.health)
	c.OnBreakerStateChange = func(ch l7.BreakerChange) {
		toHealth(ch)
		t.metrics.SetBreakerState(ch.Upstream, ch.To.String())
	}
	c.Observer = t.metrics
	c.ReloadGrace = shutdownGrace
	if t.srv != nil {
		return t.srv.Reload(c)
	}
	if len(c.Services) == 0 {
		return nil
	}
	srv, err := l7.New(c)
	if err != nil {
		return fmt.Errorf("l7: %w", err)
	}
	if err := srv.Start(); err != nil {
		srv.Close()
		return fmt.Errorf("l7: %w", err)
	}
	t.srv = srv
	return nil
}

func (t *l7Tier) stop(ctx context.Context) error {
	if t.srv == nil {
		return nil
	}
	t.log.Info("shutting down the request tier", "grace", shutdownGrace)
	return t.srv.Shutdown(ctx)
}

// upstreams returns the request tier's view of every upstream by name
// (breaker, requests in flight); empty before the tier starts. Called with
// the daemon's lock held (apply replaces the server).
func (t *l7Tier) upstreams() map[string]l7.UpstreamStatus {
	out := map[string]l7.UpstreamStatus{}
	if t.srv == nil {
		return out
	}
	for _, u := range t.srv.UpstreamStatus() {
		out[u.Name] = u
	}
	return out
}

// inFlight returns the requests in flight to the upstream named name.
func (t *l7Tier) inFlight(name string) int {
	if t.srv == nil {
		return 0
	}
	u := t.srv.Upstream(name)
	if u == nil {
		return 0
	}
	return int(u.InFlight())
}
