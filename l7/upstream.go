package l7

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"maps"
	"math"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/spooky-lb/spooky/config"
)

// HealthSource tells whether an upstream (by name) is healthy. The shared
// health package implements it (health.Registry.Upstreams); l7 asks it on
// every selection, so it must be cheap. It is the only health state the
// pools follow: the breakers report into it (see BreakerToHealth), they do
// not keep a second flag.
type HealthSource interface {
	Healthy(upstream string) bool
}

// Upstream is one server of a pool, with its transport, limits, health,
// breaker and load figures.
type Upstream struct {
	cfg       UpstreamConfig
	name      string
	scheme    string
	transport http.RoundTripper
	closeIdle func()
	health    HealthSource
	breaker   *Breaker

	inflight atomic.Int64  // requests in flight
	requests atomic.Uint64 // requests sent, retries included
	ewmaNS   atomic.Int64  // EWMA of latency to response headers, ns; 0 = no sample
	weight   int
}

func newUpstream(cfg UpstreamConfig, bc BreakerConfig, health HealthSource, onChange func(BreakerChange)) (*Upstream, error) {
	u := &Upstream{cfg: cfg, name: cfg.Name, health: health, weight: cfg.Weight}
	if u.name == "" {
		u.name = cfg.Address
	}
	if u.weight == 0 {
		u.weight = 1
	}
	if u.cfg.Protocol == "" {
		u.cfg.Protocol = ProtoH1
	}
	u.breaker = NewBreaker(u.name, bc, onChange)
	if err := u.buildTransport(); err != nil {
		return nil, fmt.Errorf("upstream %s: %w", u.name, err)
	}
	return u, nil
}

func (u *Upstream) tlsConfig() (*tls.Config, error) {
	host, _, _ := net.SplitHostPort(u.cfg.Address)
	tc := &tls.Config{ServerName: u.cfg.ServerName, InsecureSkipVerify: u.cfg.InsecureSkipVerify, MinVersion: tls.VersionTLS12}
	if tc.ServerName == "" {
		tc.ServerName = host
	}
	if u.cfg.CAFile != "" {
		pem, err := config.ReadPEMFile(u.cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read ca file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca file %s: no certificates", u.cfg.CAFile)
		}
		tc.RootCAs = pool
	}
	return tc, nil
}

func (u *Upstream) buildTransport() error {
	dialTimeout := u.cfg.DialTimeout
	if dialTimeout == 0 {
		dialTimeout = DefaultDialTimeout
	}
	tc, err := u.tlsConfig()
	if err != nil {
		return err
	}
	switch u.cfg.Protocol {
	case ProtoH3:
		u.scheme = "https"
		p := newH3Pool(func() *http3.Transport {
			return &http3.Transport{
				TLSClientConfig: tc,
				QUICConfig:      &quic.Config{HandshakeIdleTimeout: dialTimeout, MaxIdleTimeout: 30 * time.Second, KeepAlivePeriod: 10 * time.Second},
			}
		})
		u.transport, u.closeIdle = p, p.close
		return nil
	}
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:     tc,
		TLSHandshakeTimeout: dialTimeout,
		MaxIdleConns:        0,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
		MaxConnsPerHost:     u.cfg.MaxConnections,
		DisableCompression:  true, // pass bodies through as they come
		WriteBufferSize:     32 << 10,
		ReadBufferSize:      32 << 10,
	}
	p := new(http.Protocols)
	switch u.cfg.Protocol {
	case ProtoH1:
		p.SetHTTP1(true)
		u.scheme = "http"
		if u.cfg.TLS {
			// Over TLS, ALPN lets the upstream choose HTTP/2 or
			// HTTP/1.1 (RFC 7301), as an https:// URL promises.
			p.SetHTTP2(true)
			u.scheme = "https"
		}
	case ProtoH2:
		p.SetHTTP2(true)
		u.scheme = "https"
	case ProtoH2C:
		p.SetUnencryptedHTTP2(true)
		u.scheme = "http"
	}
	tr.Protocols = p
	u.transport, u.closeIdle = tr, tr.CloseIdleConnections
	if u.cfg.Protocol == ProtoH1 && !u.cfg.TLS {
		// Cleartext HTTP/1.1, the common upstream: the lean client, with
		// the Transport above kept for upgrades and CONNECT.
		c := &h1Client{
			addr:           u.cfg.Address,
			dialer:         net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second},
			maxIdle:        tr.MaxIdleConnsPerHost,
			idleTimeout:    tr.IdleConnTimeout,
			checkIdleAfter: h1CheckIdleAfter,
			fallback:       tr,
		}
		u.transport, u.closeIdle = c, func() { c.closeIdle(true) }
	}
	return nil
}

