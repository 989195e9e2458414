package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"time"

	"github.com/spooky-lb/spooky/admin"
	"github.com/spooky-lb/spooky/bgp"
	"github.com/spooky-lb/spooky/config"
	"github.com/spooky-lb/spooky/health"
	"github.com/spooky-lb/spooky/metrics"
)

// bgpTier announces, over BGP, the host route of every VIP this daemon can
// serve: one it serves (l7 and proxy always; other l4 when the XDP path is attached) with
// at least one healthy backend or upstream. Routers then spread the VIP's
// flows over every host that announces it (DESIGN.md, "Scale-out"). The
// daemon calls its methods with its lock held.
type bgpTier struct {
	log    *slog.Logger
	health *health.Registry
	// l4 says whether the daemon forwards l4 services (XDP attached).
	l4 bool

	sp     *bgp.Speaker // nil without a bgp section
	global bgpGlobal    // what sp was started with
	cfg    *config.Config
	// withdrawn holds every route back: spooky drain --all, or shutdown.
	withdrawn bool
	stopping  bool
}

// bgpGlobal is what a running speaker cannot change: a change restarts it.
type bgpGlobal struct {
	asn        int
	routerID   netip.Addr
	listenPort int
}

func (t *bgpTier) apply(ctx context.Context, cfg *config.Config) error {
	b := cfg.BGP
	if b == nil {
		if t.sp != nil {
			t.log.Info("bgp section removed; closing every session")
			_ = t.sp.Close()
			t.sp = nil
		}
		t.cfg = cfg
		return nil
	}
	g := bgpGlobal{asn: b.ASN, routerID: b.RouterID, listenPort: b.ListenPort}
	if t.sp == nil || g != t.global {
		if t.sp != nil {
			// A new identity needs new sessions; the routers drop
			// this host's routes until they are up again.
			t.log.Info("bgp identity changed; restarting the speaker")
			_ = t.sp.Close()
			t.sp = nil
		}
		sp, err := bgp.Start(ctx, bgp.Config{
			ASN: uint32(b.ASN), RouterID: b.RouterID, ListenPort: b.ListenPort, Logger: t.log,
		})
		if err != nil {
			return err
		}
		t.sp, t.global = sp, g
	}
	peers := make([]bgp.Peer, len(b.Peers))
	for i, p := range b.Peers {
		peers[i] = bgp.Peer{Address: p.Address, ASN: uint32(p.ASN), Port: p.Port, HoldTime: p.HoldTime, Password: p.Password}
	}
	if err := t.sp.SetPeers(ctx, peers); err != nil {
		return err
	}
	t.cfg = cfg
	return t.reconcile()
}

// reconcile announces what the config applied last and the health now
// allow, and withdraws the rest.
func (t *bgpTier) reconcile() error {
	if t.sp == nil {
		return nil
	}
	routes, err := t.desired()
	if err != nil {
		return err
	}
	return t.sp.Announce(routes)
}

// desired returns the routes to announce.
func (t *bgpTier) desired() ([]bgp.Route, error) {
	if t.withdrawn || t.stopping || t.cfg == nil || t.cfg.BGP == nil {
		return nil, nil
	}
	b := t.cfg.BGP
	var vips []netip.Addr
	for i := range t.cfg.Services {
		s := &t.cfg.Services[i]
		if t.serves(s) && t.usable(s) && !slices.Contains(vips, s.Address) {
			vips = append(vips, s.Address)
		}
	}
	routes := make([]bgp.Route, 0, len(vips))
	for _, a := range vips {
		r := bgp.Route{Prefix: bgp.HostRoute(a), NextHop: b.NextHopIPv4}
		if a.Is6() {
			r.NextHop = b.NextHopIPv6
		}
		if v, ok := b.VIP(a); ok {
			cs, err := v.CommunityValues()
			if err != nil {
				return nil, fmt.Errorf("bgp: vip %s: %w", a, err)
			}
			r.Communities = cs
			if v.MED != nil {
				r.MED, r.HasMED = uint32(*v.MED), true
			}
		}
		routes = append(routes, r)
	}
	return routes, nil
}

