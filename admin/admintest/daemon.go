// Package admintest provides an in-memory admin.Daemon for tests of the
// admin API and its clients, as net/http/httptest does for handlers.
package admintest

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/spooky-lb/spooky/admin"
	"github.com/spooky-lb/spooky/config"
	"github.com/spooky-lb/spooky/health"
)

// Daemon answers from the status it holds. Drain and undrain change the
// state of the backend or upstream they name in that status. Set its
// fields before serving; afterwards use its methods.
type Daemon struct {
	mu sync.Mutex
	// St is what Status returns (a copy).
	St admin.Status
	// Cfg is what Config returns.
	Cfg *config.Config
	// ReloadErr, if set, is what Reload returns; otherwise it returns
	// ReloadResult.
	ReloadErr    error
	ReloadResult admin.ReloadResult
	// Remaining, if set, says what remains of target's drain on the n-th
	// call of DrainProgress for it (n counts from 1); nil means nothing
	// remains.
	Remaining func(target string, n int) int64
	// Now stamps state changes; if nil, time.Now.
	Now func() time.Time

	polls   map[string]int
	reloads int
}

// Reloads returns how many times Reload was called.
func (d *Daemon) Reloads() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.reloads
}

// Status returns a copy of St.
func (d *Daemon) Status(context.Context) (*admin.Status, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	st := d.St
	st.Services = append([]admin.Service(nil), st.Services...)
	for i := range st.Services {
		st.Services[i].Backends = append([]admin.Backend(nil), st.Services[i].Backends...)
	}
	st.Pools = append([]admin.Pool(nil), st.Pools...)
	for i := range st.Pools {
		st.Pools[i].Upstreams = append([]admin.Upstream(nil), st.Pools[i].Upstreams...)
	}
	return &st, nil
}

// Drain sets target's state to draining, or back to healthy.
func (d *Daemon) Drain(_ context.Context, target string, drain bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	h := d.find(target)
	if h == nil {
		return fmt.Errorf("%w %q", admin.ErrUnknownTarget, target)
	}
	now := time.Now
	if d.Now != nil {
		now = d.Now
	}
	if drain {
		*h = admin.Health{State: health.Draining.String(), Reason: "drained by operator", Source: health.Operator.String(), Since: now()}
	} else {
		*h = admin.Health{State: health.Healthy.String(), Since: now()}
	}
	delete(d.polls, target)
	return nil
}

// DrainAll drains, or undrains, every backend and upstream in St and
// marks its BGP routes withdrawn (or not).
func (d *Daemon) DrainAll(_ context.Context, drain bool) (*admin.DrainAllResult, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := time.Now
	if d.Now != nil {
		now = d.Now
	}
	h := admin.Health{State: health.Healthy.String(), Since: now()}
	if drain {
		h = admin.Health{State: health.Draining.String(), Reason: "drained by operator", Source: health.Operator.String(), Since: now()}
	}
	n := 0
	for i := range d.St.Services {
		for j := range d.St.Services[i].Backends {
			d.St.Services[i].Backends[j].Health = h
			n++
		}
	}
	for i := range d.St.Pools {
		for j := range d.St.Pools[i].Upstreams {
			d.St.Pools[i].Upstreams[j].Health = h
			n++
		}
	}
	res := &admin.DrainAllResult{Drained: drain, Targets: n}
	if d.St.BGP != nil {
		d.St.BGP.Withdrawn = drain
		if !drain {
			res.Routes = d.St.BGP.Routes
		}
	}
	d.polls = nil
	return res, nil
}

// DrainProgress reports target's state and what Remaining says remains.
func (d *Daemon) DrainProgress(_ context.Context, target string) (*admin.DrainProgress, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	h := d.find(target)
	if h == nil {
		return nil, fmt.Errorf("%w %q", admin.ErrUnknownTarget, target)
	}
	unit := admin.UnitRequests
	if _, ok := health.ParseBackend(target); ok {
		unit = admin.UnitFlows
	}
	p := &admin.DrainProgress{Target: target, State: h.State, Unit: unit}
	if h.State != health.Draining.String() {
		return p, nil
	}
	if d.polls == nil {
		d.polls = map[string]int{}
	}
	d.polls[target]++
	if d.Remaining != nil {
		p.Remaining = d.Remaining(target, d.polls[target])
	}
	p.Done = p.Remaining == 0
	return p, nil
}

// Reload returns ReloadErr or ReloadResult.
func (d *Daemon) Reload(context.Context) (*admin.ReloadResult, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.reloads++
	if d.ReloadErr != nil {
		return nil, d.ReloadErr
	}
	res := d.ReloadResult
	return &res, nil
}

// Config returns Cfg.
func (d *Daemon) Config(context.Context) (*config.Config, error) {
	if d.Cfg == nil {
		return nil, fmt.Errorf("no configuration")
	}
	return d.Cfg, nil
}

// find returns the health of the backend or upstream target names.
func (d *Daemon) find(target string) *admin.Health {
	t := admin.ParseTarget(target)
	if t.Kind == health.KindBackend {
		for i := range d.St.Services {
			s := &d.St.Services[i]
			for j := range s.Backends {
				if s.Name == t.Group && s.Backends[j].Name == t.Name {
					return &s.Backends[j].Health
				}
			}
		}
		return nil
	}
	for i := range d.St.Pools {
		for j := range d.St.Pools[i].Upstreams {
			if u := &d.St.Pools[i].Upstreams[j]; u.Name == t.Name {
				return &u.Health
			}
		}
	}
	return nil
}
