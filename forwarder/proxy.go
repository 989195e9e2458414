package forwarder

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spooky-lb/spooky/cid"
	"github.com/spooky-lb/spooky/config"
	"github.com/spooky-lb/spooky/health"
)

// The userspace proxy (forwarding: proxy, DESIGN.md "The userspace
// forwarder on sockets"): a UDP proxy on plain sockets for backends that
// cannot take direct server return, and what spooky is where no XDP
// program can be attached. Each datagram is decided by the Router, the Go
// twin of lb.c, from a plan of the proxy services made by the same Planner
// (and so the same Maglev tables, server IDs and health) as XDP's: a
// routable connection ID first (plaintext, or encrypted through the
// service's cid.Decoder), so a connection that migrates or is rebound by
// a NAT keeps its backend; then the flow table; then Maglev
// (draft-ietf-quic-load-balancers-21 §4.2). The backend sees the proxy's
// address, not the client's.
//
// It lives in package forwarder, beside the Router, because it is the
// Router's other user; its files are proxy*.go.

// ProxyOptions configure NewProxy.
type ProxyOptions struct {
	// Logger receives changes and problems. If nil, slog.Default().
	Logger *slog.Logger
	// Health, if set, decides which backends are usable, as for XDP
	// (Planner.SetHealth); the caller re-Applies after a change.
	Health *health.Registry
	// Workers is the number of sockets (and event loops) per VIP. If
	// zero, one per CPU.
	Workers int
}

// Proxy serves the proxy-mode services of a configuration.
type Proxy struct {
	log     *slog.Logger
	planner *Planner
	router  *Router
	workers int
	// bufSize is the receive buffer of one datagram (or GRO batch):
	// proxyBufSize, smaller only in tests of oversized datagrams.
	bufSize int

	maxSessions atomic.Int64
	sessions    atomic.Int64
	fullLogged  atomic.Int64 // monotonic ns of the last "table full" log
	fullSince   atomic.Uint64

	targets atomic.Pointer[proxyTargets]

	mu        sync.Mutex // serialises Apply, Close and Stats' read of services
	services  map[string]*proxyService
	vipRoutes map[netip.Addr]*vipRoute
	retired   [numProxyEvents]uint64 // counts of stopped workers
	closed    bool
}

// proxyTargets maps backend indexes to where the proxy sends: the address
// and port of each backend of a proxy service. Immutable once published.
type proxyTargets struct {
	byIndex map[uint32]*proxyTarget
}

// proxyTarget is one backend as sessions use it. A reload that keeps a
// backend's address and port keeps its proxyTarget, and so its sessions.
type proxyTarget struct {
	service, name string
	index         uint32
	addr          netip.AddrPort
	ctr           *proxyBackendCounters
}

// proxyService is one VIP's sockets and workers.
type proxyService struct {
	name     string
	vip      netip.AddrPort
	timeout  atomic.Int64 // flow_timeout, ns
	workers  []*proxyWorker
	counters []proxyCounters
	gro      bool
	route    bool // a local route was added for the VIP
	stopping atomic.Bool
}

// anyHop is the proxy's HopResolver: sockets reach backends through the
// kernel's routes, so every backend resolves.
type anyHop struct{}

func (anyHop) Resolve(context.Context, netip.Addr) (NextHop, error) { return NextHop{}, nil }

// NewProxy returns a Proxy serving nothing until Apply.
func NewProxy(opts ProxyOptions) *Proxy {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	pl := NewPlanner(anyHop{}, log)
	pl.proxy = true
	if opts.Health != nil {
		pl.SetHealth(opts.Health)
	}
	p := &Proxy{
		log: log, planner: pl, router: NewRouter(&Desired{}, nil),
		workers:   opts.Workers,
		bufSize:   proxyBufSize,
		services:  map[string]*proxyService{},
		vipRoutes: map[netip.Addr]*vipRoute{},
	}
	if p.workers <= 0 {
		p.workers = runtime.NumCPU()
	}
	p.maxSessions.Store(config.DefaultProxyMaxSessions)
	p.targets.Store(&proxyTargets{byIndex: map[uint32]*proxyTarget{}})
	return p
}

// proxyBackend is the proxy's routing decision for a datagram from src to
// vip: the backend the Router chooses, exactly as XDP would send it there
// (VerdictTX), or false to drop it (XDP would drop or pass it; the proxy
// has no kernel stack to pass to). TestProxyDecisionParityWithXDP holds it
// equal to lb.c.
func proxyBackend(r *Router, src, vip netip.AddrPort, payload []byte) (uint32, bool) {
	d := r.RouteDatagram(src, vip, payload)
	return d.Backend, d.Verdict == VerdictTX
}

