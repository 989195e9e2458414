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
// for. Allocation and collection are about a third of the request tier's
// CPU time at load (mallocgc plus the mark workers in BenchmarkProxy's rig
// profile); GOGC=400 cut the rig's CPU per request by roughly 10–20 % on
// the HTTP/3-to-HTTP/3 path there. With a higher GOGC set GOMEMLIMIT to
// what the host can give (say 70 % of the unit's memory), so that a burst
// collects early rather than grows the heap four-fold.
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
	"strconv"
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
	onChange  func(string, BreakerState, BreakerState)
	upstreams upstreamSet

	mu       sync.Mutex
	services map[string]*service
	pools    map[string]*Pool
	started  bool
}

// service is one listener (VIP) with its routes and certificates.
type service struct {
	cfg    ServiceConfig
	log    *slog.Logger
	certs  certStore
	router atomic.Pointer[router]
	// trustForwarded mirrors cfg.TrustForwardedHeaders; a reload may change it.
	trustForwarded atomic.Bool

	udp    *net.UDPConn
	tr     *quic.Transport
	ln     http3.QUICListener
	h3     *http3.Server
	tcpLn  net.Listener
	h1     *http.Server
	altSvc string
	done   sync.WaitGroup
	// draining is set when shutdown begins: new QUIC connections are refused.
	draining atomic.Bool
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
		services: map[string]*service{},
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
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
	if sc.IdleTimeout == 0 {
		sc.IdleTimeout = DefaultIdleTimeout
	}
	svc := &service{cfg: sc, log: s.log.With("service", sc.Name)}
	if err := svc.load(sc, pools); err != nil {
		return nil, err
	}
	return svc, nil
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
	ua, err := net.ResolveUDPAddr("udp", svc.cfg.Address)
	if err != nil {
		return fmt.Errorf("service %s: resolve %s: %w", svc.cfg.Name, svc.cfg.Address, err)
	}
	udp, err := net.ListenUDP("udp", ua)
	if err != nil {
		return fmt.Errorf("service %s: listen udp %s: %w", svc.cfg.Name, svc.cfg.Address, err)
	}
	svc.udp = udp
	gen := svc.cfg.ConnectionIDGenerator
	if gen == nil {
		gen = s.cidGen
	}
	svc.tr = &quic.Transport{Conn: udp, ConnectionIDGenerator: gen, ConnectionIDLength: s.cidLen}
	qconf := &quic.Config{
		MaxIdleTimeout: svc.cfg.IdleTimeout,
		Allow0RTT:      svc.cfg.Allow0RTT,
	}
	qconf.GetConfigForClient = func(*quic.ClientInfo) (*quic.Config, error) {
		if svc.draining.Load() {
			return nil, errDraining
		}
		return qconf, nil
	}
	tlsConf := http3.ConfigureTLSConfig(svc.certs.tlsConfig())
	tlsConf.MinVersion = tls.VersionTLS13
	if svc.cfg.Allow0RTT {
		ln, err := svc.tr.ListenEarly(tlsConf, qconf)
		if err != nil {
			udp.Close()
			return fmt.Errorf("service %s: listen quic: %w", svc.cfg.Name, err)
		}
		svc.ln = ln
	} else {
		ln, err := svc.tr.Listen(tlsConf, qconf)
		if err != nil {
			udp.Close()
			return fmt.Errorf("service %s: listen quic: %w", svc.cfg.Name, err)
		}
		svc.ln = ln
	}
	port := udp.LocalAddr().(*net.UDPAddr).Port
	svc.h3 = &http3.Server{
		Handler:        svc,
		IdleTimeout:    svc.cfg.IdleTimeout,
		MaxHeaderBytes: svc.cfg.MaxHeaderBytes,
		Logger:         svc.log,
		ConnContext: func(ctx context.Context, c *quic.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, c)
		},
	}
	svc.done.Go(func() {
		if err := svc.h3.ServeListener(svc.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			svc.log.Error("http3 server stopped", "error", err)
		}
	})
	if svc.cfg.TCP {
		// Same IP and port as the QUIC socket, so Alt-Svc can name just the port.
		addr := net.JoinHostPort(ua.IP.String(), strconv.Itoa(port))
		if ua.IP == nil {
			addr = ":" + strconv.Itoa(port)
		}
		tl, err := net.Listen("tcp", addr)
		if err != nil {
			svc.close()
			return fmt.Errorf("service %s: listen tcp %s: %w", svc.cfg.Name, addr, err)
		}
		svc.altSvc = fmt.Sprintf(`h3=":%d"; ma=86400`, port)
		tc := svc.certs.tlsConfig()
		tc.NextProtos = []string{"h2", "http/1.1"}
		svc.h1 = &http.Server{
			Handler:           http.HandlerFunc(svc.serveTCP),
			TLSConfig:         tc,
			IdleTimeout:       svc.cfg.IdleTimeout,
			ReadHeaderTimeout: 10 * time.Second,
			MaxHeaderBytes:    svc.cfg.MaxHeaderBytes,
			ErrorLog:          slog.NewLogLogger(svc.log.Handler(), slog.LevelDebug),
		}
		svc.tcpLn = tls.NewListener(tl, tc)
		svc.done.Go(func() {
			if err := svc.h1.Serve(svc.tcpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				svc.log.Error("tcp server stopped", "error", err)
			}
		})
	}
	svc.log.Info("l7 service listening", "address", udp.LocalAddr().String(), "tcp", svc.cfg.TCP, "0rtt", svc.cfg.Allow0RTT)
	return nil
}

// ServeHTTP routes and proxies one request (HTTP/3 and TCP alike).
func (svc *service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodConnect {
		refuseConnect(w)
		return
	}
	early := svc.cfg.Allow0RTT && inEarlyData(r)
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
	svc.proxy(w, r, route, path, early)
}

