package health

import "strings"

// Kind says which tier a target belongs to. Backends and upstreams live in
// one registry, so the kind keeps a backend "web/b1" and an upstream named
// "web/b1" apart.
type Kind uint8

// Target kinds.
const (
	// KindBackend is an l4 backend of a service (packet tier).
	KindBackend Kind = iota + 1
	// KindUpstream is an l7 upstream of a pool (request tier).
	KindUpstream
)

// String returns the kind's name as the admin API and metrics write it.
func (k Kind) String() string {
	switch k {
	case KindBackend:
		return "backend"
	case KindUpstream:
		return "upstream"
	}
	return "unknown"
}

// Target names one checked thing. It is comparable and used as a map key.
type Target struct {
	Kind Kind
	// Group is the service of a backend or the pool of an upstream.
	Group string
	// Name is the backend's name, or the upstream's address as the
	// request tier names it.
	Name string
}

// Backend returns the target of backend of an l4 service.
func Backend(service, backend string) Target {
	return Target{Kind: KindBackend, Group: service, Name: backend}
}

// Upstream returns the target of an l7 upstream. Upstreams are shared by
// every pool that lists the same address, so the pool is not part of the
// key: one upstream has one health.
func Upstream(name string) Target { return Target{Kind: KindUpstream, Name: name} }

// String returns "service/backend" for a backend and the upstream's name
// for an upstream: the form operators type (spooky drain web/b1).
func (t Target) String() string {
	if t.Kind == KindBackend {
		return t.Group + "/" + t.Name
	}
	return t.Name
}

// ParseBackend splits "service/backend" as spooky drain takes it.
func ParseBackend(s string) (Target, bool) {
	svc, be, ok := strings.Cut(s, "/")
	if !ok || svc == "" || be == "" || strings.Contains(be, "/") {
		return Target{}, false
	}
	return Backend(svc, be), true
}
