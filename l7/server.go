// Package l7 is spooky's request tier: it terminates HTTP/3 (and, beside it,
// HTTP/1.1 and HTTP/2 over TLS) for L7 VIPs, routes requests by host, path,
// method and headers to upstream pools, and proxies them to HTTP/1.1,
// HTTP/2 (TLS or h2c) and HTTP/3 upstreams with load-balancing policies,
// retries, circuit breakers and header/path transforms.
//
// # Tuning
//
// Garbage collection is an operator knob, set in the environment of the
// process like any Go program's, not by this package: GOGC (default 100)
// trades memory for CPU, and GOMEMLIMIT caps the heap the collector aims
// for. The default is the measured choice (BenchmarkPeers, spooky → HTTP/1.1
// at 1 to 64 streams, docs/benchmarks.md): GOGC=200 cut CPU per proxied
// request by 2–6 % and GOGC=400 by 0–11 % across runs, while the resident
// set after load grew from 33 MB to 40 and 55 MB, against the 40 MB the
// request tier aims to stay within. With a higher GOGC set GOMEMLIMIT to what the host can give (say
// 70 % of the unit's memory), so that a burst collects early rather than
// grows the heap several-fold.
//
// quic-go sends with UDP GSO (UDP_SEGMENT) and receives with recvmmsg in
// batches of 8 on Linux by itself, on the listener's socket as on the
// clients' to HTTP/3 upstreams (QUIC_GO_DISABLE_GSO turns GSO off).
//
// quic-go raises each listener's UDP receive and send buffers to 7 MiB
// itself (SO_RCVBUFFORCE/SO_SNDBUFFORCE when privileged, else up to
// net.core.rmem_max/wmem_max) and logs a warning when it cannot; unprivileged
// deployments should raise those sysctls.
package l7

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// ErrNotStarted is returned by methods that need listening sockets before Start.
var ErrNotStarted = errors.New("l7 server not started")

// Server runs every L7 service of a Config.
type Server struct {
	log       *slog.Logger
	cidGen    quic.ConnectionIDGenerator
	cidLen    int
	health    HealthSource
	onChange  func(BreakerChange)
	obs       Observer
	grace     time.Duration
	upstreams upstreamSet

	mu       sync.Mutex
	services map[string]*service
	// leaving are services a reload removed, finishing their connections.
	leaving map[*service]struct{}
	pools   map[string]*Pool
	started bool
}

// service is one L7 VIP: its routes and certificates, and the listeners
// serving them.
type service struct {
	name   string
	log    *slog.Logger
	obs    Observer
	certs  certStore
	router atomic.Pointer[router]
	// trustForwarded mirrors cfg.TrustForwardedHeaders; a reload may change it.
	trustForwarded atomic.Bool
	// quicTLS and tcpTLS are shared by every generation of listeners.
	quicTLS, tcpTLS *tls.Config

	// cfg is guarded by Server.mu.
	cfg ServiceConfig

	mu sync.Mutex
	// cur is the serving generation of listeners; nil until started.
	cur *listeners
	// retired are generations a reload replaced, finishing their connections.
	retired map[*listeners]struct{}
}

// connKey carries the *quic.Conn into handlers, for the 0-RTT check.
type connKey struct{}

