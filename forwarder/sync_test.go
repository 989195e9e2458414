package forwarder

import (
	"errors"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/spooky-lb/spooky/bpf"
)

func mustLoadLB(tb testing.TB) *bpf.LBObjects {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("loading XDP programs needs root (CAP_BPF); run the tests as root")
	}
	objs, err := bpf.LoadLB(nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { objs.Close() })
	return objs
}

// slotMapID returns the id of the inner table in a VIP's slot, 0 if empty.
func slotMapID(tb testing.TB, objs *bpf.LBObjects, vip, slot uint32) uint32 {
	tb.Helper()
	var id uint32
	err := objs.Maglev.Lookup(bpf.MaglevSlot(vip, slot), &id)
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return 0
	}
	if err != nil {
		tb.Fatal(err)
	}
	return id
}

func mustVIP(tb testing.TB, objs *bpf.LBObjects, ap string) (bpf.VIPInfo, bool) {
	tb.Helper()
	var info bpf.VIPInfo
	err := objs.Vips.Lookup(bpf.NewVIPKey(netip.MustParseAddrPort(ap)), &info)
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return info, false
	}
	if err != nil {
		tb.Fatal(err)
	}
	return info, true
}

func TestSyncer(t *testing.T) {
	objs := mustLoadLB(t)
	s := NewSyncer(objs, nil)
	p := NewPlanner(fixedHops{}, nil)
	first := mustPlan(t, p, planYAML)
	if err := s.Apply(first); err != nil {
		t.Fatal(err)
	}
	web, ok := mustVIP(t, objs, "198.18.0.10:443")
	if !ok {
		t.Fatal("web VIP not written")
	}
	b1 := first.ServerIDs[mustKey(t, web.Id, 0, 1)]
	b2 := first.ServerIDs[mustKey(t, web.Id, 0, 2)]

	t.Run("the first table goes into slot 0 and the maps hold the plan", func(t *testing.T) {
		if web.MaglevSlot != 0 || slotMapID(t, objs, web.Id, 0) == 0 {
			t.Fatalf("web slot = %d, table in slot 0 = %d", web.MaglevSlot, slotMapID(t, objs, web.Id, 0))
		}
		var got bpf.Backend
		if err := objs.Backends.Lookup(b1, &got); err != nil || got != first.Backends[b1] {
			t.Fatalf("backend %d = %+v (%v), want %+v", b1, got, err, first.Backends[b1])
		}
		var idx uint32
		if err := objs.ServerIds.Lookup(mustKey(t, web.Id, 0, 2), &idx); err != nil || idx != b2 {
			t.Fatalf("server ID 0002 → %d (%v), want %d", idx, err, b2)
		}
	})

	t.Run("applying the same plan again rewrites no table", func(t *testing.T) {
		before := slotMapID(t, objs, web.Id, 0)
		if err := s.Apply(mustPlan(t, p, planYAML)); err != nil {
			t.Fatal(err)
		}
		info, _ := mustVIP(t, objs, "198.18.0.10:443")
		if info.MaglevSlot != 0 || slotMapID(t, objs, web.Id, 0) != before || slotMapID(t, objs, web.Id, 1) != 0 {
			t.Fatalf("slot %d, slot 0 table %d (was %d), slot 1 table %d; want nothing rewritten",
				info.MaglevSlot, slotMapID(t, objs, web.Id, 0), before, slotMapID(t, objs, web.Id, 1))
		}
	})

	t.Run("removing a backend writes the inactive slot, flips, and clears what pointed at it", func(t *testing.T) {
		old := slotMapID(t, objs, web.Id, 0)
		flowB1 := bpf.NewFlowKey(web.Id, netip.MustParseAddrPort("198.18.0.1:40000"))
		flowB2 := bpf.NewFlowKey(web.Id, netip.MustParseAddrPort("198.18.0.1:40001"))
		if bpf.FlowCacheSlot(flowB1) == bpf.FlowCacheSlot(flowB2) {
			t.Fatal("the test's flows share a flow_cache slot; pick other clients")
		}
		for k, b := range map[bpf.FlowKey]uint32{flowB1: b1, flowB2: b2} {
			if err := bpf.PutFlow(objs, k, bpf.FlowState{Backend: b, LastSeenNs: 1}); err != nil {
				t.Fatal(err)
			}
		}
		next := mustPlan(t, p, strings.Replace(planYAML, `      - {name: b1, address: 198.18.0.11, weight: 100, server_id: "0001"}
`, "", 1))
		if err := s.Apply(next); err != nil {
			t.Fatal(err)
		}
		info, _ := mustVIP(t, objs, "198.18.0.10:443")
		if info.MaglevSlot != 1 || slotMapID(t, objs, web.Id, 1) == 0 {
			t.Fatalf("after the reload web uses slot %d (table %d), want slot 1", info.MaglevSlot, slotMapID(t, objs, web.Id, 1))
		}
		if slotMapID(t, objs, web.Id, 0) != old {
			t.Error("the previously active table was replaced instead of left aside")
		}
		var idx uint32
		if err := objs.ServerIds.Lookup(mustKey(t, web.Id, 0, 1), &idx); !errors.Is(err, ebpf.ErrKeyNotExist) {
			t.Errorf("b1's server ID is still mapped (to %d, %v)", idx, err)
		}
		var slot bpf.Backend
		if err := objs.Backends.Lookup(b1, &slot); err != nil || slot != (bpf.Backend{}) {
			t.Errorf("b1's slot = %+v (%v), want cleared", slot, err)
		}
		if n := mustCPUsHoldingFlow(t, objs, flowB1, b1); n != 0 {
			t.Errorf("a flow to the removed backend survived on %d CPUs", n)
		}
		if n, cpus := mustCPUsHoldingFlow(t, objs, flowB2, b2), mustPossibleCPUs(t); n != cpus {
			t.Errorf("a flow to a surviving backend was kept on %d of %d CPUs", n, cpus)
		}
	})

	t.Run("removing a VIP deletes its entry and both table slots", func(t *testing.T) {
		tunnel, _ := mustVIP(t, objs, "[2001:db8::a]:443")
		cut := planYAML[:strings.Index(planYAML, "  - name: tunnel")]
		if err := s.Apply(mustPlan(t, p, cut)); err != nil {
			t.Fatal(err)
		}
		if _, ok := mustVIP(t, objs, "[2001:db8::a]:443"); ok {
			t.Fatal("the removed VIP is still in the vips map")
		}
		if slotMapID(t, objs, tunnel.Id, 0) != 0 || slotMapID(t, objs, tunnel.Id, 1) != 0 {
			t.Fatal("the removed VIP's tables are still in the maglev map")
		}
	})
}
