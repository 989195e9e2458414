package health

import (
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"
)

// Registry holds the health of every target. Each source reports its own
// verdict; the combined state that tiers read is decided in this order:
//
//  1. An operator's verdict (drain, or forced down) wins while it stands:
//     a passing probe never undoes a drain.
//  2. Otherwise the target is unhealthy if its active checker or a passive
//     signal (an open breaker) says so: neither can clear the other, so a
//     passing probe does not close a breaker early and a closed breaker
//     does not revive a target its checker has failed. The active verdict
//     is named first when both hold.
//  3. Otherwise it is healthy.
//
// Targets never reported are healthy: a target with no checker takes
// traffic. It is safe for concurrent use; reads take a shared lock only.
type Registry struct {
	mu      sync.RWMutex
	targets map[Target]*entry
	subs    map[int]func(Change)
	nextID  int
	now     func() time.Time
	log     *slog.Logger
}

// entry is one target's per-source verdicts and their combination.
type entry struct {
	sources  [numSources]Status
	reported [numSources]bool
	combined Status
}

// NewRegistry returns an empty registry that logs every change of a
// combined state to log, once; if log is nil, changes are not logged.
func NewRegistry(log *slog.Logger) *Registry {
	return &Registry{targets: map[Target]*entry{}, subs: map[int]func(Change){}, now: time.Now, log: log}
}

// Get returns target's combined status; Healthy with a zero Since if no
// source has reported on it.
func (r *Registry) Get(t Target) Status {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if e := r.targets[t]; e != nil {
		return e.combined
	}
	return Status{}
}

// SourceStatus returns what src last reported on t, and whether it has.
func (r *Registry) SourceStatus(t Target, src Source) (Status, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if e := r.targets[t]; e != nil && e.reported[src] {
		return e.sources[src], true
	}
	return Status{}, false
}

// Report records src's verdict on t and recombines. It reports whether the
// combined state changed (subscribers are told, and the change logged).
// A new reason for the same verdict is recorded without a notification.
func (r *Registry) Report(t Target, src Source, state State, reason string) bool {
	r.mu.Lock()
	e := r.targets[t]
	if e == nil {
		e = &entry{}
		r.targets[t] = e
	}
	now := r.now()
	if !e.reported[src] || e.sources[src].State != state {
		e.sources[src] = Status{State: state, Reason: reason, Source: src, Since: now}
	} else {
		e.sources[src].Reason = reason
	}
	e.reported[src] = true
	return r.recombine(t, e, src, now)
}

// Clear withdraws src's verdict on t (an undrain, a removed checker, a
// closed breaker) and recombines. It reports whether the combined state
// changed.
func (r *Registry) Clear(t Target, src Source) bool {
	r.mu.Lock()
	e := r.targets[t]
	if e == nil || !e.reported[src] {
		r.mu.Unlock()
		return false
	}
	e.reported[src] = false
	e.sources[src] = Status{}
	return r.recombine(t, e, src, r.now())
}

// recombine computes e's combined state after src reported or cleared,
// unlocks r, and notifies on a change. It must be called with r.mu held.
func (r *Registry) recombine(t Target, e *entry, src Source, now time.Time) bool {
	from := e.combined
	to := combine(e)
	if to.State == Healthy {
		// Nobody decides "healthy": name the source whose report or
		// clearing made it so.
		to.Source = src
	}
	if to.State == from.State {
		// Same state: keep Since, refresh why.
		e.combined.Reason, e.combined.Source = to.Reason, to.Source
		r.mu.Unlock()
		return false
	}
	to.Since = now
	e.combined = to
	subs := make([]func(Change), 0, len(r.subs))
	for _, id := range slices.Sorted(maps.Keys(r.subs)) {
		subs = append(subs, r.subs[id])
	}
	r.mu.Unlock()
	if r.log != nil {
		r.log.Info("health changed", "kind", t.Kind.String(), "target", t.String(),
			"from", from.State.String(), "to", to.State.String(), "source", to.Source.String(), "reason", to.Reason)
	}
	// Called outside the lock so a subscriber may read the registry.
	for _, f := range subs {
		f(Change{Target: t, From: from, To: to})
	}
	return true
}

// combine applies the precedence stated on Registry.
func combine(e *entry) Status {
	if e.reported[Operator] && e.sources[Operator].State != Healthy {
		return e.sources[Operator]
	}
	for _, src := range []Source{Active, Passive} {
		if e.reported[src] && e.sources[src].State == Unhealthy {
			return e.sources[src]
		}
	}
	return Status{State: Healthy, Reason: healthyReason(e)}
}

// healthyReason keeps the last active verdict's reason ("200 OK in 2ms")
// so the admin API says why a target counts as healthy.
func healthyReason(e *entry) string {
	if e.reported[Active] {
		return e.sources[Active].Reason
	}
	return ""
}

// Subscribe calls f for every later change of a combined state, on the
// goroutine that made it; f must not block for long. The returned func
// unsubscribes.
func (r *Registry) Subscribe(f func(Change)) (cancel func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	id := r.nextID
	r.nextID++
	r.subs[id] = f
	return func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		delete(r.subs, id)
	}
}

// Forget drops every target for which keep returns false (targets removed
// by a reload), so a backend re-added later starts healthy and the
// registry does not grow without bound. Subscribers are not told: the
// targets no longer exist.
func (r *Registry) Forget(keep func(Target) bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for t := range r.targets {
		if !keep(t) {
			delete(r.targets, t)
		}
	}
}

// Entry is one target's combined status and each source's verdict, as the
// admin API and metrics show them.
type Entry struct {
	Target  Target
	Status  Status
	Sources map[Source]Status
}

// Snapshot returns every reported target, sorted by kind, group and name.
func (r *Registry) Snapshot() []Entry {
	r.mu.RLock()
	out := make([]Entry, 0, len(r.targets))
	for t, e := range r.targets {
		en := Entry{Target: t, Status: e.combined, Sources: map[Source]Status{}}
		for src := range numSources {
			if e.reported[src] {
				en.Sources[src] = e.sources[src]
			}
		}
		out = append(out, en)
	}
	r.mu.RUnlock()
	slices.SortFunc(out, func(a, b Entry) int { return compareTargets(a.Target, b.Target) })
	return out
}

func compareTargets(a, b Target) int {
	switch {
	case a.Kind != b.Kind:
		return int(a.Kind) - int(b.Kind)
	case a.Group != b.Group:
		if a.Group < b.Group {
			return -1
		}
		return 1
	case a.Name < b.Name:
		return -1
	case a.Name > b.Name:
		return 1
	}
	return 0
}

// Upstreams adapts r to the request tier's HealthSource: it answers by
// upstream name.
func (r *Registry) Upstreams() UpstreamHealth { return UpstreamHealth{r} }

// UpstreamHealth answers whether an upstream takes requests.
type UpstreamHealth struct{ r *Registry }

// Healthy reports whether the upstream named name is healthy.
func (u UpstreamHealth) Healthy(name string) bool {
	return u.r.Get(Upstream(name)).State == Healthy
}