// New validates cfg, loads certificates and builds pools and routes. It
// does not listen; call Start.
func New(cfg Config) (*Server, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &Server{
		log:      cfg.Logger,
		cidGen:   cfg.ConnectionIDGenerator,
		cidLen:   cfg.ConnectionIDLength,
		health:   cfg.Health,
		onChange: cfg.OnBreakerStateChange,
		obs:      cfg.Observer,
		grace:    cfg.ReloadGrace,
		services: map[string]*service{},
		leaving:  map[*service]struct{}{},
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.grace == 0 {
		s.grace = DefaultShutdownTimeout
	}
	pools, keep, err := s.buildPools(cfg.Pools)
	if err != nil {
		return nil, err
	}
	for _, sc := range cfg.Services {
		svc, err := s.buildService(sc, pools)
		if err != nil {
			return nil, err
		}
		s.services[sc.Name] = svc
	}
	s.pools = pools
	s.upstreams.swap(keep)
	return s, nil
}

func (s *Server) buildPools(cfgs []PoolConfig) (map[string]*Pool, map[string]*Upstream, error) {
	keep := map[string]*Upstream{}
	pools := map[string]*Pool{}
	for _, pc := range cfgs {
		p, err := newPool(pc, &s.upstreams, s.health, s.onChange, keep)
		if err != nil {
			return nil, nil, err
		}
		pools[pc.Name] = p
	}
	return pools, keep, nil
}

func (s *Server) buildService(sc ServiceConfig, pools map[string]*Pool) (*service, error) {
	sc = sc.withDefaults()
	svc := &service{cfg: sc, name: sc.Name, log: s.log.With("service", sc.Name), obs: s.obs, retired: map[*listeners]struct{}{}}
	if err := svc.load(sc, pools); err != nil {
		return nil, err
	}
	svc.quicTLS = http3.ConfigureTLSConfig(svc.certs.tlsConfig())
	svc.quicTLS.MinVersion = tls.VersionTLS13
	svc.tcpTLS = svc.certs.tlsConfig()
	svc.tcpTLS.NextProtos = []string{"h2", "http/1.1"}
	// Set the session ticket keys up now, before generations clone the
	// config, so that every copy has the same ones (golang/go#60506).
	_, _ = svc.tcpTLS.DecryptTicket(nil, tls.ConnectionState{})
	return svc, nil
}

func (sc ServiceConfig) withDefaults() ServiceConfig {
	if sc.IdleTimeout == 0 {
		sc.IdleTimeout = DefaultIdleTimeout
	}
	return sc
}

// listenerChange says whether b differs from a in a listener setting, and
// whether in the address (which needs new sockets).
func listenerChange(a, b ServiceConfig) (changed, moved bool) {
	moved = a.Address != b.Address
	changed = moved || a.TCP != b.TCP || a.Allow0RTT != b.Allow0RTT ||
		a.IdleTimeout != b.IdleTimeout || a.MaxHeaderBytes != b.MaxHeaderBytes
	return changed, moved
}

// load builds the parts a reload may change: certificates and routes.
func (svc *service) load(sc ServiceConfig, pools map[string]*Pool) error {
	t, err := loadCertTable(sc.Certificates)
	if err != nil {
		return fmt.Errorf("service %s: %w", sc.Name, err)
	}
	rt, err := compileRoutes(sc.Routes, pools)
	if err != nil {
		return fmt.Errorf("service %s: %w", sc.Name, err)
	}
	svc.certs.table.Store(t)
	svc.router.Store(rt)
	svc.trustForwarded.Store(sc.TrustForwardedHeaders)
	return nil
}

// Start binds every service's UDP socket (and TCP listener when asked) and
// serves in the background. Bind errors are returned at once.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return errors.New("l7 server already started")
	}
	for _, svc := range s.services {
		if err := s.startService(svc); err != nil {
			for _, o := range s.services {
				o.close()
			}
			return err
		}
	}
	s.started = true
	return nil
}

func (s *Server) startService(svc *service) error {
	so, err := s.bind(svc.cfg)
	if err != nil {
		return err
	}
	l, err := s.listen(svc, svc.cfg, so)
	if err != nil {
		so.close()
		return err
	}
	svc.setCurrent(l)
	return nil
}

// ServeHTTP routes and proxies one request (HTTP/3 and TCP alike) and
// tells the observer about it.
func (svc *service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	obs := svc.obs
	if obs == nil {
		svc.serve(w, r)
		return
	}
	rec := getRecorder(w)
	start := time.Now()
	// Deferred, so a request the proxy aborts (http.ErrAbortHandler) is counted too.
	defer func() {
		took := time.Since(start)
		if rec.tunnelTook > 0 {
			took = rec.tunnelTook
		}
		obs.ObserveRequest(svc.name, rec.route, rec.pool, rec.upstream, rec.statusFor(r), took)
		putRecorder(rec)
	}()
	svc.serve(rec, r)
}

func (svc *service) serve(w http.ResponseWriter, r *http.Request) {
	if wantsTunnel(r) {
		svc.serveTunnel(w, r) // CONNECT and WebSockets, upgrade.go
		return
	}
	// Whatever the current Allow0RTT: connections accepted with 0-RTT
	// before a reload turned it off may still carry early data.
	early := inEarlyData(r)
	if early && !isSafe(r.Method) {
		// RFC 8470 §5.2: a request received in early data that the server
		// will not risk replaying gets 425.
		writeError(w, http.StatusTooEarly, "request in 0-RTT early data refused; retry after the handshake")
		return
	}
	path := normalizePath(r.URL.EscapedPath())
	route := svc.router.Load().match(r, path)
	if route == nil {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no route for host %q path %q", r.Host, path))
		return
	}
	noteRoute(w, route)
	svc.proxy(w, r, route, path, early)
}

