// Package health holds the one health state that both tiers follow: each
// backend (packet tier) and upstream (request tier) is healthy, unhealthy or
// draining, with the reason and time of its last change. Checkers and the
// request tier's passive signals write it; the forwarder and the L7 pools
// subscribe to it (DESIGN.md, "Health").
package health

import (
	"fmt"
	"sync"
	"time"
)

// State is a target's health.
type State uint8

const (
	// Healthy targets take new connections and requests.
	Healthy State = iota
	// Unhealthy targets take nothing: the forwarder drops them from the
	// Maglev tables and their server IDs (their packets then hash to a
	// live backend, which answers with a stateless reset, so clients
	// fail fast), and the pools skip them.
	Unhealthy
	// Draining targets take no new connections but keep the ones they
	// have: out of the Maglev tables, server IDs kept.
	Draining
)

// String returns the state's name as operators write it.
func (s State) String() string {
	switch s {
	case Healthy:
		return "healthy"
	case Unhealthy:
		return "unhealthy"
	case Draining:
		return "draining"
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// Status is a target's state with why and since when.
type Status struct {
	State  State
	Reason string
	Since  time.Time
}

// Change is one transition, as delivered to subscribers.
type Change struct {
	Target   string
	From, To Status
}

// Registry holds the status of every target, keyed by a name the tiers
// agree on (e.g. "service/backend" for backends, the upstream name for
// upstreams). Targets never set are healthy: a target with no checker
// takes traffic. It is safe for concurrent use.
type Registry struct {
	mu     sync.Mutex
	status map[string]Status
	subs   map[int]func(Change)
	nextID int
	now    func() time.Time
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{status: map[string]Status{}, subs: map[int]func(Change){}, now: time.Now}
}

// Get returns target's status; Healthy with a zero Since if never set.
func (r *Registry) Get(target string) Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status[target]
}

// Set records target's state and tells subscribers if it changed. It
// reports whether the state changed; a new reason for the same state is
// recorded without a notification.
func (r *Registry) Set(target string, state State, reason string) bool {
	r.mu.Lock()
	from := r.status[target]
	if from.State == state && (from.Since != time.Time{} || state == Healthy) {
		from.Reason = reason
		r.status[target] = from
		r.mu.Unlock()
		return false
	}
	to := Status{State: state, Reason: reason, Since: r.now()}
	r.status[target] = to
	subs := make([]func(Change), 0, len(r.subs))
	for _, f := range r.subs {
		subs = append(subs, f)
	}
	r.mu.Unlock()
	// Called outside the lock so a subscriber may read the registry.
	for _, f := range subs {
		f(Change{Target: target, From: from, To: to})
	}
	return true
}

// Subscribe calls f for every later change, on the goroutine that made
// it; f must not block for long. The returned func unsubscribes.
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

// Healthy reports whether target takes new traffic; it satisfies the
// request tier's HealthSource.
func (r *Registry) Healthy(target string) bool { return r.Get(target).State == Healthy }
