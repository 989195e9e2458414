package l7

import (
	"fmt"
	"strconv"
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

// BreakerChange is one transition of an upstream's circuit breaker.
type BreakerChange struct {
	// Upstream is the upstream's name.
	Upstream string
	From, To BreakerState
	// Reason says why the breaker opened (which rule tripped and the last
	// failure) when To is BreakerOpen, and why it was let go on a reload;
	// empty otherwise.
	Reason string
}

// Breaker is the default CircuitBreaker: closed → open on consecutive
// failures, an error ratio over a window, or slow responses counted as
// failures; open → half-open after OpenFor (on a timer, so an upstream that
// the pools skip meanwhile still gets its probes); half-open → closed when
// every probe succeeds, → open on any failure.
//
// Changes are delivered to onChange one at a time and in order; changes
// made while a delivery runs may be coalesced into one (closed → open →
// half-open seen as closed → half-open), so a listener always ends on the
// breaker's current state.
type Breaker struct {
	cfg      BreakerConfig
	name     string
	onChange func(BreakerChange)
	now      func() time.Time
	// after runs f once d has passed and returns a func that cancels it
	// (time.AfterFunc; tests with a fake clock replace it).
	after func(d time.Duration, f func()) (stop func() bool)

	mu          sync.Mutex
	state       BreakerState
	reason      string // why it last opened
	consecutive int
	openedAt    time.Time
	stopTimer   func() bool // cancels the open → half-open timer
	probes      int         // half-open: probes started
	probeOK     int         // half-open: probes succeeded
	// ratio window: two half-windows of counts, rotated (a cheap sliding window).
	winStart          time.Time
	curReq, curFail   int
	prevReq, prevFail int
	// notified is the state last delivered to onChange; retired stops
	// deliveries once a reload dropped the breaker.
	notified BreakerState
	retired  bool

	// delivering is held by the goroutine delivering changes; one that
	// finds it taken leaves its change to the holder, which re-reads the
	// state before it lets go (so onChange may read the breaker).
	delivering sync.Mutex
}

// NewBreaker returns a closed breaker for the named upstream. onChange may be nil.
func NewBreaker(upstream string, cfg BreakerConfig, onChange func(BreakerChange)) *Breaker {
	return &Breaker{
		cfg: cfg.withDefaults(), name: upstream, onChange: onChange, now: time.Now,
		after: func(d time.Duration, f func()) func() bool { return time.AfterFunc(d, f).Stop },
	}
}

// State returns the current state, moving open to half-open when OpenFor has passed.
func (b *Breaker) State() BreakerState {
	b.mu.Lock()
	moved := b.tickLocked()
	s := b.state
	b.mu.Unlock()
	b.notify(moved)
	return s
}

// Reason says why the breaker last opened; empty if it never did.
func (b *Breaker) Reason() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.reason
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
	b.notify(moved)
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
	b.notify(moved)
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
	moved := b.tickLocked()
	switch b.state {
	case BreakerHalfOpen:
		if failed {
			b.openLocked("half-open probe failed: " + b.failure(status, latency))
			moved = true
			break
		}
		b.probeOK++
		if b.probeOK >= b.cfg.HalfOpenProbes {
			b.resetLocked()
			b.state = BreakerClosed
			moved = true
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
		switch {
		case b.consecutive >= b.cfg.ConsecutiveFailures:
			b.openLocked(fmt.Sprintf("%d consecutive failures, the last %s", b.consecutive, b.failure(status, latency)))
			moved = true
		case b.cfg.ErrorRatio > 0 && reqs >= b.cfg.MinRequests && float64(fails) >= b.cfg.ErrorRatio*float64(reqs):
			b.openLocked(fmt.Sprintf("%d of %d requests failed within %s (error ratio %.2f, limit %.2f), the last %s",
				fails, reqs, b.cfg.Window, float64(fails)/float64(reqs), b.cfg.ErrorRatio, b.failure(status, latency)))
			moved = true
		}
	}
	b.mu.Unlock()
	b.notify(moved)
}

// failure names what made one request count as failed.
func (b *Breaker) failure(status int, latency time.Duration) string {
	switch {
	case status == 0:
		return "got no response (connection error or timeout)"
	case status >= 500:
		return "answered " + strconv.Itoa(status)
	}
	return fmt.Sprintf("answered after %s, over the %s latency threshold", latency.Round(time.Millisecond), b.cfg.LatencyThreshold)
}

// openLocked opens the breaker and arms the timer that turns it half-open.
func (b *Breaker) openLocked(reason string) {
	b.state = BreakerOpen
	b.reason = reason
	b.openedAt = b.now()
	if b.stopTimer != nil {
		b.stopTimer()
	}
	b.stopTimer = b.after(b.cfg.OpenFor, b.wake)
}

// wake moves open to half-open when OpenFor has passed without a request
// having done it: an upstream reported unhealthy is skipped by the pools,
// so without the timer nothing would ever probe it.
func (b *Breaker) wake() {
	b.mu.Lock()
	moved := b.tickLocked()
	b.mu.Unlock()
	b.notify(moved)
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

// notify delivers the current state to onChange if it differs from the
// last one delivered. It is called after a change, without b.mu held.
func (b *Breaker) notify(changed bool) {
	if !changed || b.onChange == nil {
		return
	}
	for b.delivering.TryLock() {
		for {
			b.mu.Lock()
			if b.retired || b.state == b.notified {
				b.mu.Unlock()
				break
			}
			c := BreakerChange{Upstream: b.name, From: b.notified, To: b.state}
			if c.To == BreakerOpen {
				c.Reason = b.reason
			}
			b.notified = b.state
			b.mu.Unlock()
			b.onChange(c)
		}
		b.delivering.Unlock()
		// A change made after the last look, by a goroutine that found
		// delivering held, is still ours to deliver.
		b.mu.Lock()
		pending := !b.retired && b.state != b.notified
		b.mu.Unlock()
		if !pending {
			return
		}
	}
}

// retire stops the breaker's deliveries when a reload drops or replaces
// its upstream. If a listener last heard it was open or half-open, it is
// told closed, so a verdict the breaker made does not outlive it (a new
// upstream of the same name starts with a closed breaker).
func (b *Breaker) retire(reason string) {
	b.delivering.Lock()
	defer b.delivering.Unlock()
	b.mu.Lock()
	b.retired = true
	if b.stopTimer != nil {
		b.stopTimer()
	}
	from := b.notified
	b.notified = BreakerClosed
	b.mu.Unlock()
	if from != BreakerClosed && b.onChange != nil {
		b.onChange(BreakerChange{Upstream: b.name, From: from, To: BreakerClosed, Reason: reason})
	}
}
