package health

import (
	"bytes"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spooky-lb/spooky/config"
)

// recorder is an Observer that keeps every outcome in order.
type recorder struct {
	mu     sync.Mutex
	events []observed
}

type observed struct {
	t    Target
	typ  string
	ok   bool
	took time.Duration
}

func (r *recorder) ObserveCheck(t Target, typ string, ok bool, took time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, observed{t, typ, ok, took})
}

// of returns the outcomes observed for t so far.
func (r *recorder) of(t Target) []observed {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []observed
	for _, e := range r.events {
		if e.t == t {
			out = append(out, e)
		}
	}
	return out
}

// streak counts the outcomes equal to ok at the end of evs, and reports
// whether an outcome of the other kind comes before them.
func streak(evs []observed, ok bool) (n int, bounded bool) {
	for i := len(evs) - 1; i >= 0; i-- {
		if evs[i].ok != ok {
			return n, true
		}
		n++
	}
	return n, false
}

func mustChecker(tb testing.TB, reg *Registry, opts CheckerOptions) *Checker {
	tb.Helper()
	c := NewChecker(reg, opts)
	tb.Cleanup(c.Close)
	return c
}

// changes records every change of the registry with a snapshot taken by
// at, on the goroutine that made the change (before the next probe).
type changes[T any] struct {
	mu  sync.Mutex
	got []struct {
		Change
		at T
	}
}

func watch[T any](tb testing.TB, reg *Registry, at func(Change) T) *changes[T] {
	tb.Helper()
	w := &changes[T]{}
	tb.Cleanup(reg.Subscribe(func(c Change) {
		v := at(c)
		w.mu.Lock()
		defer w.mu.Unlock()
		w.got = append(w.got, struct {
			Change
			at T
		}{c, v})
	}))
	return w
}

// count returns how many changes there have been.
func (w *changes[T]) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.got)
}

// wait returns the n-th change (from 1), waiting for it.
func (w *changes[T]) wait(tb testing.TB, n int) (Change, T) {
	tb.Helper()
	waitFor(tb, "the registry changes", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return len(w.got) >= n
	})
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.got[n-1].Change, w.got[n-1].at
}

func TestCheckerRiseAndFallOnStatus(t *testing.T) {
	cert := mustCert(t, "backend.example.test")
	for _, typ := range []config.CheckType{config.CheckHTTP, config.CheckHTTP3} {
		t.Run(string(typ)+" falls after exactly fall bad statuses and rises after exactly rise good ones", func(t *testing.T) {
			mustNotLeak(t)
			h := newHandler()
			addr := ""
			if typ == config.CheckHTTP3 {
				addr = mustH3Server(t, cert, h).addr
			} else {
				addr = mustHTTPServer(t, h, "http", cert).Listener.Addr().String()
			}
			reg := NewRegistry(nil)
			target := Backend("web", "b1")
			// The handler's counts, read on the probe's goroutine as the
			// registry changes: exact, since each is bumped before the
			// response it counts is sent.
			w := watch(t, reg, func(Change) [2]int { return [2]int{h.count(200), h.count(503)} })
			c := mustChecker(t, reg, CheckerOptions{})
			c.Set([]Probe{{Target: target, Type: typ, Addr: addr, Interval: 5 * time.Millisecond, Timeout: time.Second, Rise: 2, Fall: 3}})

			waitFor(t, "a passing probe is reported", func() bool {
				st, ok := reg.SourceStatus(target, Active)
				return ok && st.State == Healthy && matches(st.Reason, "200 in ")
			})
			if st := reg.Get(target); st.State != Healthy || !matches(st.Reason, "200 in ") {
				t.Fatalf("Get = %+v, want healthy with the last probe's reason", st)
			}
			h.set(503, "")
			ch, counts := w.wait(t, 1)
			if ch.To.State != Unhealthy || ch.To.Source != Active || ch.To.Reason != "status 503" {
				t.Fatalf("change = %+v, want unhealthy by the active checker, status 503", ch.To)
			}
			if counts[1] != 3 {
				t.Fatalf("unhealthy after %d responses of 503, want fall = 3", counts[1])
			}
			before := h.count(200)
			h.set(200, "")
			ch, counts = w.wait(t, 2)
			if ch.To.State != Healthy || !matches(ch.To.Reason, "200 in ") {
				t.Fatalf("change = %+v, want healthy, 200 in …", ch.To)
			}
			if n := counts[0] - before; n != 2 {
				t.Fatalf("healthy again after %d responses of 200, want rise = 2", n)
			}
		})
	}
}

