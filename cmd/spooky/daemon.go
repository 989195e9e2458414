package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/spooky-lb/spooky/config"
	"github.com/spooky-lb/spooky/forwarder"
	"github.com/spooky-lb/spooky/health"
	"github.com/spooky-lb/spooky/metrics"
)

// shutdownGrace bounds how long in-flight L7 requests may take to finish
// after SIGTERM before their connections are closed.
const shutdownGrace = 10 * time.Second

// refreshSettle is how long a refresh waits for more of a burst of
// neighbour updates or health changes before it re-applies the config.
const refreshSettle = 200 * time.Millisecond

// tier is one part of the daemon that follows the configuration.
type tier interface {
	// apply makes the tier serve cfg. On error the tier keeps serving
	// what it served before.
	apply(ctx context.Context, cfg *config.Config) error
	// stop ends the tier: gracefully for L7; the XDP path stays attached.
	stop(ctx context.Context) error
}

// daemonOptions say what a daemon runs. attach and serve differ only here.
type daemonOptions struct {
	// path is the configuration file, read again on every reload.
	path string
	// iface, if set, is the edge interface the XDP fast path attaches to
	// (spooky attach); empty runs the request tier alone (spooky serve).
	iface   string
	xdpMode forwarder.XDPMode
	pinRoot string
	// dataplane is xdp or userspace (spooky attach --dataplane).
	dataplane forwarder.Dataplane
	// logLevel, if set, is the logger's level, which a reload changes.
	logLevel *slog.LevelVar
	// watch, if not zero, is how often the config file is checked for new
	// contents, which are reloaded as on SIGHUP.
	watch time.Duration
}

// daemon owns the one health registry and the tiers that follow it and the
// configuration, until its context ends. It is the single code path of
// attach and serve: every part is wired here, once.
type daemon struct {
	opts    daemonOptions
	log     *slog.Logger
	health  *health.Registry
	xdp     *xdpTier // nil without an interface
	proxy   *proxyTier
	l7      *l7Tier
	ops     *opsTier
	bgp     *bgpTier
	metrics *metrics.Metrics
	checker *health.Checker
	tiers   []tier
	// refresh delivers requests to re-apply the current config after
	// next-hop changes, which come in bursts and are settled into one.
	refresh chan struct{}
	// replan delivers backend health changes, applied at once: the bound
	// on taking a dead backend out is fall × interval, not more.
	replan chan struct{}
	// announce delivers upstream health changes to the BGP tier (backend
	// changes reach it through replan, after the XDP tables).
	announce chan struct{}

	// mu serialises applying configs (SIGHUP, admin reload, refresh) and
	// guards cfg and lastReload.
	mu         sync.Mutex
	cfg        *config.Config
	loadedAt   time.Time
	lastReload reloadResult
	// drainSeen tracks drained backends' packet counters (drainProgress).
	drainSeen map[health.Target]packetMark
}

// reloadResult is the outcome of the last reload, for the admin API.
type reloadResult struct {
	at  time.Time
	err error
}

// newDaemon builds the tiers for opts around one health registry. cfg is
// the loaded configuration; nothing is applied until run.
func newDaemon(ctx context.Context, opts daemonOptions, cfg *config.Config, log *slog.Logger) (*daemon, error) {
	d := &daemon{
		opts:      opts,
		log:       log,
		health:    health.NewRegistry(log),
		refresh:   make(chan struct{}, 1),
		replan:    make(chan struct{}, 1),
		announce:  make(chan struct{}, 1),
		cfg:       cfg,
		drainSeen: map[health.Target]packetMark{},
	}
	if opts.iface != "" {
		x, err := forwarder.Attach(forwarder.AttachOptions{
			Interface: opts.iface, Mode: opts.xdpMode, PinRoot: opts.pinRoot, Logger: log, Health: d.health,
			Dataplane: opts.dataplane, CIDCacheSize: cfg.SlowPath.CIDCacheSize,
		})
		if err != nil {
			return nil, err
		}
		d.xdp = &xdpTier{x: x, log: log}
		if err := d.restoreDrains(x); err != nil {
			log.Warn("drains made before the restart are not restored", "err", err)
		}
		// Neighbour updates come in bursts (probe, reachable, stale);
		// the daemon settles them into one refresh of the next hops.
		if err := x.Resolver().WatchNeighbours(ctx, d.requestRefresh); err != nil {
			log.Warn("next hops will not follow neighbour changes", "err", err)
		}
		d.tiers = append(d.tiers, d.xdp)
	}
	d.proxy = &proxyTier{p: forwarder.NewProxy(forwarder.ProxyOptions{Logger: log, Health: d.health})}
	d.tiers = append(d.tiers, d.proxy)
	d.bgp = &bgpTier{log: log, health: d.health, l4: d.xdp != nil}
	mo := metrics.Options{Health: d.health, Logger: log, ProxyStats: d.proxy.p.Stats, BGP: func() *metrics.BGPState {
		d.mu.Lock()
		defer d.mu.Unlock()
		return d.bgp.metricsState(ctx)
	}}
	if d.xdp != nil {
		mo.XDPStats = func() (*forwarder.Stats, error) { return forwarder.ReadStats(opts.pinRoot, opts.iface) }
	}
	d.metrics = metrics.New(mo)
	d.l7 = &l7Tier{log: log, health: d.health, metrics: d.metrics}
	d.tiers = append(d.tiers, d.l7)
	d.ops = &opsTier{m: d.metrics, log: log, admin: d}
	d.tiers = append(d.tiers, d.ops)
	// Last, so a VIP is announced only once the tiers serve it.
	d.tiers = append(d.tiers, d.bgp)
	d.checker = health.NewChecker(d.health, health.CheckerOptions{Logger: log, Observer: d.metrics})
	// A backend's change re-plans the XDP tables, then the BGP routes; an
	// upstream's reaches the BGP routes alone (the request tier reads
	// upstream health on every request).
	d.health.Subscribe(func(c health.Change) {
		ch := d.announce
		if c.Target.Kind == health.KindBackend {
			ch = d.replan
		}
		select {
		case ch <- struct{}{}:
		default:
		}
	})
	return d, nil
}

