package main

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"

	"github.com/spooky-lb/spooky/config"
	"github.com/spooky-lb/spooky/metrics"
)

// opsTier serves what operators and orchestrators talk to: the metrics
// listener with /healthz and /readyz. A reload that changes its section
// starts the new listener before closing the old one, so a bad address
// fails the reload and leaves the old listener serving.
type opsTier struct {
	m     *metrics.Metrics
	log   *slog.Logger
	ready atomic.Bool // set once the first config is applied

	srv *metrics.Server
	cur config.MetricsConfig
}

func (t *opsTier) apply(_ context.Context, cfg *config.Config) error {
	if t.srv != nil && cfg.Metrics == t.cur {
		return nil
	}
	var next *metrics.Server
	if cfg.Metrics.Listen != "" {
		var err error
		if next, err = t.m.Serve(cfg.Metrics.Listen, cfg.Metrics.Path, t.readiness); err != nil {
			return err
		}
	}
	if t.srv != nil {
		if err := t.srv.Close(); err != nil {
			t.log.Warn("close the old metrics listener", "err", err)
		}
	}
	t.srv, t.cur = next, cfg.Metrics
	return nil
}

// readiness answers /readyz: ready once the first config has been applied
// to every tier.
func (t *opsTier) readiness() error {
	if !t.ready.Load() {
		return errors.New("the first configuration is not applied yet")
	}
	return nil
}

func (t *opsTier) stop(context.Context) error {
	if t.srv == nil {
		return nil
	}
	return t.srv.Close()
}
