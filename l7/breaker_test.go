package l7

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is a settable time source for breaker tests.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

type transitions struct {
	mu      sync.Mutex
	got     []string
	reasons []string
}

func (tr *transitions) record(c BreakerChange) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.got = append(tr.got, c.From.String()+"→"+c.To.String())
	tr.reasons = append(tr.reasons, c.Reason)
}

func (tr *transitions) lastReason() string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if len(tr.reasons) == 0 {
		return ""
	}
	return tr.reasons[len(tr.reasons)-1]
}

func (tr *transitions) String() string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return strings.Join(tr.got, " ")
}

func mustBreaker(tb testing.TB, cfg BreakerConfig) (*Breaker, *fakeClock, *transitions) {
	tb.Helper()
	tr := &transitions{}
	b := NewBreaker("u", cfg, tr.record)
	clk := &fakeClock{t: time.Unix(1000, 0)}
	b.now = clk.now
	b.winStart = clk.now()
	// The fake clock moves only when the test says; no real timer runs.
	b.after = func(time.Duration, func()) func() bool { return func() bool { return true } }
	return b, clk, tr
}

func TestBreakerTransitions(t *testing.T) {
	t.Run("consecutive failures open it and a success in between resets the count", func(t *testing.T) {
		b, _, _ := mustBreaker(t, BreakerConfig{ConsecutiveFailures: 3})
		b.RecordMetric(502, time.Millisecond)
		b.RecordMetric(502, time.Millisecond)
		b.RecordMetric(200, time.Millisecond)
		b.RecordMetric(0, time.Millisecond)
		b.RecordMetric(503, time.Millisecond)
		if b.State() != BreakerClosed {
			t.Fatal("opened without 3 consecutive failures")
		}
		b.RecordMetric(500, time.Millisecond)
		if b.State() != BreakerOpen || b.OK() {
			t.Fatalf("state %s after 3 consecutive failures, want open", b.State())
		}
	})
	t.Run("an error ratio over the window opens it", func(t *testing.T) {
		b, _, _ := mustBreaker(t, BreakerConfig{ConsecutiveFailures: 1000, ErrorRatio: 0.5, MinRequests: 10})
		for i := range 9 {
			b.RecordMetric(map[bool]int{true: 500, false: 200}[i%2 == 0], time.Millisecond)
		}
		if b.State() != BreakerClosed {
			t.Fatal("opened before MinRequests")
		}
		b.RecordMetric(500, time.Millisecond) // 6 of 10 failed
		if b.State() != BreakerOpen {
			t.Fatalf("state %s at 60%% errors, want open", b.State())
		}
	})
	t.Run("old errors leave the window", func(t *testing.T) {
		b, clk, _ := mustBreaker(t, BreakerConfig{ConsecutiveFailures: 1000, ErrorRatio: 0.5, MinRequests: 10, Window: 10 * time.Second})
		for range 5 {
			b.RecordMetric(500, time.Millisecond)
		}
		clk.advance(11 * time.Second)
		for range 9 {
			b.RecordMetric(200, time.Millisecond)
		}
		b.RecordMetric(500, time.Millisecond)
		if b.State() != BreakerClosed {
			t.Fatal("errors older than the window still counted")
		}
	})
	t.Run("slow responses count as failures", func(t *testing.T) {
		b, _, _ := mustBreaker(t, BreakerConfig{ConsecutiveFailures: 2, LatencyThreshold: 100 * time.Millisecond})
		b.RecordMetric(200, 50*time.Millisecond)
		b.RecordMetric(200, 150*time.Millisecond)
		b.RecordMetric(200, 150*time.Millisecond)
		if b.State() != BreakerOpen {
			t.Fatalf("state %s after 2 slow responses, want open", b.State())
		}
	})
	t.Run("open turns half-open after open_for, probes close it", func(t *testing.T) {
		b, clk, tr := mustBreaker(t, BreakerConfig{ConsecutiveFailures: 1, OpenFor: 5 * time.Second, HalfOpenProbes: 2})
		b.RecordMetric(0, time.Millisecond)
		clk.advance(4 * time.Second)
		if b.OK() || b.acquire() {
			t.Fatal("allowed a request before open_for passed")
		}
		clk.advance(time.Second)
		if b.State() != BreakerHalfOpen {
			t.Fatalf("state %s after open_for, want half-open", b.State())
		}
		for i := range 2 {
			if !b.acquire() {
				t.Fatalf("half-open refused probe %d of 2", i+1)
			}
		}
		if b.OK() || b.acquire() {
			t.Fatal("half-open let more than 2 probes through")
		}
		b.RecordMetric(200, time.Millisecond)
		if b.State() != BreakerHalfOpen {
			t.Fatal("closed after 1 of 2 probes")
		}
		b.RecordMetric(200, time.Millisecond)
		if b.State() != BreakerClosed {
			t.Fatalf("state %s after all probes passed, want closed", b.State())
		}
		if got := tr.String(); got != "closed→open open→half-open half-open→closed" {
			t.Fatalf("transitions %q", got)
		}
	})
	t.Run("a failed probe opens it again", func(t *testing.T) {
		b, clk, tr := mustBreaker(t, BreakerConfig{ConsecutiveFailures: 1, OpenFor: time.Second})
		b.RecordMetric(0, time.Millisecond)
		clk.advance(time.Second)
		if !b.acquire() {
			t.Fatal("half-open refused the probe")
		}
		b.RecordMetric(503, time.Millisecond)
		if b.State() != BreakerOpen {
			t.Fatalf("state %s after a failed probe, want open", b.State())
		}
		if got := tr.String(); got != "closed→open open→half-open half-open→open" {
			t.Fatalf("transitions %q", got)
		}
	})
}

func TestBreakerTakesAFailingUpstreamOutOfThePool(t *testing.T) {
	cert := mustCert(t, "app.example.com")
	failing := mustUpstream(t, ProtoH1, "failing", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "broken", http.StatusInternalServerError)
	}))
	tr := &transitions{}
	cfg := oneService(t, cert, PoolConfig{Upstreams: []UpstreamConfig{failing}, Breaker: BreakerConfig{ConsecutiveFailures: 3, OpenFor: time.Hour}})
	cfg.OnBreakerStateChange = tr.record
	s := mustServer(t, cfg)
	c, _ := h3Client(t, cert, mustAddr(t, s))
	for i := range 3 {
		if res, _ := mustGet(t, c, "https://app.example.com/"); res.StatusCode != 500 {
			t.Fatalf("request %d: status %d, want the upstream's 500", i, res.StatusCode)
		}
	}
	res, body := mustGet(t, c, "https://app.example.com/")
	if res.StatusCode != 503 {
		t.Fatalf("status %d %q with the circuit open, want 503", res.StatusCode, body)
	}
	if got := tr.String(); got != "closed→open" {
		t.Fatalf("callback saw %q, want closed→open", got)
	}
}

func TestBreakerProbeOfALeavingClientIsReturned(t *testing.T) {
	b, clk, _ := mustBreaker(t, BreakerConfig{ConsecutiveFailures: 1, OpenFor: time.Second})
	b.RecordMetric(0, time.Millisecond)
	clk.advance(time.Second)
	if !b.acquire() {
		t.Fatal("half-open refused the probe")
	}
	b.release()
	if !b.acquire() {
		t.Fatal("a released probe slot was not given out again")
	}
}
