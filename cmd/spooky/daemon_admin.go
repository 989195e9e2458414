package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/spooky-lb/spooky/admin"
	"github.com/spooky-lb/spooky/config"
	"github.com/spooky-lb/spooky/forwarder"
	"github.com/spooky-lb/spooky/health"
)

// The daemon is what the admin API drives.
var _ admin.Daemon = (*daemon)(nil)

// Status reports the config in force and every target's health and
// counters.
func (d *daemon) Status(ctx context.Context) (*admin.Status, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	cfg := d.cfg
	st := &admin.Status{Config: d.configInfo()}
	if d.lastReload.at != (reloadResult{}).at {
		out := &admin.ReloadOutcome{At: d.lastReload.at, OK: d.lastReload.err == nil}
		if d.lastReload.err != nil {
			out.Error = d.lastReload.err.Error()
		}
		st.Config.LastReload = out
	}
	counters := d.backendCounters()
	if ps := d.proxy.p.Stats(); len(ps.Services) > 0 {
		st.Proxy = ps
	}
	for _, s := range cfg.Services {
		svc := admin.Service{Name: s.Name, Address: s.Address, Port: s.Port, Mode: s.Mode, Backends: []admin.Backend{}}
		if s.Mode == config.ModeL4 {
			svc.Forwarding = s.Forwarding
		}
		for _, b := range s.Backends {
			port := b.Port
			if port == 0 {
				port = s.Port
			}
			c := counters[s.Name+"/"+b.Name]
			svc.Backends = append(svc.Backends, admin.Backend{
				Name: b.Name, Address: b.Address, Port: port, Weight: b.Weight,
				Health:  admin.HealthOf(d.health.Get(health.Backend(s.Name, b.Name))),
				Packets: c.Packets, Bytes: c.Bytes,
			})
		}
		seen := map[string]bool{}
		for _, r := range s.Routes {
			if !seen[r.Pool] {
				seen[r.Pool] = true
				svc.Pools = append(svc.Pools, r.Pool)
			}
		}
		st.Services = append(st.Services, svc)
	}
	served := d.l7.upstreams()
	for _, p := range cfg.Pools {
		pool := admin.Pool{Name: p.Name, Policy: p.Policy, Upstreams: []admin.Upstream{}}
		for _, u := range p.Upstreams {
			up := admin.Upstream{
				Name: u.Address, Weight: u.Weight,
				Health:  admin.HealthOf(d.health.Get(health.Upstream(u.Address))),
				Breaker: admin.BreakerClosed,
			}
			if s, ok := served[u.Address]; ok {
				up.Breaker = breakerName(s.Breaker)
				up.InFlight, up.Requests = s.InFlight, s.Requests
			}
			pool.Upstreams = append(pool.Upstreams, up)
		}
		st.Pools = append(st.Pools, pool)
	}
	st.BGP = d.bgp.status(ctx)
	return st, nil
}

// configInfo identifies the config in force. Called with d.mu held.
func (d *daemon) configInfo() admin.ConfigInfo {
	return admin.ConfigInfo{Path: d.opts.path, SHA256: d.cfg.SHA256, LoadedAt: d.loadedAt}
}

// backendCounters returns the XDP counters of every backend by
// "service/backend"; none without the XDP path or if they cannot be read.
func (d *daemon) backendCounters() map[string]forwarder.BackendStats {
	out := map[string]forwarder.BackendStats{}
	for _, b := range d.proxy.p.Stats().Backends {
		out[b.Service+"/"+b.Name] = forwarder.BackendStats{Packets: b.Packets, Bytes: b.Bytes}
	}
	if d.xdp == nil {
		return out
	}
	st, err := forwarder.ReadStats(d.opts.pinRoot, d.opts.iface)
	if err != nil {
		d.log.Warn("read XDP counters for the admin API", "err", err)
		return out
	}
	for _, b := range st.Backends {
		if b.Name != "" {
			c := out[b.Name]
			c.Packets += b.Packets
			c.Bytes += b.Bytes
			out[b.Name] = c
		}
	}
	return out
}

// Drain drains target or withdraws an operator's drain.
func (d *daemon) Drain(_ context.Context, target string, drain bool) error {
	t, err := d.setDrain(target, drain)
	if err != nil {
		return err
	}
	verb := "drain"
	if !drain {
		verb = "undrain"
	}
	d.log.Info(verb, "kind", t.Kind.String(), "target", t.String())
	return nil
}

// DrainProgress reports what still uses a drained target.
func (d *daemon) DrainProgress(_ context.Context, target string) (*admin.DrainProgress, error) {
	st, err := d.drainProgress(target)
	if err != nil {
		return nil, err
	}
	unit := admin.UnitFlows
	if st.Target.Kind == health.KindUpstream {
		unit = admin.UnitRequests
	}
	return &admin.DrainProgress{
		Target: st.Target.String(), State: st.State.String(),
		Remaining: int64(st.Remaining), Unit: unit, Done: st.Done, Detail: st.Detail,
	}, nil
}

// Reload loads the file again and applies it, as SIGHUP does.
func (d *daemon) Reload(ctx context.Context) (*admin.ReloadResult, error) {
	changes, err := d.reload(ctx)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return &admin.ReloadResult{Config: d.configInfo(), Changes: changes}, nil
}

// Config returns the configuration in force.
func (d *daemon) Config(context.Context) (*config.Config, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cfg, nil
}

// breakerName maps the request tier's breaker state to the API's.
func breakerName(s fmt.Stringer) string {
	return strings.ReplaceAll(s.String(), "-", "_")
}
