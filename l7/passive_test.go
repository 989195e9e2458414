package l7

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spooky-lb/spooky/health"
)

// syncClock is a fake clock safe to read from serving goroutines.
type syncClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *syncClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *syncClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// mustFakeTime gives b a fake clock and hands out its open → half-open
// timer's callback instead of arming it, so the test decides when open_for
// has passed.
func mustFakeTime(tb testing.TB, b *Breaker) (*syncClock, <-chan func()) {
	tb.Helper()
	clk := &syncClock{t: time.Unix(1000, 0)}
	wakes := make(chan func(), 16)
	b.mu.Lock()
	b.now = clk.now
	b.winStart = clk.now()
	b.after = func(_ time.Duration, f func()) func() bool {
		wakes <- f
		return func() bool { return true }
	}
	b.mu.Unlock()
	return clk, wakes
}

// flakyUpstream answers 502 while failing is set, else as echoHandler.
func flakyUpstream(tb testing.TB, name string, failing *atomic.Bool) UpstreamConfig {
	tb.Helper()
	echo := echoHandler(name)
	return mustUpstream(tb, ProtoH1, name, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if failing.Load() {
			w.Header().Set("X-Upstream", name)
			http.Error(w, "broken", http.StatusBadGateway)
			return
		}
		echo.ServeHTTP(w, r)
	}))
}

func TestBreakerVerdictsReachTheRegistryAndThePools(t *testing.T) {
	cert := mustCert(t, "app.example.com")
	var failing atomic.Bool
	failing.Store(true)
	flaky := flakyUpstream(t, "flaky", &failing)
	steady := mustUpstream(t, ProtoH1, "steady", nil)
	reg := health.NewRegistry(nil)
	cfg := oneService(t, cert, PoolConfig{
		Policy:    PolicyRoundRobin,
		Upstreams: []UpstreamConfig{flaky, steady},
		Breaker:   BreakerConfig{ConsecutiveFailures: 2, OpenFor: time.Minute},
	})
	cfg.Health = reg.Upstreams()
	cfg.OnBreakerStateChange = BreakerToHealth(reg)
	s := mustServer(t, cfg)
	b := s.Upstream("flaky").Breaker()
	clk, wakes := mustFakeTime(t, b)
	c, _ := h3Client(t, cert, mustAddr(t, s))
	target := health.Upstream("flaky")

	t.Run("failures open the breaker and the registry calls the upstream unhealthy, passively, saying why", func(t *testing.T) {
		for i := 0; reg.Get(target).State == health.Healthy; i++ {
			if i == 10 {
				t.Fatalf("flaky still healthy after 10 requests; breaker %s", b.State())
			}
			mustGet(t, c, "https://app.example.com/")
		}
		st := reg.Get(target)
		if st.State != health.Unhealthy || st.Source != health.Passive {
			t.Fatalf("registry says %s from %s, want unhealthy from passive", st.State, st.Source)
		}
		for _, want := range []string{"circuit breaker open: ", "2 consecutive failures", "answered 502"} {
			if !strings.Contains(st.Reason, want) {
				t.Errorf("reason %q does not say %q", st.Reason, want)
			}
		}
	})
	t.Run("while it is open every request goes to the other upstream", func(t *testing.T) {
		failing.Store(false) // recovered, but nobody may know before a probe
		for i := range 10 {
			res, body := mustGet(t, c, "https://app.example.com/")
			if got := res.Header.Get("X-Upstream"); res.StatusCode != 200 || got != "steady" {
				t.Fatalf("request %d: %d from %q (%q), want 200 from steady", i, res.StatusCode, got, body)
			}
		}
	})
	t.Run("after open_for the half-open breaker clears the verdict so its probe gets through", func(t *testing.T) {
		clk.advance(time.Minute)
		(<-wakes)() // open_for has passed: the timer fires
		if got := b.State(); got != BreakerHalfOpen {
			t.Fatalf("breaker %s after open_for, want half-open", got)
		}
		if st := reg.Get(target); st.State != health.Healthy {
			t.Fatalf("registry says %s (%s) while half-open, want healthy", st.State, st.Reason)
		}
		if _, ok := reg.SourceStatus(target, health.Passive); ok {
			t.Fatal("the passive verdict still stands while half-open")
		}
		probed := false
		for range 4 {
			res, _ := mustGet(t, c, "https://app.example.com/")
			probed = probed || res.Header.Get("X-Upstream") == "flaky"
		}
		if !probed {
			t.Fatal("no request reached flaky while its breaker was half-open")
		}
		if got := b.State(); got != BreakerClosed {
			t.Fatalf("breaker %s after a good probe, want closed", got)
		}
		if st := reg.Get(target); st.State != health.Healthy {
			t.Fatalf("registry says %s after the breaker closed", st.State)
		}
	})
	t.Run("an active verdict outranks a closed breaker", func(t *testing.T) {
		reg.Report(target, health.Active, health.Unhealthy, "probe failed")
		defer reg.Clear(target, health.Active)
		for range 4 {
			if res, _ := mustGet(t, c, "https://app.example.com/"); res.Header.Get("X-Upstream") != "steady" {
				t.Fatal("a request reached an upstream its checker failed")
			}
		}
	})
}