// Router returns the Router that decides the proxy's datagrams.
func (p *Proxy) Router() *Router { return p.router }

// proxyServices returns cfg's proxy-mode services by name.
func proxyServices(cfg *config.Config) map[string]*config.ServiceConfig {
	out := map[string]*config.ServiceConfig{}
	for i := range cfg.Services {
		s := &cfg.Services[i]
		if s.Mode == config.ModeL4 && s.Forwarding == config.ForwardingProxy {
			out[s.Name] = s
		}
	}
	return out
}

// Apply makes the proxy serve cfg's proxy-mode services: new ones start
// (their VIP made local if it is not), removed ones stop, and sessions to
// backends a reload removed or moved are closed; every other session
// stays. On error the proxy serves what it served before.
func (p *Proxy) Apply(ctx context.Context, cfg *config.Config) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errors.New("proxy: closed")
	}
	want := proxyServices(cfg)
	// Decoders first: a bad key fails the Apply before anything changes.
	decoders := map[string]*cid.Decoder{}
	for name, s := range want {
		if dec, err := proxyDecoder(s); err != nil {
			return err
		} else if dec != nil {
			decoders[name] = dec
		}
	}
	d, err := p.planner.Plan(ctx, cfg)
	if err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	for _, pr := range d.Problems {
		p.log.Warn("backend left out of the proxy's tables", "err", pr)
	}

	// Start new services (or moved VIPs) before anything else changes,
	// so a VIP that cannot be served fails the Apply cleanly.
	started := map[string]*proxyService{}
	for name, s := range want {
		if old := p.services[name]; old != nil && old.vip == s.AddrPort() {
			continue
		}
		svc, err := p.startService(s)
		if err != nil {
			for _, n := range started {
				p.stopService(n)
			}
			return fmt.Errorf("proxy: service %q: %w", name, err)
		}
		started[name] = svc
	}

	byID := map[uint32]*cid.Decoder{}
	for _, v := range d.VIPs {
		if dec := decoders[v.Service]; dec != nil {
			byID[v.Info.Id] = dec
		}
	}
	p.router.Update(d, byID)
	p.targets.Store(p.newTargets(cfg, want))
	if m := int64(cfg.Proxy.MaxSessions); m > 0 {
		p.maxSessions.Store(m)
	}

	for name, svc := range p.services {
		if s := want[name]; s == nil || started[name] != nil {
			p.stopService(svc)
			delete(p.services, name)
		}
	}
	for name, svc := range started {
		p.services[name] = svc
		p.log.Info("proxy serving", "service", name, "vip", svc.vip, "sockets", len(svc.workers), "gro", svc.gro)
	}
	for name, svc := range p.services {
		svc.timeout.Store(int64(want[name].FlowTimeout))
		for _, w := range svc.workers {
			w.poke() // close sessions of removed backends
		}
	}
	return nil
}

// proxyDecoder returns the decoder of s's encrypted CID configs, or nil.
func proxyDecoder(s *config.ServiceConfig) (*cid.Decoder, error) {
	cfgs, err := s.CIDConfigs()
	if err != nil {
		return nil, err
	}
	if !slices.ContainsFunc(cfgs, func(c cid.Config) bool { return len(c.Key) > 0 }) {
		return nil, nil
	}
	dec, err := cid.NewDecoder(cfgs...)
	if err != nil {
		return nil, fmt.Errorf("service %q: %w", s.Name, err)
	}
	return dec, nil
}

// newTargets maps each backend index to its address and port, keeping
// the targets (and so the sessions) of backends that did not move.
func (p *Proxy) newTargets(cfg *config.Config, want map[string]*config.ServiceConfig) *proxyTargets {
	old := p.targets.Load()
	next := &proxyTargets{byIndex: map[uint32]*proxyTarget{}}
	for name, s := range want {
		for _, b := range s.Backends {
			idx, ok := p.planner.backends.byKey[backendKey(name, b.Name)]
			if !ok {
				continue
			}
			port := b.Port
			if port == 0 {
				port = s.Port
			}
			addr := netip.AddrPortFrom(b.Address, uint16(port))
			if t := old.byIndex[idx]; t != nil && t.service == name && t.name == b.Name && t.addr == addr {
				next.byIndex[idx] = t
				continue
			}
			next.byIndex[idx] = &proxyTarget{service: name, name: b.Name, index: idx, addr: addr, ctr: &proxyBackendCounters{}}
		}
	}
	return next
}