// Addr returns the bound UDP address of a service (useful with port 0).
func (s *Server) Addr(service string) (net.Addr, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	svc, ok := s.services[service]
	if !ok {
		return nil, fmt.Errorf("unknown service %q", service)
	}
	cur := svc.current()
	if cur == nil {
		return nil, ErrNotStarted
	}
	return cur.socks.udp.conn.LocalAddr(), nil
}

// Reload applies a new configuration atomically: pools, routes and
// certificates of existing services are swapped without dropping
// connections; upstreams whose config is unchanged keep their state. A
// service whose listener settings (Address, TCP, Allow0RTT, IdleTimeout,
// MaxHeaderBytes) changed gets new listeners, and its old ones finish their
// connections within Config.ReloadGrace (see Server.relisten). New services
// start, removed ones shut down gracefully. Every socket the new config
// needs is bound before anything changes: on an error (a port in use) the
// old configuration keeps serving as it was.
func (s *Server) Reload(cfg Config) error {
	if err := cfg.validate(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	pools, keep, err := s.buildPools(cfg.Pools)
	if err != nil {
		return err
	}
	type staged struct {
		svc      *service
		sc       ServiceConfig
		t        *certTable
		rt       *router
		relisten bool
		so       *sockets  // new sockets for a new address
		tcp      *tcpFront // a TCP listener turned on at the same address
	}
	var changes []*staged
	var added []*service
	var addedSocks []*sockets
	abort := func(err error) error {
		for _, c := range changes {
			if c.so != nil {
				c.so.close()
			}
			if c.tcp != nil {
				c.tcp.close()
			}
		}
		for _, so := range addedSocks {
			so.close()
		}
		return err
	}
	seen := map[string]bool{}
	for _, sc := range cfg.Services {
		sc = sc.withDefaults()
		seen[sc.Name] = true
		svc, ok := s.services[sc.Name]
		if !ok {
			svc, err := s.buildService(sc, pools)
			if err != nil {
				return abort(err)
			}
			added = append(added, svc)
			continue
		}
		t, err := loadCertTable(sc.Certificates)
		if err != nil {
			return abort(fmt.Errorf("service %s: %w", sc.Name, err))
		}
		rt, err := compileRoutes(sc.Routes, pools)
		if err != nil {
			return abort(fmt.Errorf("service %s: %w", sc.Name, err))
		}
		c := &staged{svc: svc, sc: sc, t: t, rt: rt}
		changes = append(changes, c)
		cur := svc.current()
		changed, moved := listenerChange(svc.cfg, sc)
		if !changed || cur == nil {
			continue
		}
		c.relisten = true
		switch {
		case moved:
			c.so, err = s.bind(sc)
		case sc.TCP && cur.socks.tcp == nil:
			c.tcp, err = bindTCP(sc, cur.socks.port())
		}
		if err != nil {
			return abort(err)
		}
	}
	if s.started {
		for _, svc := range added {
			so, err := s.bind(svc.cfg)
			if err != nil {
				return abort(err)
			}
			addedSocks = append(addedSocks, so)
		}
	}

	// Everything is ready; apply. Breakers of upstreams that leave give up
	// their verdicts before the new pools take requests.
	s.upstreams.retireLeaving(keep)
	var errs []error
	for _, c := range changes {
		c.svc.certs.table.Store(c.t)
		c.svc.router.Store(c.rt)
		c.svc.trustForwarded.Store(c.sc.TrustForwardedHeaders)
		if c.relisten {
			if err := s.relisten(c.svc, c.sc, c.so, c.tcp); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		c.svc.cfg = c.sc
	}
	for i, svc := range added {
		if s.started {
			l, err := s.listen(svc, svc.cfg, addedSocks[i])
			if err != nil {
				addedSocks[i].close()
				errs = append(errs, err)
				continue
			}
			svc.setCurrent(l)
		}
		s.services[svc.name] = svc
	}
	for name, svc := range maps.Clone(s.services) {
		if !seen[name] {
			delete(s.services, name)
			s.leaving[svc] = struct{}{}
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), s.grace)
				defer cancel()
				if err := svc.shutdown(ctx); err != nil {
					svc.log.Warn("removed service cut off connections", "error", err)
				}
				s.mu.Lock()
				delete(s.leaving, svc)
				s.mu.Unlock()
			}()
		}
	}
	s.pools = pools
	s.upstreams.swap(keep)
	return errors.Join(errs...)
}

