package forwarder

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/spooky-lb/spooky/bpf"
	"github.com/spooky-lb/spooky/config"
	"github.com/spooky-lb/spooky/health"
)

// Desired is what the XDP maps must hold for one configuration: the
// contents of vips, backends, server_ids and the Maglev tables, keyed the
// way the maps are. The Syncer writes it.
type Desired struct {
	VIPs      map[bpf.VIPKey]DesiredVIP
	Backends  map[uint32]bpf.Backend
	ServerIDs map[bpf.ServerIDKey]uint32
	// Freed are backend indexes that the previous plan used and this one
	// does not: their slots are cleared and flows that point at them dropped.
	Freed []uint32
	// Problems are backends left out of the tables (unresolvable next hop,
	// an l2dsr backend behind a router), one error each.
	Problems []error
}

// DesiredVIP is one VIP's entry and Maglev table. Info.MaglevSlot is left
// for the Syncer, which knows which slot is active.
type DesiredVIP struct {
	Service string
	Info    bpf.VIPInfo
	// FlowTimeout is how long an idle flow entry of this VIP lasts.
	FlowTimeout time.Duration
	// Table maps Maglev entries to backend indexes; nil when the VIP has no
	// usable backend (or is l7).
	Table []uint32
}

// HopResolver finds the next hop of a backend address on the edge link.
// *Resolver implements it.
type HopResolver interface {
	Resolve(ctx context.Context, addr netip.Addr) (NextHop, error)
}

// Planner turns configurations into Desired states, keeping VIP ids and
// backend indexes stable across reloads.
type Planner struct {
	vips     *ids
	backends *ids
	hops     HopResolver
	health   *health.Registry
	log      *slog.Logger
	// proxy plans the services of forwarding proxy instead of the rest,
	// for the userspace proxy's Router (NewProxyPlanner).
	proxy bool
}

// SetHealth makes later plans follow r: unhealthy backends leave the
// Maglev tables and lose their server IDs (their connections then hash to
// a live backend, which resets them, so clients fail fast); draining ones
// leave the tables but keep their server IDs, so established connections
// finish. Health is keyed by health.Backend(service, backend). If never
// set, every backend whose next hop resolves is healthy.
func (p *Planner) SetHealth(r *health.Registry) { p.health = r }

// backendKey is the key a backend's index is assigned and stored under
// (the pinned spooky_ids map), "service/backend".
func backendKey(service, backend string) string { return service + "/" + backend }

// NewPlanner returns a Planner resolving next hops with hops. If log is
// nil, slog.Default() is used.
func NewPlanner(hops HopResolver, log *slog.Logger) *Planner {
	if log == nil {
		log = slog.Default()
	}
	return &Planner{
		vips:     newIDs(bpf.MaxVIPs),
		backends: newIDs(bpf.MaxBackends),
		hops:     hops,
		log:      log,
	}
}

// Plan computes the desired map contents for cfg, which must be valid.
// VIPs in forwarding mode proxy are left out: the userspace forwarder
// serves them, so XDP passes their packets up. A backend whose next hop
// does not resolve stays in the backends map as unusable and out of the
// Maglev table, and is reported in Desired.Problems; the rest of the
// configuration still applies.
func (p *Planner) Plan(ctx context.Context, cfg *config.Config) (*Desired, error) {
	services, vipKeys, backendKeys := planKeys(cfg, p.proxy)
	// Allocate on copies so that a failed plan leaves the ids as they were.
	vips, backends := p.vips.clone(), p.backends.clone()
	vipIDs, _, err := vips.assign(vipKeys)
	if err != nil {
		return nil, fmt.Errorf("assign vip ids: %w", err)
	}
	backendIDs, freed, err := backends.assign(backendKeys)
	if err != nil {
		return nil, fmt.Errorf("assign backend indexes: %w", err)
	}

	d := &Desired{
		VIPs:      map[bpf.VIPKey]DesiredVIP{},
		Backends:  map[uint32]bpf.Backend{},
		ServerIDs: map[bpf.ServerIDKey]uint32{},
		Freed:     freed,
	}
	for _, s := range services {
		if err := p.planService(ctx, d, s, vipIDs[s.Name], backendIDs); err != nil {
			return nil, fmt.Errorf("service %q: %w", s.Name, err)
		}
	}
	p.vips, p.backends = vips, backends
	return d, nil
}

