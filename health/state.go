// Package health holds the one health state that both tiers follow: each
// backend (packet tier) and upstream (request tier) is healthy, unhealthy or
// draining, with the reason and time of its last change. Several sources
// write it (an operator's drain, active checkers, the request tier's passive
// signals) and the registry combines them with a fixed precedence; the
// forwarder and the L7 pools read the result (DESIGN.md, "Health").
package health

import (
	"fmt"
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

// Source is who reports a verdict on a target.
type Source uint8

// Sources, in order of precedence (see Registry).
const (
	// Operator is a drain (or a forced down) from the admin API; it holds
	// until the operator clears it.
	Operator Source = iota
	// Active is an active checker's verdict after rise/fall.
	Active
	// Passive is the request tier's own evidence: an open circuit breaker
	// (which counts consecutive failures, error ratio and latency).
	Passive
	numSources
)

// String returns the source's name for logs and the admin API.
func (s Source) String() string {
	switch s {
	case Operator:
		return "operator"
	case Active:
		return "active"
	case Passive:
		return "passive"
	}
	return fmt.Sprintf("source(%d)", uint8(s))
}

// Status is a state with why and since when.
type Status struct {
	State  State
	Reason string
	// Source is the source whose verdict decided the combined state; for
	// a healthy target, the one whose report (or withdrawal) made it so.
	Source Source
	// Since is when the state began; zero for a target never reported.
	Since time.Time
}

// Change is one transition of a target's combined state, as delivered to
// subscribers.
type Change struct {
	Target   Target
	From, To Status
}