// relisten replaces svc's listeners with ones built from sc's settings.
// With a new address, so holds the new sockets, bound already: the new
// listeners serve before the old ones stop accepting. At the same address
// the sockets are kept (tcp is a TCP listener just turned on, if any): a
// QUIC transport serves one listener, so the old one stops accepting (its
// handshakes in progress are refused and clients retry them) and the new
// one takes over the socket at once; datagrams of established connections
// keep reaching them through the transport. Either way the old listeners
// then send GOAWAY and finish their requests within the grace. It cannot
// fail in practice: a QUIC listen fails only on a closed transport.
func (s *Server) relisten(svc *service, sc ServiceConfig, so *sockets, tcp *tcpFront) error {
	old := svc.current()
	moved := so != nil
	if !moved {
		so = &sockets{udp: old.socks.udp, tcp: tcp}
		if sc.TCP && old.socks.tcp != nil {
			so.tcp = old.socks.tcp
		}
		old.ownsTCP.Store(so.tcp == nil)
		_ = old.ln.Close()
	}
	l, err := s.listen(svc, sc, so)
	if err != nil {
		if moved {
			so.close()
			return fmt.Errorf("%w; the service keeps its old listeners", err)
		}
		if tcp != nil {
			tcp.close()
		}
		return fmt.Errorf("%w; the service takes no new QUIC connections until it is reloaded again", err)
	}
	svc.setCurrent(l)
	svc.retire(old, s.grace)
	return nil
}

// current returns the serving generation; nil before Start.
func (svc *service) current() *listeners {
	svc.mu.Lock()
	defer svc.mu.Unlock()
	return svc.cur
}

func (svc *service) setCurrent(l *listeners) {
	svc.mu.Lock()
	svc.cur = l
	svc.mu.Unlock()
}

// retire stops l accepting and lets it finish its connections within grace
// in the background.
func (svc *service) retire(l *listeners, grace time.Duration) {
	l.stopAccepting()
	svc.mu.Lock()
	svc.retired[l] = struct{}{}
	svc.mu.Unlock()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), grace)
		defer cancel()
		if err := l.shutdown(ctx, false); err != nil {
			svc.log.Warn("replaced listeners cut off connections at the end of the grace", "grace", grace, "error", err)
		}
		svc.mu.Lock()
		delete(svc.retired, l)
		svc.mu.Unlock()
	}()
}

// generations returns the serving generation and the retired ones still
// finishing their connections.
func (svc *service) generations() []*listeners {
	svc.mu.Lock()
	defer svc.mu.Unlock()
	out := make([]*listeners, 0, 1+len(svc.retired))
	if svc.cur != nil {
		out = append(out, svc.cur)
	}
	for l := range svc.retired {
		out = append(out, l)
	}
	return out
}

// Upstream returns the named upstream, or nil.
func (s *Server) Upstream(name string) *Upstream { return s.upstreams.lookup(name) }

// Pool returns the named pool, or nil.
func (s *Server) Pool(name string) *Pool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pools[name]
}

// Shutdown stops accepting connections (new QUIC handshakes are refused
// with CONNECTION_REFUSED) and requests (HTTP/3 GOAWAY, RFC 9114 §5.2, and
// H3_REQUEST_REJECTED for requests sent after it; HTTP/2 GOAWAY; HTTP/1.1
// Connection: close), lets in-flight requests finish, and closes everything
// when they have or when ctx ends, whichever is first. It returns ctx's
// error if requests were cut off.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	svcs := maps.Clone(s.services)
	s.mu.Unlock()
	var wg sync.WaitGroup
	errs := make(chan error, len(svcs))
	for _, svc := range svcs {
		wg.Go(func() { errs <- svc.shutdown(ctx) })
	}
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	s.upstreams.closeAll()
	return errors.Join(all...)
}

// Close stops everything at once, aborting requests in flight.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, svc := range s.services {
		svc.close()
	}
	for svc := range s.leaving {
		svc.close()
	}
	s.upstreams.closeAll()
	return nil
}

func (svc *service) shutdown(ctx context.Context) error {
	gens := svc.generations()
	errs := make([]error, len(gens))
	var wg sync.WaitGroup
	for i, l := range gens {
		wg.Go(func() { errs[i] = l.shutdown(ctx, true) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("service %s: shutdown: %w", svc.name, err)
	}
	return nil
}

func (svc *service) close() {
	for _, l := range svc.generations() {
		l.close()
	}
}
