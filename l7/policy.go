package l7

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
)

// Selector chooses an upstream for a request among a pool's upstreams,
// skipping those that are not Available. It returns nil when none is. The
// shape follows Caddy's reverseproxy.Selector.
type Selector interface {
	Select(upstreams []*Upstream, r *http.Request, clientIP string) *Upstream
}

// Policy names accepted in PoolConfig.Policy.
const (
	PolicyRandom            = "random"
	PolicyRoundRobin        = "round_robin"
	PolicyWeightedRR        = "weighted_round_robin"
	PolicyLeastConn         = "least_conn"
	PolicyIPHash            = "ip_hash"
	PolicyLeastResponseTime = "least_response_time"
	PolicyP2C               = "p2c"
)

func newSelector(policy string) (Selector, error) {
	switch policy {
	case PolicyRandom:
		return randomSelector{}, nil
	case PolicyRoundRobin, "":
		return &roundRobinSelector{}, nil
	case PolicyWeightedRR:
		return &weightedRRSelector{current: map[*Upstream]int{}}, nil
	case PolicyLeastConn:
		return leastConnSelector{}, nil
	case PolicyIPHash:
		return ipHashSelector{}, nil
	case PolicyLeastResponseTime:
		return leastResponseTimeSelector{}, nil
	case PolicyP2C:
		return p2cSelector{}, nil
	}
	return nil, fmt.Errorf("unknown policy %q (want random, round_robin, weighted_round_robin, least_conn, ip_hash, least_response_time or p2c)", policy)
}

type randomSelector struct{}

// Select picks uniformly among available upstreams (reservoir sampling, so
// no slice is allocated).
func (randomSelector) Select(ups []*Upstream, _ *http.Request, _ string) *Upstream {
	var pick *Upstream
	n := 0
	for _, u := range ups {
		if !u.Available() {
			continue
		}
		n++
		if rand.IntN(n) == 0 {
			pick = u
		}
	}
	return pick
}

type roundRobinSelector struct{ next atomic.Uint64 }

func (s *roundRobinSelector) Select(ups []*Upstream, _ *http.Request, _ string) *Upstream {
	n := uint64(len(ups))
	start := s.next.Add(1) - 1
	for i := range n {
		if u := ups[(start+i)%n]; u.Available() {
			return u
		}
	}
	return nil
}

// weightedRRSelector is nginx's smooth weighted round robin: each pick adds
// every candidate's weight to its current value, chooses the largest, and
// subtracts the total from it, spreading picks evenly (5,1,1 → a a b a c a a).
type weightedRRSelector struct {
	mu      sync.Mutex
	current map[*Upstream]int
}

func (s *weightedRRSelector) Select(ups []*Upstream, _ *http.Request, _ string) *Upstream {
	s.mu.Lock()
	defer s.mu.Unlock()
	var best *Upstream
	total := 0
	for _, u := range ups {
		if !u.Available() {
			continue
		}
		s.current[u] += u.weight
		total += u.weight
		if best == nil || s.current[u] > s.current[best] {
			best = u
		}
	}
	if best != nil {
		s.current[best] -= total
	}
	return best
}

type leastConnSelector struct{}

// Select picks the fewest in-flight requests; ties are broken at random so
// an idle pool spreads load.
func (leastConnSelector) Select(ups []*Upstream, _ *http.Request, _ string) *Upstream {
	var best *Upstream
	var bestN int64
	ties := 0
	for _, u := range ups {
		if !u.Available() {
			continue
		}
		n := u.InFlight()
		switch {
		case best == nil || n < bestN:
			best, bestN, ties = u, n, 1
		case n == bestN:
			ties++
			if rand.IntN(ties) == 0 {
				best = u
			}
		}
	}
	return best
}

// ipHashSelector is weighted rendezvous (highest random weight) hashing of
// the client IP: each upstream scores -w/ln(h(ip, upstream)) and the highest
// wins. A client keeps its upstream while it is available, and adding an
// upstream to n moves only ~1/(n+1) of clients (those it now outscores).
type ipHashSelector struct{}

func (ipHashSelector) Select(ups []*Upstream, _ *http.Request, clientIP string) *Upstream {
	var best *Upstream
	bestScore := math.Inf(-1)
	for _, u := range ups {
		if !u.Available() {
			continue
		}
		if s := rendezvousScore(clientIP, u.name, u.weight); s > bestScore {
			best, bestScore = u, s
		}
	}
	return best
}

// rendezvousScore uses a fixed hash (FNV-1a, then the splitmix64 finalizer
// to spread FNV's weak high bits), so every spooky instance behind ECMP and
// every restart sends a client to the same upstream.
func rendezvousScore(key, upstream string, weight int) float64 {
	const offset, prime = 14695981039346656037, 1099511628211
	h := uint64(offset)
	for i := 0; i < len(key); i++ {
		h = (h ^ uint64(key[i])) * prime
	}
	h = (h ^ 0xff) * prime // separator: ("ab","c") ≠ ("a","bc")
	for i := 0; i < len(upstream); i++ {
		h = (h ^ uint64(upstream[i])) * prime
	}
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	// Map to (0, 1), never 0 or 1, so the logarithm is finite and negative.
	x := (float64(h>>11) + 0.5) / (1 << 53)
	return -float64(weight) / math.Log(x)
}

type leastResponseTimeSelector struct{}

// Select picks the lowest EWMA latency. Upstreams without samples go first
// so every upstream gets measured; ties fall back to fewer in flight.
func (leastResponseTimeSelector) Select(ups []*Upstream, _ *http.Request, _ string) *Upstream {
	var best *Upstream
	for _, u := range ups {
		if !u.Available() {
			continue
		}
		if best == nil {
			best = u
			continue
		}
		lu, lb := u.Latency(), best.Latency()
		if lu < lb || (lu == lb && u.InFlight() < best.InFlight()) {
			best = u
		}
	}
	return best
}

type p2cSelector struct{}

// Select is "power of two choices": two distinct available upstreams at
// random, the one with fewer in flight wins (Mitzenmacher 2001).
func (p2cSelector) Select(ups []*Upstream, r *http.Request, ip string) *Upstream {
	var a, b *Upstream
	n := 0
	for _, u := range ups {
		if !u.Available() {
			continue
		}
		n++
		// Reservoir-sample two distinct items.
		switch {
		case n == 1:
			a = u
		case n == 2:
			b = u
		default:
			if j := rand.IntN(n); j == 0 {
				a = u
			} else if j == 1 {
				b = u
			}
		}
	}
	if b == nil {
		return a
	}
	if b.InFlight() < a.InFlight() {
		return b
	}
	if a.InFlight() == b.InFlight() && rand.IntN(2) == 0 {
		return b
	}
	return a
}