// Name is the upstream's name (its Address unless configured).
func (u *Upstream) Name() string { return u.name }

// Healthy reports the health source's verdict; without one, true.
func (u *Upstream) Healthy() bool {
	return u.health == nil || u.health.Healthy(u.name)
}

// Full reports whether the upstream is at its request or connection limit.
func (u *Upstream) Full() bool {
	n := u.inflight.Load()
	if u.cfg.MaxRequests > 0 && n >= int64(u.cfg.MaxRequests) {
		return true
	}
	// An HTTP/1.1 connection carries one request at a time.
	return u.cfg.Protocol == ProtoH1 && u.cfg.MaxConnections > 0 && n >= int64(u.cfg.MaxConnections)
}

// Available is Healthy() && !Full() && the breaker allows requests.
func (u *Upstream) Available() bool {
	return u.Healthy() && !u.Full() && u.breaker.OK()
}

// InFlight is the number of requests in flight, from the send to the end
// of the response body: what a drain waits on.
func (u *Upstream) InFlight() int64 { return u.inflight.Load() }

// Requests is the number of requests sent to the upstream, retries included.
func (u *Upstream) Requests() uint64 { return u.requests.Load() }

// Breaker returns the upstream's circuit breaker.
func (u *Upstream) Breaker() *Breaker { return u.breaker }

// Latency returns the EWMA of latency to response headers (0 before any sample).
func (u *Upstream) Latency() time.Duration { return time.Duration(u.ewmaNS.Load()) }

// begin reserves a request slot; false means the upstream became unavailable.
func (u *Upstream) begin() bool {
	n := u.inflight.Add(1)
	if (u.cfg.MaxRequests > 0 && n > int64(u.cfg.MaxRequests)) ||
		(u.cfg.Protocol == ProtoH1 && u.cfg.MaxConnections > 0 && n > int64(u.cfg.MaxConnections)) ||
		!u.breaker.acquire() {
		u.inflight.Add(-1)
		return false
	}
	u.requests.Add(1)
	return true
}

func (u *Upstream) end() { u.inflight.Add(-1) }

// ewmaAlpha weighs a new latency sample; 0.3 follows roughly the last few requests.
const ewmaAlpha = 0.3

func (u *Upstream) observe(latency time.Duration) {
	for {
		old := u.ewmaNS.Load()
		nv := int64(latency)
		if old != 0 {
			nv = int64(math.Round(ewmaAlpha*float64(latency) + (1-ewmaAlpha)*float64(old)))
		}
		if nv == 0 {
			nv = 1
		}
		if u.ewmaNS.CompareAndSwap(old, nv) {
			return
		}
	}
}

// upstreamSet holds upstreams across reloads: an upstream whose name and
// config are unchanged keeps its state (breaker, counters, connections).
type upstreamSet struct {
	mu sync.Mutex
	m  map[string]*Upstream
}

func (s *upstreamSet) get(cfg UpstreamConfig, bc BreakerConfig, health HealthSource, onChange func(BreakerChange), keep map[string]*Upstream) (*Upstream, error) {
	name := cfg.Name
	if name == "" {
		name = cfg.Address
	}
	if u, ok := keep[name]; ok {
		return u, nil
	}
	s.mu.Lock()
	old := s.m[name]
	s.mu.Unlock()
	if old != nil && old.cfg == normalizeUpstream(cfg) && old.breaker.cfg == bc.withDefaults() {
		keep[name] = old
		return old, nil
	}
	u, err := newUpstream(cfg, bc, health, onChange)
	if err != nil {
		return nil, err
	}
	keep[name] = u
	return u, nil
}

func normalizeUpstream(c UpstreamConfig) UpstreamConfig {
	if c.Protocol == "" {
		c.Protocol = ProtoH1
	}
	return c
}

// swap installs the new set and closes transports of upstreams that left.
func (s *upstreamSet) swap(keep map[string]*Upstream) {
	s.mu.Lock()
	old := s.m
	s.m = keep
	s.mu.Unlock()
	for name, u := range old {
		if keep[name] != u {
			u.closeIdle()
		}
	}
}

// retireLeaving retires the breakers of upstreams that keep does not hold
// (removed, or replaced by a changed config), before the new set takes
// requests, so their last verdict is withdrawn from the health source.
func (s *upstreamSet) retireLeaving(keep map[string]*Upstream) {
	s.mu.Lock()
	old := maps.Clone(s.m)
	s.mu.Unlock()
	for name, u := range old {
		if keep[name] != u {
			u.breaker.retire("upstream removed or replaced by a reload")
		}
	}
}

func (s *upstreamSet) lookup(name string) *Upstream {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[name]
}

func (s *upstreamSet) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, u := range s.m {
		u.closeIdle()
	}
}
