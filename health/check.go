package health

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"
)

// Observer receives the outcome of every probe, for metrics. It is called
// from the probe's goroutine and must not block for long.
type Observer interface {
	// ObserveCheck reports that a probe of t, of checkType (quic, http3,
	// https, http, tcp), passed (ok) or failed after took.
	ObserveCheck(t Target, checkType string, ok bool, took time.Duration)
}

// CheckerOptions are a Checker's optional collaborators.
type CheckerOptions struct {
	// Logger receives failed probes (debug) and probes that cannot be sent
	// (error). If nil, nothing is logged. Changes of health are logged by
	// the Registry.
	Logger *slog.Logger
	// Observer, if set, is told every probe's outcome.
	Observer Observer
}

// Checker runs active probes and reports their verdicts to a Registry as
// source Active.
//
// Each target starts healthy and becomes unhealthy after Fall consecutive
// failures, then healthy again after Rise consecutive passes. Starting
// healthy is what HAProxy does with a new server, and it keeps a reload
// or a restart from emptying the Maglev tables and pools for the seconds
// the first Rise probes would take; a backend that is really down leaves
// them after Fall probes. A probe that cannot be sent for a reason of
// spooky's own (no permission to mark its socket, an unreadable CA file)
// says nothing about the target: it is logged, told to the Observer as a
// failure, and moves no counter, so a missing capability cannot empty a
// service.
//
// Each target's probes run one after another on their own goroutine; the
// first comes at a random point within the first interval, so that
// hundreds of targets added at once do not probe in step.
type Checker struct {
	reg *Registry
	log *slog.Logger
	obs Observer

	mu     sync.Mutex
	runs   map[Target]*run
	closed bool
}

// NewChecker returns a Checker that reports to reg and runs no probes
// until Set.
func NewChecker(reg *Registry, opts CheckerOptions) *Checker {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Checker{reg: reg, log: log, obs: opts.Observer, runs: map[Target]*run{}}
}

// Set makes probes the set of running probes, by target: a new target's
// probe starts; a removed target's probe stops and its Active verdict is
// cleared, since it no longer has a checker; a probe that changed restarts
// with fresh counters but keeps its verdict (a failed backend stays failed
// until Rise passes of the new check), and an unchanged one runs on with
// its counters. Of several probes of one target the first is kept.
// Set returns when every stopped probe has ended. It must not be called
// from a Registry subscriber, which a probe's report may be running.
func (c *Checker) Set(probes []Probe) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	want := make(map[Target]Probe, len(probes))
	for _, p := range probes {
		if _, dup := want[p.Target]; dup {
			c.log.Warn("health check listed twice; keeping the first", "target", p.Target.String())
			continue
		}
		want[p.Target] = p.withDefaults()
	}

	var stopping, removed []*run
	for t, r := range c.runs {
		p, keep := want[t]
		switch {
		case !keep:
			removed = append(removed, r)
		case !r.p.equal(p):
			stopping = append(stopping, r)
		default:
			continue
		}
		r.cancel()
		delete(c.runs, t)
	}
	// Cancel all first, then wait: stopping probes end in parallel.
	for _, r := range append(stopping, removed...) {
		<-r.done
	}
	for _, r := range removed {
		c.reg.Clear(r.p.Target, Active)
	}
	for t, p := range want {
		if _, running := c.runs[t]; !running {
			c.runs[t] = c.start(p)
		}
	}
}

// Close stops every probe and waits for them to end. Verdicts stay in the
// registry: a daemon shutting down does not revive failed backends.
func (c *Checker) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	for _, r := range c.runs {
		r.cancel()
	}
	for t, r := range c.runs {
		<-r.done
		delete(c.runs, t)
	}
}

// run is one target's running probe.
type run struct {
	p      Probe
	c      *Checker
	cancel context.CancelFunc
	done   chan struct{}

	// Owned by the run's goroutine.
	prober        prober
	down          bool
	passes, fails int
	localErr      string
}

func (c *Checker) start(p Probe) *run {
	ctx, cancel := context.WithCancel(context.Background())
	r := &run{p: p, c: c, cancel: cancel, done: make(chan struct{})}
	// A restarted probe keeps the verdict its predecessor reached.
	if st, ok := c.reg.SourceStatus(p.Target, Active); ok && st.State == Unhealthy {
		r.down = true
	}
	go r.loop(ctx)
	return r
}

func (r *run) loop(ctx context.Context) {
	defer close(r.done)
	defer func() {
		if r.prober != nil {
			r.prober.close()
		}
	}()
	timer := time.NewTimer(rand.N(r.p.Interval))
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		start := time.Now()
		o := r.probe(ctx)
		took := time.Since(start)
		if ctx.Err() != nil {
			return // stopped mid-probe: no verdict
		}
		r.judge(o, took)
		timer.Reset(max(0, r.gap()-time.Since(start)))
	}
}

// gap is the time from one probe's start to the next: Interval, jittered.
func (r *run) gap() time.Duration {
	if r.p.Jitter == 0 {
		return r.p.Interval
	}
	f := 1 + r.p.Jitter*(2*rand.Float64()-1)
	return time.Duration(f * float64(r.p.Interval))
}

// probe runs one probe bounded by the timeout, building the prober on
// first use (and again after a local error, so a CA file that appears
// later is read).
func (r *run) probe(ctx context.Context) outcome {
	if r.prober == nil {
		pr, err := newProber(r.p)
		if err != nil {
			return outcome{detail: err.Error(), local: true}
		}
		r.prober = pr
	}
	ctx, cancel := context.WithTimeout(ctx, r.p.Timeout)
	defer cancel()
	return r.prober.probe(ctx)
}

// judge applies rise and fall to one outcome and reports the verdict.
func (r *run) judge(o outcome, took time.Duration) {
	t := r.p.Target
	if r.c.obs != nil {
		r.c.obs.ObserveCheck(t, string(r.p.Type), o.ok, took)
	}
	if o.local {
		if o.detail != r.localErr {
			r.c.log.Error("health check cannot probe", "target", t.String(), "type", string(r.p.Type), "addr", r.p.Addr, "err", o.detail)
			r.localErr = o.detail
		}
		if r.prober != nil {
			r.prober.close()
			r.prober = nil
		}
		return
	}
	r.localErr = ""
	if !o.ok {
		r.passes, r.fails = 0, r.fails+1
		r.c.log.Debug("health check failed", "target", t.String(), "type", string(r.p.Type), "addr", r.p.Addr,
			"reason", o.detail, "failures", r.fails, "fall", r.p.Fall)
		if r.down || r.fails >= r.p.Fall {
			r.down = true
			r.c.reg.Report(t, Active, Unhealthy, o.detail)
		}
		return
	}
	r.fails, r.passes = 0, r.passes+1
	if r.down && r.passes < r.p.Rise {
		return // the failure stays the reason until it rises
	}
	r.down = false
	r.c.reg.Report(t, Active, Healthy, o.detail+" in "+roundDuration(took).String())
}
