package forwarder

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/spooky-lb/spooky/bpf"
	"github.com/spooky-lb/spooky/config"
	"github.com/spooky-lb/spooky/health"
)

// fixedHops resolves every address to a MAC made from it; addresses in
// gateway are behind a router, those in fail do not resolve.
type fixedHops struct {
	gateway map[netip.Addr]bool
	fail    map[netip.Addr]bool
}

func (h fixedHops) Resolve(_ context.Context, a netip.Addr) (NextHop, error) {
	if h.fail[a] {
		return NextHop{}, ErrNoNeighbour
	}
	b := a.As16()
	hop := NextHop{MAC: net.HardwareAddr{0x02, 0, b[12], b[13], b[14], b[15]}}
	if h.gateway[a] {
		hop.Gateway = netip.MustParseAddr("198.18.0.254")
	}
	return hop, nil
}

func mustParse(tb testing.TB, src string) *config.Config {
	tb.Helper()
	cfg, err := config.Parse([]byte(src), "test.yaml")
	if err != nil {
		tb.Fatal(err)
	}
	return cfg
}

const planYAML = `services:
  - name: web
    address: 198.18.0.10
    port: 443
    cid: [{config_id: 1, server_id_len: 2, nonce_len: 6}]
    backends:
      - {name: b1, address: 198.18.0.11, weight: 100, server_id: "0001"}
      - {name: b2, address: 198.18.0.12, weight: 300, server_id: "0002"}
  - name: tunnel
    address: 2001:db8::a
    port: 443
    forwarding: ipip
    hash: 4-tuple
    strict: true
    backends:
      - {name: b1, address: 2001:db8::b}
  - name: udp-proxy
    address: 198.18.0.11
    port: 53
    forwarding: proxy
    backends:
      - {name: b1, address: 198.18.0.11}
`

func mustPlan(tb testing.TB, p *Planner, src string) *Desired {
	tb.Helper()
	d, err := p.Plan(context.Background(), mustParse(tb, src))
	if err != nil {
		tb.Fatal(err)
	}
	return d
}