func (p *Planner) planService(ctx context.Context, d *Desired, s *config.ServiceConfig, vipID uint32, backendIDs map[string]uint32) error {
	info := bpf.VIPInfo{Id: vipID, Mode: bpf.ModeL4}
	if s.Mode == config.ModeL7 {
		info.Mode = bpf.ModeL7
		d.VIPs[bpf.NewVIPKey(s.AddrPort())] = DesiredVIP{Service: s.Name, Info: info}
		return nil
	}
	if s.Forwarding == config.ForwardingIPIP {
		info.Forwarding = bpf.ForwardingIPIP
	}
	if s.Hash == config.HashSrcIP {
		info.Hash = bpf.HashSrcIP
	}
	if s.Strict {
		info.Flags |= bpf.VIPStrict
	}
	for _, c := range s.CID {
		flags := bpf.CIDConfigPresent
		if len(c.Key) > 0 {
			flags |= bpf.CIDConfigEncrypted
		}
		info.Cid[c.ConfigID] = bpf.CIDConfig{
			ServerIdLen: uint8(c.ServerIDLen),
			NonceLen:    uint8(c.NonceLen),
			Flags:       flags,
		}
	}

	var ring []MaglevBackend
	var ringIndex []uint32
	for _, b := range s.Backends {
		index := backendIDs[backendKey(s.Name, b.Name)]
		backend, err := p.backend(ctx, s, b)
		if err != nil {
			d.Problems = append(d.Problems, fmt.Errorf("service %q backend %q: %w", s.Name, b.Name, err))
		}
		if p.health != nil && backend.Flags != 0 {
			switch p.health.Get(health.Backend(s.Name, b.Name)).State {
			case health.Unhealthy:
				backend.Flags = 0
			case health.Draining:
				backend.Flags = bpf.BackendDraining
			}
		}
		d.Backends[index] = backend
		if len(b.ServerID) > 0 && backend.Flags != 0 {
			key, err := bpf.NewServerIDKey(vipID, b.ServerID)
			if err != nil {
				return fmt.Errorf("backend %q: %w", b.Name, err)
			}
			d.ServerIDs[key] = index
		}
		if backend.Flags&bpf.BackendHealthy == 0 {
			continue
		}
		// Keyed by address, not name, so that load balancers whose
		// configs name backends differently still agree (DESIGN.md,
		// "Scale-out").
		ring = append(ring, MaglevBackend{Key: b.Address.String(), Weight: uint32(b.Weight)})
		ringIndex = append(ringIndex, index)
	}

	vip := DesiredVIP{Service: s.Name, Info: info, FlowTimeout: s.FlowTimeout}
	if len(ring) > 0 {
		table, err := BuildMaglev(ring, uint32(s.MaglevSize))
		if err != nil {
			return err
		}
		for i, e := range table {
			table[i] = ringIndex[e]
		}
		vip.Table = table
		vip.Info.MaglevSize = uint32(len(table))
	}
	d.VIPs[bpf.NewVIPKey(s.AddrPort())] = vip
	return nil
}

// planKeys lists the services XDP serves (or, with proxy, those the
// userspace proxy serves) and the allocator keys of their VIPs and
// backends, in config order.
func planKeys(cfg *config.Config, proxy bool) (services []*config.ServiceConfig, vipKeys, backendKeys []string) {
	for i := range cfg.Services {
		s := &cfg.Services[i]
		if (s.Mode == config.ModeL4 && s.Forwarding == config.ForwardingProxy) != proxy {
			continue
		}
		services = append(services, s)
		vipKeys = append(vipKeys, s.Name)
		if s.Mode == config.ModeL4 {
			for _, b := range s.Backends {
				backendKeys = append(backendKeys, backendKey(s.Name, b.Name))
			}
		}
	}
	return services, vipKeys, backendKeys
}

// seed gives cfg's VIPs and backends the ids stored by an earlier run, so
// the first plan after a restart keeps the indexes the pinned maps use.
func (p *Planner) seed(cfg *config.Config, vips, backends map[idStoreValue]uint32) error {
	_, vipKeys, backendKeys := planKeys(cfg, p.proxy)
	v, b := p.vips.clone(), p.backends.clone()
	if err := v.seed(vipKeys, vips); err != nil {
		return fmt.Errorf("vip ids: %w", err)
	}
	if err := b.seed(backendKeys, backends); err != nil {
		return fmt.Errorf("backend indexes: %w", err)
	}
	p.vips, p.backends = v, b
	return nil
}

// errBehindRouter is returned for an l2dsr backend that is not on-link:
// DSR rewrites only the destination MAC, so the backend must share the
// edge interface's L2 segment.
var errBehindRouter = errors.New("l2dsr backend is not on-link (routed via a gateway); use forwarding: ipip")

// backend resolves b's next hop and returns its map value: healthy when
// resolved, unusable (flags 0) with the reason otherwise.
func (p *Planner) backend(ctx context.Context, s *config.ServiceConfig, b config.BackendConfig) (bpf.Backend, error) {
	unusable, err := bpf.NewBackend(b.Address, nil, nil, 0)
	if err != nil {
		return bpf.Backend{}, err
	}
	hop, err := p.hops.Resolve(ctx, b.Address)
	if err != nil {
		return unusable, err
	}
	if s.Forwarding == config.ForwardingL2DSR {
		if hop.Gateway.IsValid() {
			return unusable, errBehindRouter
		}
		return bpf.NewBackend(b.Address, hop.MAC, nil, bpf.BackendHealthy)
	}
	return bpf.NewBackend(b.Address, nil, hop.MAC, bpf.BackendHealthy)
}