func (svc *service) serveTCP(w http.ResponseWriter, r *http.Request) {
	// RFC 7838 §3: advertise the HTTP/3 endpoint on the same port.
	w.Header().Set("Alt-Svc", svc.altSvc)
	if closeAfter(r) {
		w.Header().Set("Connection", "close")
	}
	svc.ServeHTTP(w, r)
}

// Addr returns the bound UDP address of a service (useful with port 0).
func (s *Server) Addr(service string) (net.Addr, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	svc, ok := s.services[service]
	if !ok {
		return nil, fmt.Errorf("unknown service %q", service)
	}
	if svc.udp == nil {
		return nil, ErrNotStarted
	}
	return svc.udp.LocalAddr(), nil
}

// Reload applies a new configuration atomically: pools, routes and
// certificates of existing services are swapped without dropping
// connections; upstreams whose config is unchanged keep their state. New
// services start, removed ones shut down gracefully. A service's Address,
// TCP, Allow0RTT and IdleTimeout apply only when it is restarted. On error
// nothing changes.
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
		svc *service
		t   *certTable
		rt  *router
	}
	var changes []staged
	var added []*service
	seen := map[string]bool{}
	for _, sc := range cfg.Services {
		seen[sc.Name] = true
		if svc, ok := s.services[sc.Name]; ok {
			t, err := loadCertTable(sc.Certificates)
			if err != nil {
				return fmt.Errorf("service %s: %w", sc.Name, err)
			}
			rt, err := compileRoutes(sc.Routes, pools)
			if err != nil {
				return fmt.Errorf("service %s: %w", sc.Name, err)
			}
			if sc.Address != svc.cfg.Address || sc.TCP != svc.cfg.TCP || sc.Allow0RTT != svc.cfg.Allow0RTT {
				s.log.Warn("listener settings change on restart only", "service", sc.Name)
			}
			changes = append(changes, staged{svc, t, rt})
			continue
		}
		svc, err := s.buildService(sc, pools)
		if err != nil {
			return err
		}
		added = append(added, svc)
	}
	if s.started {
		for i, svc := range added {
			if err := s.startService(svc); err != nil {
				for _, a := range added[:i] {
					a.close()
				}
				return err
			}
		}
	}
	for _, c := range changes {
		c.svc.certs.table.Store(c.t)
		c.svc.router.Store(c.rt)
		c.svc.trustForwarded.Store(cfgService(cfg, c.svc.cfg.Name).TrustForwardedHeaders)
	}
	for _, svc := range added {
		s.services[svc.cfg.Name] = svc
	}
	for name, svc := range maps.Clone(s.services) {
		if !seen[name] {
			delete(s.services, name)
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), DefaultShutdownTimeout)
				defer cancel()
				_ = svc.shutdown(ctx)
			}()
		}
	}
	s.pools = pools
	s.upstreams.swap(keep)
	return nil
}

func cfgService(cfg Config, name string) ServiceConfig {
	for _, sc := range cfg.Services {
		if sc.Name == name {
			return sc
		}
	}
	return ServiceConfig{}
}

// SetUpstreamHealth marks an upstream (by name) healthy or not, for callers
// that push health rather than implement HealthSource. It reports whether
// the upstream exists.
func (s *Server) SetUpstreamHealth(upstream string, healthy bool) bool {
	u := s.upstreams.lookup(upstream)
	if u == nil {
		return false
	}
	u.healthy.Store(healthy)
	return true
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
	s.upstreams.closeAll()
	return nil
}

func (svc *service) shutdown(ctx context.Context) error {
	if svc.udp == nil {
		return nil
	}
	// New connections are refused with CONNECTION_REFUSED (RFC 9000 §20.1)
	// rather than silence: a client told to go away on its connection
	// retries on a new one and must learn at once that this server is
	// gone, not after its handshake timeout. The listener stays open until
	// the end so that refusals can be sent.
	svc.draining.Store(true)
	svc.done.Go(svc.refuseAccepted)
	var wg sync.WaitGroup
	var h3err, h1err error
	// GOAWAY on every connection (RFC 9114 §5.2); requests already accepted
	// run to the end of the grace, later ones are reset with
	// H3_REQUEST_REJECTED, and connections close when their requests are
	// done (clients close them on GOAWAY) or when ctx ends.
	wg.Go(func() { h3err = svc.h3.Shutdown(ctx) })
	if svc.h1 != nil {
		wg.Go(func() { h1err = svc.h1.Shutdown(ctx) })
	}
	wg.Wait()
	svc.close()
	if err := errors.Join(h3err, h1err); err != nil {
		return fmt.Errorf("service %s: shutdown: %w", svc.cfg.Name, err)
	}
	return nil
}

// errDraining refuses new connections once shutdown has begun.
var errDraining = errors.New("service shutting down")

// refuseAccepted closes connections whose handshake was under way when
// shutdown began: the HTTP/3 server no longer accepts them, and they would
// otherwise wait, unserved, for the end of the grace. It returns when the
// listener closes.
func (svc *service) refuseAccepted() {
	for {
		c, err := svc.ln.Accept(context.Background())
		if err != nil {
			return
		}
		_ = c.CloseWithError(quic.ApplicationErrorCode(http3.ErrCodeNoError), "shutting down")
	}
}

func (svc *service) close() {
	if svc.h3 != nil {
		_ = svc.h3.Close()
	}
	if svc.h1 != nil {
		_ = svc.h1.Close()
	}
	if svc.ln != nil {
		_ = svc.ln.Close()
	}
	if svc.tr != nil {
		_ = svc.tr.Close()
	}
	if svc.udp != nil {
		_ = svc.udp.Close()
	}
	svc.done.Wait()
}