// serves reports whether this daemon serves s at all.
func (t *bgpTier) serves(s *config.ServiceConfig) bool {
	if s.Mode == config.ModeL7 {
		return true
	}
	// The userspace proxy serves forwarding: proxy under attach and
	// serve alike; the other l4 services need the XDP path.
	return s.Forwarding == config.ForwardingProxy || t.l4
}

// usable reports whether s has a target that takes new connections:
// healthy, neither unhealthy nor draining (health.Registry).
func (t *bgpTier) usable(s *config.ServiceConfig) bool {
	if s.Mode != config.ModeL7 {
		for _, b := range s.Backends {
			if t.health.Get(health.Backend(s.Name, b.Name)).State == health.Healthy {
				return true
			}
		}
		return false
	}
	for _, r := range s.Routes {
		for _, p := range t.cfg.Pools {
			if p.Name != r.Pool {
				continue
			}
			for _, u := range p.Upstreams {
				if t.health.Get(health.Upstream(u.Address)).State == health.Healthy {
					return true
				}
			}
		}
	}
	return false
}

// setWithdrawn holds every route back (drain --all) or lets them go out
// again, and reconciles.
func (t *bgpTier) setWithdrawn(w bool) error {
	t.withdrawn = w
	return t.reconcile()
}

// withdrawForShutdown withdraws every route and returns how long routers
// should be given to move traffic away before forwarding stops: the
// configured grace if anything was announced, else nothing.
func (t *bgpTier) withdrawForShutdown() time.Duration {
	t.stopping = true
	if t.sp == nil || len(t.sp.Routes()) == 0 {
		return 0
	}
	if err := t.sp.Announce(nil); err != nil {
		t.log.Error("bgp: withdraw before shutdown", "err", err)
	}
	return t.cfg.BGP.WithdrawGrace
}

func (t *bgpTier) stop(context.Context) error {
	if t.sp == nil {
		return nil
	}
	err := t.sp.Close()
	t.sp = nil
	return err
}

// status reports the speaker's peers and routes for the admin API; nil
// without a bgp section.
func (t *bgpTier) status(ctx context.Context) *admin.BGPStatus {
	if t.sp == nil {
		return nil
	}
	st := &admin.BGPStatus{
		ASN: uint32(t.global.asn), RouterID: t.global.routerID, Withdrawn: t.withdrawn,
		Peers: []admin.BGPPeer{}, Routes: t.routes(),
	}
	peers, err := t.sp.Peers(ctx)
	if err != nil {
		t.log.Warn("bgp: read peers for the admin API", "err", err)
	}
	for _, p := range peers {
		st.Peers = append(st.Peers, admin.BGPPeer{
			Address: p.Address, ASN: p.ASN, State: p.State, Since: p.Since,
			HoldTimeSeconds: int(p.HoldTime / time.Second), Advertised: p.Advertised, LastError: p.LastError,
		})
	}
	return st
}

// routes returns the announced routes for the admin API.
func (t *bgpTier) routes() []admin.BGPRoute {
	out := []admin.BGPRoute{}
	if t.sp == nil {
		return out
	}
	for _, r := range t.sp.Routes() {
		ar := admin.BGPRoute{Prefix: r.Prefix, NextHop: r.NextHop}
		for _, c := range r.Communities {
			ar.Communities = append(ar.Communities, bgp.FormatCommunity(c))
		}
		if r.HasMED {
			med := r.MED
			ar.MED = &med
		}
		out = append(out, ar)
	}
	return out
}

// metricsState reports the speaker for the metrics; nil without one.
func (t *bgpTier) metricsState(ctx context.Context) *metrics.BGPState {
	if t.sp == nil {
		return nil
	}
	st := &metrics.BGPState{}
	peers, err := t.sp.Peers(ctx)
	if err != nil {
		t.log.Warn("bgp: read peers for the metrics", "err", err)
	}
	for _, p := range peers {
		st.Peers = append(st.Peers, metrics.BGPPeer{Address: p.Address.String(), ASN: p.ASN, Established: p.State == bgp.Established})
	}
	for _, r := range t.sp.Routes() {
		st.Routes = append(st.Routes, r.Prefix.String())
	}
	return st
}