// startService opens the VIP's sockets, one per worker, and runs them.
func (p *Proxy) startService(s *config.ServiceConfig) (*proxyService, error) {
	svc := &proxyService{name: s.Name, vip: s.AddrPort(), counters: make([]proxyCounters, p.workers)}
	svc.timeout.Store(int64(s.FlowTimeout))
	route, err := p.holdVIP(s.Address)
	if err != nil {
		return nil, err
	}
	svc.route = route
	svc.gro = true
	for i := 0; i < p.workers; i++ {
		w, err := newProxyWorker(p, svc, &svc.counters[i])
		if err != nil {
			for _, w := range svc.workers {
				w.closeFDs()
			}
			if route {
				p.releaseVIP(s.Address)
			}
			return nil, err
		}
		svc.gro = svc.gro && w.gro
		svc.workers = append(svc.workers, w)
	}
	for _, w := range svc.workers {
		go w.run()
	}
	return svc, nil
}

// stopService ends svc's workers (closing their sessions and sockets) and
// drops its hold on the VIP.
func (p *Proxy) stopService(svc *proxyService) {
	svc.stopping.Store(true)
	for _, w := range svc.workers {
		w.poke()
	}
	for _, w := range svc.workers {
		<-w.done
	}
	for i := range svc.counters {
		for e := range numProxyEvents {
			p.retired[e] += svc.counters[i].c[e].Load()
		}
	}
	if svc.route {
		p.releaseVIP(svc.vip.Addr())
	}
	p.log.Info("proxy stopped serving", "service", svc.name, "vip", svc.vip)
}

// Close stops every service, closing their sessions, and removes the
// local routes it added.
func (p *Proxy) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for name, svc := range p.services {
		p.stopService(svc)
		delete(p.services, name)
	}
	p.closed = true
	return nil
}

func (p *Proxy) reserveSession() bool {
	if p.sessions.Add(1) > p.maxSessions.Load() {
		p.sessions.Add(-1)
		return false
	}
	return true
}

func (p *Proxy) releaseSession() { p.sessions.Add(-1) }

// tableFullLogEvery bounds the "session table full" log to one line per
// interval; the counter has every occurrence.
const tableFullLogEvery = 10 * time.Second

// tableFull says, at most once per tableFullLogEvery, that new sessions
// are refused.
func (p *Proxy) tableFull() {
	p.fullSince.Add(1)
	now := monoNow()
	last := p.fullLogged.Load()
	if now-last < int64(tableFullLogEvery) && last != 0 {
		return
	}
	if !p.fullLogged.CompareAndSwap(last, now) {
		return
	}
	p.log.Warn("proxy session table full: datagrams of new clients are dropped (raise proxy.max_sessions)",
		"max_sessions", p.maxSessions.Load(), "dropped_since_last_report", p.fullSince.Swap(0))
}

// Stats returns the proxy's counters.
func (p *Proxy) Stats() *ProxyStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	var ev [numProxyEvents]uint64
	ev = p.retired
	st := &ProxyStats{
		Events:      map[string]uint64{},
		Reasons:     reasonCountsByName(p.router.ReasonCounts()),
		Sessions:    p.sessions.Load(),
		MaxSessions: p.maxSessions.Load(),
	}
	for _, svc := range p.services {
		for i := range svc.counters {
			for e := range numProxyEvents {
				ev[e] += svc.counters[i].c[e].Load()
			}
		}
		st.Services = append(st.Services, ProxyServiceStats{
			Service: svc.name, VIP: svc.vip, Sockets: len(svc.workers), GRO: svc.gro, LocalRoute: svc.route,
		})
	}
	for e := range numProxyEvents {
		st.Events[e.String()] = ev[e]
	}
	for _, t := range p.targets.Load().byIndex {
		st.Backends = append(st.Backends, ProxyBackendStats{
			Service: t.service, Name: t.name, Index: t.index, Address: t.addr,
			Packets: t.ctr.packets.Load(), Bytes: t.ctr.bytes.Load(),
			Replies: t.ctr.replies.Load(), ReplyBytes: t.ctr.rbytes.Load(),
			Sessions: t.ctr.sessions.Load(),
		})
	}
	slices.SortFunc(st.Services, func(a, b ProxyServiceStats) int { return cmpString(a.Service, b.Service) })
	slices.SortFunc(st.Backends, func(a, b ProxyBackendStats) int {
		if c := cmpString(a.Service, b.Service); c != 0 {
			return c
		}
		return cmpString(a.Name, b.Name)
	})
	return st
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