func TestCheckerRiseAndFallOnServerDeath(t *testing.T) {
	cert := mustCert(t, "backend.example.test")
	for _, typ := range []config.CheckType{config.CheckTCP, config.CheckQUIC} {
		t.Run("a "+string(typ)+" check fails a killed server after exactly fall probes and passes it again after rise", func(t *testing.T) {
			mustNotLeak(t)
			var start, stop func()
			var served func() int64
			addr := ""
			if typ == config.CheckTCP {
				srv := mustTCPServer(t)
				addr, start, stop, served = srv.addr, srv.start, srv.stop, srv.accepts.Load
			} else {
				srv := mustH3Server(t, cert, newHandler())
				addr, start, stop, served = srv.addr, srv.start, srv.stop, srv.accepted.Load
			}
			reg := NewRegistry(nil)
			rec := &recorder{}
			target := Backend("web", "b1")
			w := watch(t, reg, func(Change) []observed { return rec.of(target) })
			c := mustChecker(t, reg, CheckerOptions{Observer: rec})
			c.Set([]Probe{{Target: target, Type: typ, Addr: addr, Interval: 50 * time.Millisecond,
				Timeout: 50 * time.Millisecond, Rise: 2, Fall: 3}})

			waitFor(t, "the server has passed a probe", func() bool { return served() > 0 })
			stop()
			ch, evs := w.wait(t, 1)
			if ch.To.State != Unhealthy {
				t.Fatalf("change = %+v, want unhealthy", ch.To)
			}
			if n, bounded := streak(evs, false); n != 3 || !bounded {
				t.Fatalf("unhealthy after %d failures in a row (after a pass: %v), want fall = 3; reason %q", n, bounded, ch.To.Reason)
			}
			t.Logf("reason: %s", ch.To.Reason)

			start() // same port
			before := served()
			ch, evs = w.wait(t, 2)
			if ch.To.State != Healthy {
				t.Fatalf("change = %+v, want healthy", ch.To)
			}
			if n, bounded := streak(evs, true); n != 2 || !bounded {
				t.Fatalf("healthy after %d passes in a row (after a failure: %v), want rise = 2", n, bounded)
			}
			waitFor(t, "the restarted server has seen the passing probes", func() bool { return served()-before >= 2 })
			for _, e := range evs {
				if e.typ != string(typ) || e.took <= 0 {
					t.Fatalf("observed %+v, want type %s and a duration", e, typ)
				}
			}
		})
	}
}