func TestPlanner(t *testing.T) {
	t.Run("a config becomes VIP entries, backend slots, server IDs and weighted tables", func(t *testing.T) {
		d := mustPlan(t, NewPlanner(fixedHops{}, nil), planYAML)
		if len(d.VIPs) != 2 {
			t.Fatalf("%d VIPs, want 2 (proxy VIPs are left to the userspace forwarder)", len(d.VIPs))
		}
		web := d.VIPs[bpf.NewVIPKey(netip.MustParseAddrPort("198.18.0.10:443"))]
		if web.Info.Forwarding != bpf.ForwardingL2DSR || web.Info.Hash != bpf.HashSrcIP || web.Info.MaglevSize != 65537 {
			t.Errorf("web info = %+v", web.Info)
		}
		if c := web.Info.Cid[1]; c.ServerIdLen != 2 || c.NonceLen != 6 || c.Flags != bpf.CIDConfigPresent {
			t.Errorf("web cid[1] = %+v", c)
		}
		count := map[uint32]int{}
		for _, b := range web.Table {
			count[b]++
		}
		b1 := d.ServerIDs[mustKey(t, web.Info.Id, 0, 1)]
		b2 := d.ServerIDs[mustKey(t, web.Info.Id, 0, 2)]
		if share := float64(count[b2]) / float64(len(web.Table)); share < 0.74 || share > 0.76 {
			t.Errorf("b2 (weight 300 of 400) holds %.3f of the table, want 0.75", share)
		}
		if got := d.Backends[b1]; got.Mac != [6]byte{2, 0, 198, 18, 0, 11} || got.Flags != bpf.BackendHealthy {
			t.Errorf("b1 slot = %+v, want its own MAC (l2dsr) and healthy", got)
		}
		tunnel := d.VIPs[bpf.NewVIPKey(netip.MustParseAddrPort("[2001:db8::a]:443"))]
		if tunnel.Info.Forwarding != bpf.ForwardingIPIP || tunnel.Info.Hash != bpf.Hash4Tuple || tunnel.Info.Flags&bpf.VIPStrict == 0 {
			t.Errorf("tunnel info = %+v", tunnel.Info)
		}
		for _, i := range tunnel.Table[:1] {
			if d.Backends[i].NexthopMac == [6]byte{} {
				t.Errorf("ipip backend %d has no next-hop MAC", i)
			}
		}
	})

	t.Run("ids stay put across a reload that removes a backend, and the freed one is reported", func(t *testing.T) {
		p := NewPlanner(fixedHops{}, nil)
		before := mustPlan(t, p, planYAML)
		after := mustPlan(t, p, strings.Replace(planYAML, `      - {name: b1, address: 198.18.0.11, weight: 100, server_id: "0001"}
`, "", 1))
		webID := before.VIPs[bpf.NewVIPKey(netip.MustParseAddrPort("198.18.0.10:443"))].Info.Id
		b2 := before.ServerIDs[mustKey(t, webID, 0, 2)]
		if got, ok := after.ServerIDs[mustKey(t, webID, 0, 2)]; !ok || got != b2 {
			t.Fatalf("b2's index moved from %d to %d (present %v)", b2, got, ok)
		}
		if len(after.Freed) != 1 || after.Freed[0] != before.ServerIDs[mustKey(t, webID, 0, 1)] {
			t.Fatalf("freed = %v, want b1's index", after.Freed)
		}
		for _, b := range after.VIPs[bpf.NewVIPKey(netip.MustParseAddrPort("198.18.0.10:443"))].Table {
			if b != b2 {
				t.Fatalf("table still points at backend %d after b1 left", b)
			}
		}
	})

	t.Run("a failed plan leaves the ids as they were", func(t *testing.T) {
		p := NewPlanner(fixedHops{}, nil)
		before := mustPlan(t, p, planYAML)
		cfg := mustParse(t, planYAML)
		cfg.Services[0].MaglevSize = 4 // not prime: BuildMaglev fails
		if _, err := p.Plan(context.Background(), cfg); err == nil {
			t.Fatal("Plan with a bad table size succeeded")
		}
		again := mustPlan(t, p, planYAML)
		for k, v := range before.ServerIDs {
			if again.ServerIDs[k] != v {
				t.Fatalf("server ID %v moved from %d to %d after a failed plan", k, v, again.ServerIDs[k])
			}
		}
	})

	t.Run("an unreachable or routed l2dsr backend is left out and reported, the rest applies", func(t *testing.T) {
		hops := fixedHops{
			fail:    map[netip.Addr]bool{netip.MustParseAddr("198.18.0.11"): true},
			gateway: map[netip.Addr]bool{netip.MustParseAddr("198.18.0.12"): true},
		}
		d := mustPlan(t, NewPlanner(hops, nil), planYAML)
		if len(d.Problems) != 2 || !errors.Is(d.Problems[0], ErrNoNeighbour) || !errors.Is(d.Problems[1], errBehindRouter) {
			t.Fatalf("problems = %v, want one unresolved and one behind a router", d.Problems)
		}
		web := d.VIPs[bpf.NewVIPKey(netip.MustParseAddrPort("198.18.0.10:443"))]
		if web.Table != nil || web.Info.MaglevSize != 0 {
			t.Fatalf("web has a table of %d entries with no usable backend", len(web.Table))
		}
		if len(d.ServerIDs) != 0 {
			t.Fatalf("server IDs %v kept for unusable backends", d.ServerIDs)
		}
		if len(d.VIPs[bpf.NewVIPKey(netip.MustParseAddrPort("[2001:db8::a]:443"))].Table) == 0 {
			t.Fatal("the tunnel VIP lost its table over web's problems")
		}
	})

	t.Run("health decides tables and server IDs: unhealthy loses both, draining keeps its server ID", func(t *testing.T) {
		reg := health.NewRegistry(nil)
		p := NewPlanner(fixedHops{}, nil)
		p.SetHealth(reg)
		reg.Report(health.Backend("web", "b1"), health.Active, health.Unhealthy, "probe failed")
		reg.Report(health.Backend("web", "b2"), health.Operator, health.Draining, "operator")
		d := mustPlan(t, p, planYAML)
		web := d.VIPs[bpf.NewVIPKey(netip.MustParseAddrPort("198.18.0.10:443"))]
		if web.Table != nil {
			t.Fatal("web kept a table with one backend unhealthy and the other draining")
		}
		if _, ok := d.ServerIDs[mustKey(t, web.Info.Id, 0, 1)]; ok {
			t.Error("the unhealthy backend kept its server ID")
		}
		b2, ok := d.ServerIDs[mustKey(t, web.Info.Id, 0, 2)]
		if !ok || d.Backends[b2].Flags != bpf.BackendDraining {
			t.Errorf("draining backend: server ID kept %v, flags %v; want kept, draining", ok, d.Backends[b2].Flags)
		}
	})
}

func mustKey(tb testing.TB, vip uint32, sid ...byte) bpf.ServerIDKey {
	tb.Helper()
	k, err := bpf.NewServerIDKey(vip, sid)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}
