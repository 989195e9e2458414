package main

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/spooky-lb/spooky/admin"
	"github.com/spooky-lb/spooky/config"
	"github.com/spooky-lb/spooky/metrics"
)

// opsTier serves what operators and orchestrators talk to: the admin API
// and the metrics listener with /healthz and /readyz. A reload that
// changes either section starts the new listener before closing the old
// one, so a bad address fails the reload and leaves the old one serving.
type opsTier struct {
	m     *metrics.Metrics
	admin admin.Daemon
	log   *slog.Logger
	ready atomic.Bool // set once the first config is applied

	srv *metrics.Server
	cur config.MetricsConfig

	adminSrv *admin.Server
	adminCur config.AdminConfig
}

func (t *opsTier) apply(_ context.Context, cfg *config.Config) error {
	if err := t.applyAdmin(cfg.Admin); err != nil {
		return err
	}
	return t.applyMetrics(cfg)
}

// applyAdmin moves the admin API when its section changed. The old server
// closes a moment later, so the answer to a reload made through it (which
// may be what moved it) is still written.
func (t *opsTier) applyAdmin(c config.AdminConfig) error {
	if t.adminSrv != nil && c == t.adminCur {
		return nil
	}
	next, err := admin.Listen(c, t.admin, t.log)
	if err != nil {
		return err
	}
	go func() {
		if err := next.Serve(); err != nil {
			t.log.Error("admin api", "err", err)
		}
	}()
	if old := t.adminSrv; old != nil {
		time.AfterFunc(adminMoveGrace, func() { _ = old.Close() })
	}
	t.adminSrv, t.adminCur = next, c
	return nil
}

// adminMoveGrace is how long the old admin listener lives after a reload
// moved the API, for the answer in flight on it.
const adminMoveGrace = time.Second

func (t *opsTier) applyMetrics(cfg *config.Config) error {
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
	var errs []error
	if t.adminSrv != nil {
		errs = append(errs, t.adminSrv.Close())
	}
	if t.srv != nil {
		errs = append(errs, t.srv.Close())
	}
	return errors.Join(errs...)
}