func TestBreakerReasonsNameTheRule(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cfg     BreakerConfig
		metrics [][2]int // status, latency in ms
		want    []string
	}{
		{
			"consecutive failures name the count and the last failure",
			BreakerConfig{ConsecutiveFailures: 3},
			[][2]int{{503, 1}, {0, 1}, {500, 1}},
			[]string{"3 consecutive failures", "answered 500"},
		},
		{
			"a transport error says no response came",
			BreakerConfig{ConsecutiveFailures: 1},
			[][2]int{{0, 1}},
			[]string{"1 consecutive failures", "no response"},
		},
		{
			"the error ratio names the counts and the limit",
			BreakerConfig{ConsecutiveFailures: 1000, ErrorRatio: 0.5, MinRequests: 4},
			[][2]int{{200, 1}, {500, 1}, {200, 1}, {500, 1}},
			[]string{"2 of 4 requests failed", "error ratio 0.50, limit 0.50"},
		},
		{
			"slow responses name the latency threshold",
			BreakerConfig{ConsecutiveFailures: 2, LatencyThreshold: 100 * time.Millisecond},
			[][2]int{{200, 150}, {200, 250}},
			[]string{"2 consecutive failures", "after 250ms, over the 100ms latency threshold"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, _, tr := mustBreaker(t, tc.cfg)
			for _, m := range tc.metrics {
				b.RecordMetric(m[0], time.Duration(m[1])*time.Millisecond)
			}
			if b.State() != BreakerOpen {
				t.Fatalf("breaker %s, want open", b.State())
			}
			for _, want := range tc.want {
				if !strings.Contains(b.Reason(), want) || !strings.Contains(tr.lastReason(), want) {
					t.Errorf("reason %q (callback %q) does not say %q", b.Reason(), tr.lastReason(), want)
				}
			}
		})
	}
	t.Run("a failed probe says so", func(t *testing.T) {
		b, clk, tr := mustBreaker(t, BreakerConfig{ConsecutiveFailures: 1, OpenFor: time.Second})
		b.RecordMetric(0, time.Millisecond)
		clk.advance(time.Second)
		b.acquire()
		b.RecordMetric(504, time.Millisecond)
		if got := tr.lastReason(); !strings.Contains(got, "half-open probe failed: answered 504") {
			t.Fatalf("reason %q", got)
		}
	})
}

