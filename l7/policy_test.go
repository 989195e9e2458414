package l7

import (
	"fmt"
	"math"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/spooky-lb/spooky/health"
)

func mustUpstreams(tb testing.TB, n int, weights ...int) []*Upstream {
	tb.Helper()
	var ups []*Upstream
	for i := range n {
		w := 1
		if i < len(weights) {
			w = weights[i]
		}
		u, err := newUpstream(UpstreamConfig{Name: fmt.Sprintf("u%d", i), Address: fmt.Sprintf("127.0.0.1:%d", 10000+i), Weight: w}, BreakerConfig{}, nil, nil)
		if err != nil {
			tb.Fatal(err)
		}
		ups = append(ups, u)
	}
	return ups
}

// withRegistry makes a fresh health registry the health source of ups and
// returns it, so tests mark upstreams down the way the daemon does.
func withRegistry(ups []*Upstream) *health.Registry {
	reg := health.NewRegistry(nil)
	for _, u := range ups {
		u.health = reg.Upstreams()
	}
	return reg
}

func markDown(reg *health.Registry, u *Upstream) {
	reg.Report(health.Upstream(u.name), health.Active, health.Unhealthy, "test marks it down")
}

func mustSelector(tb testing.TB, policy string) Selector {
	tb.Helper()
	s, err := newSelector(policy)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// counts picks n times and counts picks per upstream name.
func counts(s Selector, ups []*Upstream, n int) map[string]int {
	r := httptest.NewRequest("GET", "/", nil)
	m := map[string]int{}
	for i := range n {
		if u := s.Select(ups, r, fmt.Sprintf("198.18.%d.%d", i/250, i%250)); u != nil {
			m[u.name]++
		} else {
			m["<nil>"]++
		}
	}
	return m
}

func TestPoliciesSpreadLoad(t *testing.T) {
	for _, tc := range []struct {
		name, policy string
		exact        bool // round robin is exact; random ones within 10%
	}{
		{"random spreads evenly", PolicyRandom, false},
		{"round robin takes turns exactly", PolicyRoundRobin, true},
		{"weighted round robin with equal weights takes turns exactly", PolicyWeightedRR, true},
		{"least conn on an idle pool spreads evenly", PolicyLeastConn, false},
		{"p2c on an idle pool spreads evenly", PolicyP2C, false},
		{"ip hash spreads many clients evenly", PolicyIPHash, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ups := mustUpstreams(t, 4)
			got := counts(mustSelector(t, tc.policy), ups, 4000)
			for _, u := range ups {
				c := got[u.name]
				if tc.exact && c != 1000 {
					t.Fatalf("%s got %d of 4000, want exactly 1000: %v", u.name, c, got)
				}
				if !tc.exact && math.Abs(float64(c-1000)) > 100 {
					t.Fatalf("%s got %d of 4000, want 1000±100: %v", u.name, c, got)
				}
			}
		})
	}
}

func TestWeightedRoundRobinIsSmooth(t *testing.T) {
	ups := mustUpstreams(t, 3, 5, 1, 1)
	s := mustSelector(t, PolicyWeightedRR)
	r := httptest.NewRequest("GET", "/", nil)
	var seq []string
	for range 7 {
		seq = append(seq, s.Select(ups, r, "").name)
	}
	// nginx's smooth WRR for {a:5, b:1, c:1}: a a b a c a a.
	if got := strings.Join(seq, " "); got != "u0 u0 u1 u0 u2 u0 u0" {
		t.Fatalf("sequence %s, want u0 u0 u1 u0 u2 u0 u0", got)
	}
}

func TestPoliciesSkipUnavailableUpstreams(t *testing.T) {
	for _, policy := range []string{PolicyRandom, PolicyRoundRobin, PolicyWeightedRR, PolicyLeastConn, PolicyIPHash, PolicyLeastResponseTime, PolicyP2C} {
		t.Run(policy+" skips unhealthy, full and open-circuit upstreams", func(t *testing.T) {
			ups := mustUpstreams(t, 4)
			reg := withRegistry(ups)
			markDown(reg, ups[0])
			ups[1].cfg.MaxRequests = 1
			ups[1].inflight.Store(1)
			ups[2].breaker.cfg.ConsecutiveFailures = 1
			ups[2].breaker.RecordMetric(502, time.Millisecond)
			got := counts(mustSelector(t, policy), ups, 200)
			if got["u3"] != 200 {
				t.Fatalf("picks %v, want all 200 on u3", got)
			}
			markDown(reg, ups[3])
			if got := counts(mustSelector(t, policy), ups, 10); got["<nil>"] != 10 {
				t.Fatalf("picks %v with nothing available, want none", got)
			}
		})
	}
}

