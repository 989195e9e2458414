package forwarder

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/spooky-lb/spooky/bpf"
)

func monotonicCoarse(tb testing.TB) uint64 {
	tb.Helper()
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC_COARSE, &ts); err != nil {
		tb.Fatal(err)
	}
	return uint64(ts.Nano())
}

func TestExpireFlowsDeletesIdleFlowsFromBothTables(t *testing.T) {
	objs := mustLoadLB(t)
	now := monotonicCoarse(t)
	x := &XDP{objs: objs, timeouts: map[uint32]time.Duration{0: time.Minute, 1: time.Hour}}

	idle := bpf.NewFlowKey(0, netip.MustParseAddrPort("198.18.0.1:1000"))
	fresh := bpf.NewFlowKey(0, netip.MustParseAddrPort("198.18.0.1:1001"))
	longLived := bpf.NewFlowKey(1, netip.MustParseAddrPort("198.18.0.1:1002"))
	orphan := bpf.NewFlowKey(7, netip.MustParseAddrPort("198.18.0.1:1003"))
	twoMinutesAgo := now - uint64(2*time.Minute)
	for k, seen := range map[bpf.FlowKey]uint64{idle: twoMinutesAgo, fresh: now, longLived: twoMinutesAgo, orphan: now} {
		if err := objs.Flows.Put(k, bpf.FlowState{Backend: 1, LastSeenNs: seen}); err != nil {
			t.Fatal(err)
		}
	}
	// XDP's own table: one idle and one fresh entry on every CPU's slot 5.
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		t.Fatal(err)
	}
	perCPU := make([]bpf.FlowCacheEntry, cpus)
	for i := range perCPU {
		perCPU[i] = bpf.FlowCacheEntry{Key: idle, State: bpf.FlowState{Backend: 1, LastSeenNs: twoMinutesAgo}}
		if i%2 == 1 {
			perCPU[i] = bpf.FlowCacheEntry{Key: fresh, State: bpf.FlowState{Backend: 1, LastSeenNs: now}}
		}
	}
	if err := objs.FlowCache.Put(uint32(5), perCPU); err != nil {
		t.Fatal(err)
	}

	n, err := x.ExpireFlows()
	if err != nil {
		t.Fatal(err)
	}
	idleCPUs := (cpus + 1) / 2
	if want := 2 + idleCPUs; n != want {
		t.Errorf("expired %d entries, want %d (idle and orphaned flows, %d idle cache entries)", n, want, idleCPUs)
	}
	for k, want := range map[bpf.FlowKey]bool{idle: false, fresh: true, longLived: true, orphan: false} {
		var s bpf.FlowState
		err := objs.Flows.Lookup(k, &s)
		if got := err == nil; got != want {
			t.Errorf("flow %v present = %v (%v), want %v", k, got, err, want)
		} else if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			t.Fatal(err)
		}
	}
	var after []bpf.FlowCacheEntry
	if err := objs.FlowCache.Lookup(uint32(5), &after); err != nil {
		t.Fatal(err)
	}
	for i, e := range after {
		if wantKept := i%2 == 1; (e.State.LastSeenNs != 0) != wantKept {
			t.Errorf("cpu %d cache entry = %+v, kept want %v", i, e, wantKept)
		}
	}
}