func TestOpenBreakerTurnsHalfOpenOnItsOwn(t *testing.T) {
	// No request asks the breaker anything after it opened (the pools skip
	// an upstream the registry calls unhealthy): its timer must move it.
	reg := health.NewRegistry(nil)
	b := NewBreaker("u", BreakerConfig{ConsecutiveFailures: 1, OpenFor: 50 * time.Millisecond}, BreakerToHealth(reg))
	b.RecordMetric(0, time.Millisecond)
	if reg.Get(health.Upstream("u")).State != health.Unhealthy {
		t.Fatal("an open breaker did not report the upstream unhealthy")
	}
	waitFor(t, 5*time.Second, "the registry to clear the passive verdict", func() bool {
		return reg.Get(health.Upstream("u")).State == health.Healthy
	})
	b.mu.Lock()
	st := b.state
	b.mu.Unlock()
	if st != BreakerHalfOpen {
		t.Fatalf("breaker %s, want half-open", st)
	}
}

func TestBreakerDeliversItsCurrentStateLast(t *testing.T) {
	// Transitions made on many goroutines at once must not reach the
	// listener out of order: whatever interleaving, the last state it
	// heard is the breaker's state.
	for round := range 20 {
		t.Run(fmt.Sprintf("round %d", round), func(t *testing.T) {
			var mu sync.Mutex
			heard := BreakerClosed
			b := NewBreaker("u", BreakerConfig{ConsecutiveFailures: 2, OpenFor: time.Microsecond, HalfOpenProbes: 1}, func(c BreakerChange) {
				mu.Lock()
				defer mu.Unlock()
				if c.From != heard {
					t.Errorf("change %s→%s after hearing %s", c.From, c.To, heard)
				}
				heard = c.To
			})
			// No timers: once the goroutines are done, nothing moves it.
			b.after = func(time.Duration, func()) func() bool { return func() bool { return true } }
			var wg sync.WaitGroup
			for g := range 4 {
				wg.Go(func() {
					for i := range 200 {
						if b.acquire() {
							status := 200
							if (i+g)%3 != 0 {
								status = 500
							}
							b.RecordMetric(status, time.Millisecond)
						}
						b.OK()
					}
				})
			}
			wg.Wait()
			b.mu.Lock()
			final := b.state
			b.mu.Unlock()
			mu.Lock()
			defer mu.Unlock()
			if heard != final {
				t.Fatalf("listener last heard %s, breaker is %s", heard, final)
			}
		})
	}
}

func TestReloadWithdrawsTheVerdictOfAReplacedBreaker(t *testing.T) {
	cert := mustCert(t, "app.example.com")
	var failing atomic.Bool
	failing.Store(true)
	flaky := flakyUpstream(t, "flaky", &failing)
	reg := health.NewRegistry(nil)
	cfg := oneService(t, cert, PoolConfig{Upstreams: []UpstreamConfig{flaky}, Breaker: BreakerConfig{ConsecutiveFailures: 1, OpenFor: time.Hour}})
	cfg.Health = reg.Upstreams()
	cfg.OnBreakerStateChange = BreakerToHealth(reg)
	s := mustServer(t, cfg)
	c, _ := h3Client(t, cert, mustAddr(t, s))
	mustGet(t, c, "https://app.example.com/")
	if reg.Get(health.Upstream("flaky")).State != health.Unhealthy {
		t.Fatal("the open breaker did not reach the registry")
	}
	failing.Store(false)
	// A new breaker config makes a new upstream with a closed breaker; the
	// old breaker's verdict must not keep it out of the pool.
	cfg.Pools[0].Breaker.ConsecutiveFailures = 5
	if err := s.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if st := reg.Get(health.Upstream("flaky")); st.State != health.Healthy {
		t.Fatalf("registry says %s (%s) after the reload, want healthy", st.State, st.Reason)
	}
	if res, _ := mustGet(t, c, "https://app.example.com/"); res.StatusCode != 200 {
		t.Fatalf("status %d after the reload, want 200 from the new upstream", res.StatusCode)
	}
}
