package l7

import (
	"sync"
	"time"
)

// BreakerState is a circuit breaker's state.
type BreakerState int

// Breaker states.
const (
	// BreakerClosed lets every request through.
	BreakerClosed BreakerState = iota
	// BreakerOpen refuses requests until OpenFor has passed.
	BreakerOpen
	// BreakerHalfOpen lets HalfOpenProbes requests through to test the upstream.
	BreakerHalfOpen
)

func (s BreakerState) String() string {
	switch s {
	case BreakerClosed:
		return "closed"
	case BreakerOpen:
		return "open"
	case BreakerHalfOpen:
		return "half-open"
	}
	return "unknown"
}

// CircuitBreaker decides whether an upstream may take requests, from the
// results of past ones. The shape follows Caddy's reverseproxy.CircuitBreaker.
type CircuitBreaker interface {
	// OK reports whether a request may be sent now. It does not reserve.
	OK() bool
	// RecordMetric records a finished request: its status (0 for a
	// transport error) and latency to response headers.
	RecordMetric(status int, latency time.Duration)
}

// Breaker is the default CircuitBreaker: closed → open on consecutive
// failures, an error ratio over a window, or slow responses counted as
// failures; open → half-open after OpenFor; half-open → closed when every
// probe succeeds, → open on any failure.
type Breaker struct {
	cfg      BreakerConfig
	name     string
	onChange func(upstream string, from, to BreakerState)
	now      func() time.Time

	mu          sync.Mutex
	state       BreakerState
	consecutive int
	openedAt    time.Time
	probes      int // half-open: probes started
	probeOK     int // half-open: probes succeeded
	// ratio window: two half-windows of counts, rotated (a cheap sliding window).
	winStart          time.Time
	curReq, curFail   int
	prevReq, prevFail int
}

// NewBreaker returns a closed breaker for the named upstream. onChange may be nil.
func NewBreaker(upstream string, cfg BreakerConfig, onChange func(upstream string, from, to BreakerState)) *Breaker {
	return &Breaker{cfg: cfg.withDefaults(), name: upstream, onChange: onChange, now: time.Now}
}

// State returns the current state, moving open to half-open when OpenFor has passed.
func (b *Breaker) State() BreakerState {
	b.mu.Lock()
	moved := b.tickLocked()
	s := b.state
	b.mu.Unlock()
	b.notifyHalfOpen(moved)
	return s
}

// OK implements CircuitBreaker.
func (b *Breaker) OK() bool {
	if b.cfg.Disabled {
		return true
	}
	b.mu.Lock()
	moved := b.tickLocked()
	ok := b.state == BreakerClosed || (b.state == BreakerHalfOpen && b.probes < b.cfg.HalfOpenProbes)
	b.mu.Unlock()
	b.notifyHalfOpen(moved)
	return ok
}

// acquire reserves the right to send one request: always in closed state,
// a probe slot in half-open, never in open.
func (b *Breaker) acquire() bool {
	if b.cfg.Disabled {
		return true
	}
	b.mu.Lock()
	moved := b.tickLocked()
	ok := b.state == BreakerClosed
	if b.state == BreakerHalfOpen && b.probes < b.cfg.HalfOpenProbes {
		b.probes++
		ok = true
	}
	b.mu.Unlock()
	b.notifyHalfOpen(moved)
	return ok
}

// release returns a half-open probe slot whose request ended without a
// verdict (the client left), so the breaker cannot stall half-open.
func (b *Breaker) release() {
	b.mu.Lock()
	if b.state == BreakerHalfOpen && b.probes > b.probeOK {
		b.probes--
	}
	b.mu.Unlock()
}

// RecordMetric implements CircuitBreaker. A status of 0 or >= 500, or a
// latency above LatencyThreshold, is a failure.
func (b *Breaker) RecordMetric(status int, latency time.Duration) {
	if b.cfg.Disabled {
		return
	}
	failed := status == 0 || status >= 500 ||
		(b.cfg.LatencyThreshold > 0 && latency > b.cfg.LatencyThreshold)
	b.mu.Lock()
	var from, to BreakerState
	changed := false
	setState := func(s BreakerState) {
		if s != b.state {
			from, to, changed = b.state, s, true
		}
		b.state = s
	}
	moved := b.tickLocked()
	switch b.state {
	case BreakerHalfOpen:
		if failed {
			b.openedAt = b.now()
			setState(BreakerOpen)
			break
		}
		b.probeOK++
		if b.probeOK >= b.cfg.HalfOpenProbes {
			b.resetLocked()
			setState(BreakerClosed)
		}
	case BreakerClosed:
		b.rotateLocked()
		b.curReq++
		if failed {
			b.consecutive++
			b.curFail++
		} else {
			b.consecutive = 0
		}
		reqs, fails := b.curReq+b.prevReq, b.curFail+b.prevFail
		if b.consecutive >= b.cfg.ConsecutiveFailures ||
			(b.cfg.ErrorRatio > 0 && reqs >= b.cfg.MinRequests && float64(fails) >= b.cfg.ErrorRatio*float64(reqs)) {
			b.openedAt = b.now()
			setState(BreakerOpen)
		}
	}
	b.mu.Unlock()
	b.notifyHalfOpen(moved)
	if changed && b.onChange != nil {
		b.onChange(b.name, from, to)
	}
}

func (b *Breaker) resetLocked() {
	b.consecutive, b.probes, b.probeOK = 0, 0, 0
	b.curReq, b.curFail, b.prevReq, b.prevFail = 0, 0, 0, 0
	b.winStart = b.now()
}

// rotateLocked keeps the ratio counts to roughly the last Window.
func (b *Breaker) rotateLocked() {
	half := b.cfg.Window / 2
	now := b.now()
	switch since := now.Sub(b.winStart); {
	case since >= b.cfg.Window:
		b.prevReq, b.prevFail, b.curReq, b.curFail = 0, 0, 0, 0
		b.winStart = now
	case since >= half:
		b.prevReq, b.prevFail, b.curReq, b.curFail = b.curReq, b.curFail, 0, 0
		b.winStart = now
	}
}

// tickLocked moves open to half-open once OpenFor has passed and reports
// whether it did, so the caller can notify after unlocking.
func (b *Breaker) tickLocked() bool {
	if b.state == BreakerOpen && b.now().Sub(b.openedAt) >= b.cfg.OpenFor {
		b.state = BreakerHalfOpen
		b.probes, b.probeOK = 0, 0
		return true
	}
	return false
}

func (b *Breaker) notifyHalfOpen(moved bool) {
	if moved && b.onChange != nil {
		b.onChange(b.name, BreakerOpen, BreakerHalfOpen)
	}
}