// restoreDrains takes up the drains an earlier run left in the pinned
// maps, before the first Apply rewrites them.
func (d *daemon) restoreDrains(x *forwarder.XDP) error {
	drained, err := x.Drained()
	if err != nil {
		return err
	}
	for _, key := range drained {
		if t, ok := health.ParseBackend(key); ok {
			d.health.Report(t, health.Operator, health.Draining, "drained by the operator (before a restart)")
		}
	}
	return nil
}

// requestRefresh asks the run loop to re-apply the current config; it
// never blocks.
func (d *daemon) requestRefresh() {
	select {
	case d.refresh <- struct{}{}:
	default:
	}
}

// run applies the config to every tier, then serves until ctx ends.
func (d *daemon) run(ctx context.Context) error {
	d.mu.Lock()
	cfg := d.cfg
	for _, t := range d.tiers {
		if err := t.apply(ctx, cfg); err != nil {
			d.mu.Unlock()
			d.stop()
			return fmt.Errorf("apply %s: %w", d.opts.path, err)
		}
	}
	d.loadedAt = time.Now()
	d.observeReload(true)
	d.startChecks(cfg)
	d.ops.ready.Store(true)
	d.mu.Unlock()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	d.log.Info("serving", "config", d.opts.path, "summary", cfg.Summarize().String())
	var watch *fileWatch
	var tick <-chan time.Time
	if d.opts.watch > 0 {
		watch = newFileWatch(d.opts.path, cfg.SHA256)
		t := time.NewTicker(d.opts.watch)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return d.stop()
		case <-hup:
			// Logged inside; a rejected file leaves the running config.
			_, _ = d.reload(ctx)
		case <-tick:
			d.mu.Lock()
			running := d.cfg.SHA256
			d.mu.Unlock()
			// A version already running (reloaded by SIGHUP or the
			// API) is not reloaded again; a rejected one is tried once.
			if watch.changed() && watch.sum != running {
				d.log.Info("config file changed", "config", d.opts.path)
				_, _ = d.reload(ctx)
			}
		case <-d.refresh:
			select {
			case <-ctx.Done():
				continue
			case <-time.After(refreshSettle):
			}
			for len(d.refresh) > 0 {
				<-d.refresh
			}
			d.replanXDP(ctx)
		case <-d.replan:
			d.replanXDP(ctx)
			d.reannounce()
		case <-d.announce:
			d.reannounce()
		}
	}
}

// replanXDP re-applies the running config to the XDP tables and the
// proxy's: next hops and backend health concern them only.
func (d *daemon) replanXDP(ctx context.Context) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.proxy.apply(ctx, d.cfg); err != nil {
		d.log.Error("refresh the proxy", "err", err)
	}
	if d.xdp == nil {
		return
	}
	if err := d.xdp.apply(ctx, d.cfg); err != nil {
		d.log.Error("refresh", "err", err)
	}
}

// reannounce brings the BGP routes in line with backend and upstream
// health.
func (d *daemon) reannounce() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.bgp.reconcile(); err != nil {
		d.log.Error("bgp", "err", err)
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

// startChecks runs the active checks cfg asks for. Probes of l4 backends
// through their VIP carry the mark the XDP tier's steering gives each
// backend, so it must follow an Apply of cfg. Called with d.mu held.
func (d *daemon) startChecks(cfg *config.Config) {
	var steer health.Steer
	if d.xdp != nil {
		steer = d.xdp.x.ProbeMark
	}
	d.checker.Set(health.ProbesFromConfig(cfg, steer))
}

// stop ends every tier. With BGP, the routes are withdrawn first and the
// other tiers keep forwarding for the configured grace, while routers
// move new flows to the other hosts.
func (d *daemon) stop() error {
	d.checker.Close()
	d.mu.Lock()
	grace := d.bgp.withdrawForShutdown()
	d.mu.Unlock()
	if grace > 0 {
		d.log.Info("bgp routes withdrawn; forwarding on while routers converge", "grace", grace)
		time.Sleep(grace)
	}
	ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	var errs []error
	for _, t := range d.tiers {
		errs = append(errs, t.stop(ctx))
	}
	return errors.Join(errs...)
}
