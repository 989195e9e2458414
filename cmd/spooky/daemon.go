package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spooky-lb/spooky/config"
	"github.com/spooky-lb/spooky/l7"
)

// shutdownGrace bounds how long in-flight L7 requests may take to finish
// after SIGTERM before their connections are closed.
const shutdownGrace = 10 * time.Second

// refreshSettle is how long a refresh waits for more of a burst of
// neighbour updates before it re-applies the config.
const refreshSettle = 200 * time.Millisecond

// tier is one part of the daemon that follows the configuration.
type tier interface {
	// apply makes the tier serve cfg. On error the tier keeps serving
	// what it served before.
	apply(ctx context.Context, cfg *config.Config) error
	// stop ends the tier: gracefully for L7; the XDP path stays attached.
	stop(ctx context.Context) error
}

// daemon runs tiers until its context ends, reloading them on SIGHUP.
type daemon struct {
	path  string
	log   *slog.Logger
	tiers []tier
	// refresh, if set, delivers requests to re-apply the current config
	// (next-hop changes).
	refresh <-chan struct{}
}

// run applies cfg to every tier, then serves until ctx ends.
func (d *daemon) run(ctx context.Context, cfg *config.Config) error {
	for _, t := range d.tiers {
		if err := t.apply(ctx, cfg); err != nil {
			d.stop()
			return fmt.Errorf("apply %s: %w", d.path, err)
		}
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	d.log.Info("serving", "config", d.path, "summary", cfg.Summarize().String())
	for {
		select {
		case <-ctx.Done():
			return d.stop()
		case <-hup:
			next, err := config.Load(d.path)
			if err != nil {
				d.log.Error("reload rejected; the running config stays", "config", d.path, "err", err)
				continue
			}
			d.log.Info("reloading", "config", d.path, "changes", config.Diff(cfg, next).String())
			if err := d.applyAll(ctx, next); err != nil {
				d.log.Error("reload failed; restoring the running config", "err", err)
				if err := d.applyAll(ctx, cfg); err != nil {
					d.log.Error("restore running config", "err", err)
				}
				continue
			}
			cfg = next
			d.log.Info("reloaded", "config", d.path)
		case <-d.refresh:
			select {
			case <-ctx.Done():
				continue
			case <-time.After(refreshSettle):
			}
			for len(d.refresh) > 0 {
				<-d.refresh
			}
			if err := d.applyAll(ctx, cfg); err != nil {
				d.log.Error("refresh", "err", err)
			}
		}
	}
}

func (d *daemon) applyAll(ctx context.Context, cfg *config.Config) error {
	for _, t := range d.tiers {
		if err := t.apply(ctx, cfg); err != nil {
			return err
		}
	}
	return nil
}

func (d *daemon) stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	var errs []error
	for _, t := range d.tiers {
		errs = append(errs, t.stop(ctx))
	}
	return errors.Join(errs...)
}

// l7Tier is the HTTP/3 request tier; it starts with the first config that
// has l7 services.
type l7Tier struct {
	srv *l7.Server
	log *slog.Logger
}

func (t *l7Tier) apply(_ context.Context, cfg *config.Config) error {
	c, err := l7.FromConfig(cfg, t.log)
	if err != nil {
		return fmt.Errorf("l7: %w", err)
	}
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