func TestLeastConnPicksFewestInFlight(t *testing.T) {
	ups := mustUpstreams(t, 3)
	ups[0].inflight.Store(5)
	ups[1].inflight.Store(2)
	ups[2].inflight.Store(7)
	if got := counts(mustSelector(t, PolicyLeastConn), ups, 50); got["u1"] != 50 {
		t.Fatalf("picks %v, want all on u1", got)
	}
}

func TestP2CAvoidsTheBusiestUpstream(t *testing.T) {
	ups := mustUpstreams(t, 3)
	ups[0].inflight.Store(100)
	got := counts(mustSelector(t, PolicyP2C), ups, 3000)
	// The busiest can only win when it is drawn twice, which p2c never does
	// (two distinct choices).
	if got["u0"] != 0 {
		t.Fatalf("busiest upstream picked %d times: %v", got["u0"], got)
	}
}

func TestLeastResponseTimePrefersTheFastest(t *testing.T) {
	ups := mustUpstreams(t, 3)
	for range 10 {
		ups[0].observe(50 * time.Millisecond)
		ups[1].observe(5 * time.Millisecond)
		ups[2].observe(20 * time.Millisecond)
	}
	if got := counts(mustSelector(t, PolicyLeastResponseTime), ups, 50); got["u1"] != 50 {
		t.Fatalf("picks %v, want all on the fastest u1", got)
	}
	t.Run("an upstream without samples is tried first", func(t *testing.T) {
		fresh := mustUpstreams(t, 4)[3]
		if got := counts(mustSelector(t, PolicyLeastResponseTime), append(ups, fresh), 1); got["u3"] != 1 {
			t.Fatalf("picks %v, want the unmeasured u3", got)
		}
	})
}

func TestIPHashIsConsistent(t *testing.T) {
	const clients = 20000
	s := mustSelector(t, PolicyIPHash)
	r := httptest.NewRequest("GET", "/", nil)
	assign := func(ups []*Upstream) []string {
		out := make([]string, clients)
		for i := range clients {
			out[i] = s.Select(ups, r, fmt.Sprintf("198.%d.%d.%d", 18+i/65536, (i/256)%256, i%256)).name
		}
		return out
	}
	ups := mustUpstreams(t, 6)
	before := assign(ups)
	t.Run("a client keeps its upstream", func(t *testing.T) {
		again := assign(ups)
		for i := range before {
			if before[i] != again[i] {
				t.Fatalf("client %d moved from %s to %s", i, before[i], again[i])
			}
		}
	})
	t.Run("adding an upstream moves about 1/(n+1) of clients, all to the new one", func(t *testing.T) {
		more := mustUpstreams(t, 7)
		after := assign(more)
		moved := 0
		for i := range before {
			if before[i] != after[i] {
				moved++
				if after[i] != "u6" {
					t.Fatalf("client %d moved between old upstreams %s → %s", i, before[i], after[i])
				}
			}
		}
		frac, want := float64(moved)/clients, 1.0/7
		t.Logf("moved %.4f of clients, ideal %.4f", frac, want)
		if math.Abs(frac-want) > 0.02 {
			t.Fatalf("moved %.4f of clients, want %.4f±0.02", frac, want)
		}
	})
	t.Run("an unavailable upstream moves only its own clients", func(t *testing.T) {
		reg := withRegistry(ups)
		markDown(reg, ups[2])
		defer withRegistry(ups)
		after := assign(ups)
		for i := range before {
			if before[i] != "u2" && before[i] != after[i] {
				t.Fatalf("client %d of %s moved to %s", i, before[i], after[i])
			}
		}
	})
}
