package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/spooky-lb/spooky/admin"
	"github.com/spooky-lb/spooky/config"
	"github.com/spooky-lb/spooky/health"
)

// drainQuiet is how long a drained l4 backend must see no packet before a
// drain counts as done. XDP keeps no per-connection state for packets
// routed by connection ID, so silence is the only sign an established
// connection has ended; an idle connection that outlives it (QUIC allows
// long idle timeouts) still works: its server ID stays routable while the
// backend drains.
const drainQuiet = 5 * time.Second

// resolveTarget finds the backend ("service/backend") or upstream (its
// address, as in the config) that name refers to in cfg.
func resolveTarget(cfg *config.Config, name string) (health.Target, error) {
	t := admin.ParseTarget(name)
	known := configTargets(cfg)
	if known[t] {
		return t, nil
	}
	var same []string // the backends of the service named, as a hint
	for k := range known {
		if t.Kind == health.KindBackend && k.Kind == health.KindBackend && k.Group == t.Group {
			same = append(same, k.String())
		}
	}
	if len(same) > 0 {
		sort.Strings(same)
		return health.Target{}, fmt.Errorf("%q: %w (that service has %s)", name, admin.ErrUnknownTarget, strings.Join(same, ", "))
	}
	return health.Target{}, fmt.Errorf("%q: %w (give service/backend or an upstream address from the config)", name, admin.ErrUnknownTarget)
}

// setDrain drains target (drain) or withdraws the operator's drain. A
// drain holds across reloads that keep the target; a passing probe never
// undoes it (health.Registry).
func (d *daemon) setDrain(name string, drain bool) (health.Target, error) {
	d.mu.Lock()
	t, err := resolveTarget(d.cfg, name)
	d.mu.Unlock()
	if err != nil {
		return t, err
	}
	if drain {
		d.health.Report(t, health.Operator, health.Draining, "drained by the operator")
		d.drainStart(t)
	} else {
		d.health.Clear(t, health.Operator)
		d.mu.Lock()
		delete(d.drainSeen, t)
		d.mu.Unlock()
	}
	return t, nil
}

// DrainAll drains every backend and upstream of the running config and
// withdraws every BGP route, or undoes both: the way to take a whole host
// out of service (and back) while it keeps the connections it has.
func (d *daemon) DrainAll(ctx context.Context, drain bool) (*admin.DrainAllResult, error) {
	d.mu.Lock()
	targets := configTargets(d.cfg)
	if drain {
		// Routes first: routers stop sending new flows here while
		// the drained backends still take what arrives meanwhile.
		if err := d.bgp.setWithdrawn(true); err != nil {
			d.mu.Unlock()
			return nil, err
		}
	}
	d.mu.Unlock()
	for t := range targets {
		if drain {
			d.health.Report(t, health.Operator, health.Draining, "drained by the operator (drain --all)")
			d.drainStart(t)
		} else {
			d.health.Clear(t, health.Operator)
			d.mu.Lock()
			delete(d.drainSeen, t)
			d.mu.Unlock()
		}
	}
	res := &admin.DrainAllResult{Drained: drain, Targets: len(targets)}
	if !drain {
		// The XDP tables take the backends back before the routes
		// bring traffic to them.
		d.replanXDP(ctx)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if !drain {
		if err := d.bgp.setWithdrawn(false); err != nil {
			return nil, err
		}
	}
	if d.bgp.sp != nil {
		res.Routes = d.bgp.routes()
	}
	verb := "drain --all"
	if !drain {
		verb = "undrain --all"
	}
	d.log.Info(verb, "targets", len(targets), "bgp_routes", len(res.Routes))
	return res, nil
}

// drainStatus is how far a drain has come.
type drainStatus struct {
	Target health.Target
	State  health.State
	// Remaining counts what still uses the target: flows seen in the
	// last drainQuiet (l4) or requests in flight (l7).
	Remaining int
	Done      bool
	Detail    string
}

// drainStart remembers a backend's packet counter when its drain begins.
func (d *daemon) drainStart(t health.Target) {
	if t.Kind != health.KindBackend || d.xdp == nil {
		return
	}
	a, ok, err := d.xdp.x.BackendActivity(t.Group, t.Name, drainQuiet)
	if err != nil || !ok {
		return
	}
	d.mu.Lock()
	d.drainSeen[t] = packetMark{packets: a.Packets, at: time.Now()}
	d.mu.Unlock()
}

// packetMark is a backend's packet counter and when it last changed.
type packetMark struct {
	packets uint64
	at      time.Time
}

// drainProgress reports whether target's work is gone.
func (d *daemon) drainProgress(name string) (drainStatus, error) {
	d.mu.Lock()
	t, err := resolveTarget(d.cfg, name)
	d.mu.Unlock()
	if err != nil {
		return drainStatus{}, err
	}
	st := drainStatus{Target: t, State: d.health.Get(t).State}
	switch t.Kind {
	case health.KindUpstream:
		d.mu.Lock() // apply replaces the server
		n := d.l7.inFlight(t.Name)
		d.mu.Unlock()
		st.Remaining, st.Done = n, n == 0
		st.Detail = fmt.Sprintf("%d requests in flight", n)
	case health.KindBackend:
		if d.xdp == nil {
			st.Done = true
			st.Detail = "no XDP path on this daemon"
			break
		}
		a, ok, err := d.xdp.x.BackendActivity(t.Group, t.Name, drainQuiet)
		if err != nil {
			return st, err
		}
		if !ok {
			st.Done, st.Detail = true, "not in the tables"
			break
		}
		now := time.Now()
		d.mu.Lock()
		m, seen := d.drainSeen[t]
		if !seen || m.packets != a.Packets {
			m = packetMark{packets: a.Packets, at: now}
			d.drainSeen[t] = m
		}
		d.mu.Unlock()
		quiet := now.Sub(m.at)
		st.Remaining = a.Flows
		st.Done = a.Flows == 0 && quiet >= drainQuiet
		st.Detail = fmt.Sprintf("%d active flows; last packet change %s ago (done after %s of silence)",
			a.Flows, quiet.Truncate(100*time.Millisecond), drainQuiet)
	}
	if st.State != health.Draining {
		st.Detail = "not draining (" + st.State.String() + "); " + st.Detail
	}
	return st, nil
}