func TestCheckerSet(t *testing.T) {
	cert := mustCert(t, "backend.example.test")

	t.Run("a removed probe stops and its verdict is cleared", func(t *testing.T) {
		mustNotLeak(t)
		reg, rec := NewRegistry(nil), &recorder{}
		c := mustChecker(t, reg, CheckerOptions{Observer: rec})
		dead, live := Backend("web", "dead"), Backend("web", "live")
		srv := mustTCPServer(t)
		c.Set([]Probe{{Target: dead, Type: config.CheckTCP, Addr: deadAddr(t, "tcp"), Interval: 5 * time.Millisecond, Fall: 1}})
		waitFor(t, "the dead backend is unhealthy", func() bool { return reg.Get(dead).State == Unhealthy })

		c.Set([]Probe{{Target: live, Type: config.CheckTCP, Addr: srv.addr, Interval: 5 * time.Millisecond}})
		if _, ok := reg.SourceStatus(dead, Active); ok || reg.Get(dead).State != Healthy {
			t.Fatalf("after removal, the dead backend's active verdict stands: %+v", reg.Get(dead))
		}
		n := len(rec.of(dead))
		// While the new probe runs five times, a surviving old one would
		// have run about as often.
		waitFor(t, "the new probe has run five times", func() bool { return len(rec.of(live)) >= 5 })
		if m := len(rec.of(dead)); m != n {
			t.Fatalf("the removed probe ran %d more times", m-n)
		}
	})

	t.Run("an unchanged probe keeps its counters", func(t *testing.T) {
		mustNotLeak(t)
		h := newHandler()
		gate := newGate()
		srv := mustHTTPServer(t, gate.hold(h, 3), "http", cert)
		reg := NewRegistry(nil)
		w := watch(t, reg, func(Change) int { return h.count(503) })
		c := mustChecker(t, reg, CheckerOptions{})
		target := Upstream("http://" + srv.Listener.Addr().String())
		p := Probe{Target: target, Type: config.CheckHTTP, Addr: srv.Listener.Addr().String(), Interval: 5 * time.Millisecond, Timeout: 5 * time.Second, Fall: 3}
		h.set(503, "")
		c.Set([]Probe{p})
		gate.waitHeld(t) // two failures counted, the third request waits
		c.Set([]Probe{p, {Target: Backend("web", "b2"), Type: config.CheckTCP, Addr: srv.Listener.Addr().String()}})
		gate.release()
		ch, n503 := w.wait(t, 1)
		if ch.Target != target || ch.To.State != Unhealthy || n503 != 3 {
			t.Fatalf("change %+v after %d responses of 503, want unhealthy after fall = 3", ch, n503)
		}
	})

	t.Run("a changed probe restarts but keeps its verdict", func(t *testing.T) {
		mustNotLeak(t)
		h := newHandler()
		paths := &pathCounter{}
		srv := mustHTTPServer(t, paths.count(h), "http", cert)
		reg := NewRegistry(nil)
		w := watch(t, reg, func(Change) struct{} { return struct{}{} })
		c := mustChecker(t, reg, CheckerOptions{})
		target := Backend("web", "b1")
		p := Probe{Target: target, Type: config.CheckHTTP, Addr: srv.Listener.Addr().String(), Path: "/old",
			Interval: 5 * time.Millisecond, Rise: 2, Fall: 1}
		h.set(503, "")
		c.Set([]Probe{p})
		if ch, _ := w.wait(t, 1); ch.To.State != Unhealthy {
			t.Fatalf("change = %+v, want unhealthy", ch.To)
		}

		p.Path = "/new"
		c.Set([]Probe{p})
		old := paths.get("/old")
		waitFor(t, "the new check has run twice", func() bool { return paths.get("/new") >= 2 })
		if n := w.count(); n != 1 {
			t.Fatalf("the registry changed %d times; a restarted check must not clear its verdict", n)
		}
		h.set(200, "")
		if ch, _ := w.wait(t, 2); ch.To.State != Healthy {
			t.Fatalf("change = %+v, want healthy", ch.To)
		}
		if n := paths.get("/old"); n != old {
			t.Fatalf("the old check ran %d times after it was replaced", n-old)
		}
	})

	t.Run("of two probes of one target the first is kept", func(t *testing.T) {
		mustNotLeak(t)
		reg, rec := NewRegistry(nil), &recorder{}
		c := mustChecker(t, reg, CheckerOptions{Observer: rec})
		srv := mustTCPServer(t)
		target := Backend("web", "b1")
		c.Set([]Probe{
			{Target: target, Type: config.CheckTCP, Addr: srv.addr, Interval: 5 * time.Millisecond},
			{Target: target, Type: config.CheckQUIC, Addr: srv.addr, Interval: 5 * time.Millisecond},
		})
		waitFor(t, "three probes ran", func() bool { return len(rec.of(target)) >= 3 })
		for _, e := range rec.of(target) {
			if e.typ != "tcp" || !e.ok {
				t.Fatalf("observed %+v, want only the first (tcp) probe, passing", e)
			}
		}
	})

	t.Run("Close stops every probe and keeps the verdicts", func(t *testing.T) {
		mustNotLeak(t)
		reg := NewRegistry(nil)
		c := NewChecker(reg, CheckerOptions{})
		target := Backend("web", "b1")
		c.Set([]Probe{{Target: target, Type: config.CheckTCP, Addr: deadAddr(t, "tcp"), Interval: 5 * time.Millisecond, Fall: 1}})
		waitFor(t, "the backend is unhealthy", func() bool { return reg.Get(target).State == Unhealthy })
		c.Close()
		c.Set([]Probe{{Target: Backend("web", "b2"), Type: config.CheckTCP, Addr: "127.0.0.1:1"}}) // ignored after Close
		if st := reg.Get(target); st.State != Unhealthy {
			t.Fatalf("after Close, Get = %+v, want unhealthy still", st)
		}
	})
}

