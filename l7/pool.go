package l7

import (
	"net/http"
)

// Pool is a named set of upstreams and the policy choosing among them.
type Pool struct {
	name      string
	policy    string
	selector  Selector
	upstreams []*Upstream
}

// Name is the pool's name.
func (p *Pool) Name() string { return p.name }

// Upstreams returns the pool's upstreams in configured order.
func (p *Pool) Upstreams() []*Upstream { return p.upstreams }

// Select chooses an available upstream, skipping those in tried; nil when
// none is left.
func (p *Pool) Select(r *http.Request, clientIP string, tried []*Upstream) *Upstream {
	if len(tried) == 0 {
		return p.selector.Select(p.upstreams, r, clientIP)
	}
	rest := make([]*Upstream, 0, len(p.upstreams))
	for _, u := range p.upstreams {
		skip := false
		for _, t := range tried {
			skip = skip || t == u
		}
		if !skip {
			rest = append(rest, u)
		}
	}
	return p.selector.Select(rest, r, clientIP)
}

func newPool(cfg PoolConfig, set *upstreamSet, health HealthSource, onChange func(BreakerChange), keep map[string]*Upstream) (*Pool, error) {
	sel, err := newSelector(cfg.Policy)
	if err != nil {
		return nil, configErr("pool %q: %v", cfg.Name, err)
	}
	p := &Pool{name: cfg.Name, policy: cfg.Policy, selector: sel}
	for _, uc := range cfg.Upstreams {
		u, err := set.get(uc, cfg.Breaker, health, onChange, keep)
		if err != nil {
			return nil, configErr("pool %q: %v", cfg.Name, err)
		}
		p.upstreams = append(p.upstreams, u)
	}
	return p, nil
}
