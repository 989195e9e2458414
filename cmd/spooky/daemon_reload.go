package main

import (
	"context"
	"time"

	"github.com/spooky-lb/spooky/config"
	"github.com/spooky-lb/spooky/health"
)

// reload reads the config file again and applies it. A file that does not
// load, or a config a tier refuses, changes nothing: the running config is
// restored and keeps serving, and the error (with every problem and its
// file:line:col) is returned. On success it returns what changed.
func (d *daemon) reload(ctx context.Context) (changes string, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	changes, err = d.reloadLocked(ctx)
	d.lastReload = reloadResult{at: time.Now(), err: err}
	d.observeReload(err == nil)
	return changes, err
}

// observeReload counts a load of the config file in the metrics, with the
// hash of the file now running. Called with d.mu held.
func (d *daemon) observeReload(ok bool) {
	d.metrics.ObserveReload(ok, d.cfg.SHA256)
}

func (d *daemon) reloadLocked(ctx context.Context) (string, error) {
	next, err := config.Load(d.opts.path)
	if err != nil {
		d.log.Error("reload rejected; the running config stays", "config", d.opts.path, "err", err)
		return "", err
	}
	changes := config.Diff(d.cfg, next).String()
	d.log.Info("reloading", "config", d.opts.path, "changes", changes)
	if err := d.applyAll(ctx, next); err != nil {
		d.log.Error("reload failed; restoring the running config", "err", err)
		if rerr := d.applyAll(ctx, d.cfg); rerr != nil {
			d.log.Error("restore running config", "err", rerr)
		}
		return "", err
	}
	d.forgetRemoved(next)
	d.applyLog(next.Log)
	d.cfg = next
	d.loadedAt = time.Now()
	d.startChecks(next)
	d.log.Info("reloaded", "config", d.opts.path)
	return changes, nil
}

// applyLog sets the log level a reload asks for; a new format needs a
// restart (the handler writes one format), which is said once.
func (d *daemon) applyLog(c config.LogConfig) {
	if d.opts.logLevel != nil {
		d.opts.logLevel.Set(c.SlogLevel())
	}
	if c.Format != d.cfg.Log.Format {
		d.log.Warn("log format changes at the next restart", "running", d.cfg.Log.Format, "configured", c.Format)
	}
}

// forgetRemoved drops the health of targets the config no longer has, so
// a backend added again later starts healthy and undrained.
func (d *daemon) forgetRemoved(cfg *config.Config) {
	known := configTargets(cfg)
	d.health.Forget(func(t health.Target) bool { return known[t] })
	for _, p := range d.cfg.Pools {
		for _, u := range p.Upstreams {
			if !known[health.Upstream(u.Address)] {
				d.metrics.ForgetBreaker(u.Address)
			}
		}
	}
}

// configTargets lists every backend and upstream of cfg as health targets.
func configTargets(cfg *config.Config) map[health.Target]bool {
	known := map[health.Target]bool{}
	for _, s := range cfg.Services {
		for _, b := range s.Backends {
			known[health.Backend(s.Name, b.Name)] = true
		}
	}
	for _, p := range cfg.Pools {
		for _, u := range p.Upstreams {
			known[health.Upstream(u.Address)] = true
		}
	}
	return known
}