func TestCheckerLocalErrors(t *testing.T) {
	mustNotLeak(t)
	var logs bytes.Buffer
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &mu}, nil))
	reg, rec := NewRegistry(nil), &recorder{}
	c := mustChecker(t, reg, CheckerOptions{Logger: log, Observer: rec})
	target := Backend("web", "b1")
	c.Set([]Probe{{Target: target, Type: config.CheckHTTPS, Addr: deadAddr(t, "tcp"), Interval: 5 * time.Millisecond, Fall: 1,
		TLS: ProbeTLS{CAFile: "/nonexistent/ca.pem", Verify: true}}})
	waitFor(t, "five probes were attempted", func() bool { return len(rec.of(target)) >= 5 })
	for _, e := range rec.of(target) {
		if e.ok {
			t.Fatalf("observed a passing probe: %+v", e)
		}
	}
	if st, ok := reg.SourceStatus(target, Active); ok {
		t.Fatalf("a probe that could not be sent reported %+v; want no verdict", st)
	}
	mu.Lock()
	out := logs.String()
	mu.Unlock()
	if n := strings.Count(out, "health check cannot probe"); n != 1 || !strings.Contains(out, "read ca: open /nonexistent/ca.pem") {
		t.Fatalf("logged %d times, want once with the cause:\n%s", n, out)
	}
}

func TestJitteredGap(t *testing.T) {
	r := &run{p: Probe{Interval: time.Second, Jitter: 0.1}}
	lo, hi := time.Hour, time.Duration(0)
	for range 1000 {
		g := r.gap()
		lo, hi = min(lo, g), max(hi, g)
	}
	if lo < 900*time.Millisecond || hi > 1100*time.Millisecond || hi-lo < 100*time.Millisecond {
		t.Fatalf("gaps span %v..%v, want within 0.9s..1.1s and spread over most of it", lo, hi)
	}
	r.p.Jitter = 0
	if g := r.gap(); g != time.Second {
		t.Fatalf("gap without jitter = %v", g)
	}
}

// gate holds the n-th request to a handler until released.
type gate struct {
	mu   sync.Mutex
	seen int
	held chan struct{}
	open chan struct{}
}

func newGate() *gate { return &gate{held: make(chan struct{}), open: make(chan struct{})} }

func (g *gate) hold(h http.Handler, n int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.mu.Lock()
		g.seen++
		hold := g.seen == n
		g.mu.Unlock()
		if hold {
			close(g.held)
			<-g.open
		}
		h.ServeHTTP(w, r)
	})
}

func (g *gate) waitHeld(tb testing.TB) {
	tb.Helper()
	select {
	case <-g.held:
	case <-time.After(10 * time.Second):
		tb.Fatal("timed out waiting for the held request")
	}
}

func (g *gate) release() { close(g.open) }

// pathCounter counts requests by path.
type pathCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (p *pathCounter) count(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		if p.n == nil {
			p.n = map[string]int{}
		}
		p.n[r.URL.Path]++
		p.mu.Unlock()
		h.ServeHTTP(w, r)
	})
}

func (p *pathCounter) get(path string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n[path]
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}
