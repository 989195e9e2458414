package forwarder

import (
	"errors"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/spooky-lb/spooky/bpf"
	"github.com/spooky-lb/spooky/test/netns"
)

func monotonicCoarse(tb testing.TB) uint64 {
	tb.Helper()
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC_COARSE, &ts); err != nil {
		tb.Fatal(err)
	}
	return uint64(ts.Nano())
}

func TestExpireFlowsDeletesIdleFlowsOnEveryCPU(t *testing.T) {
	objs := mustLoadLB(t)
	now := monotonicCoarse(t)
	x := &XDP{objs: objs, timeouts: map[uint32]time.Duration{0: time.Minute, 1: time.Hour}}
	cpus := mustPossibleCPUs(t)

	idle := bpf.NewFlowKey(0, netip.MustParseAddrPort("198.18.0.1:1000"))
	fresh := bpf.NewFlowKey(0, netip.MustParseAddrPort("198.18.0.1:1001"))
	longLived := bpf.NewFlowKey(1, netip.MustParseAddrPort("198.18.0.1:1002"))
	orphan := bpf.NewFlowKey(7, netip.MustParseAddrPort("198.18.0.1:1003"))
	twoMinutesAgo := now - uint64(2*time.Minute)
	flows := map[bpf.FlowKey]uint64{idle: twoMinutesAgo, fresh: now, longLived: twoMinutesAgo, orphan: now}
	slots := map[uint32]bool{}
	for k, seen := range flows {
		slots[bpf.FlowCacheSlot(k)] = true
		if err := bpf.PutFlow(objs, k, bpf.FlowState{Backend: 1, LastSeenNs: seen}); err != nil {
			t.Fatal(err)
		}
	}
	if len(slots) != len(flows) {
		t.Fatal("the test's flows share flow_cache slots; pick other clients")
	}
	// One flow the CPUs saw at different times (RSS moved it): idle on
	// even CPUs, fresh on odd ones.
	shared := bpf.NewFlowKey(0, netip.MustParseAddrPort("198.18.0.2:2000"))
	if slots[bpf.FlowCacheSlot(shared)] {
		t.Fatal("the mixed slot is one of the other flows' slots; pick another client")
	}
	for cpu := range cpus {
		seen := twoMinutesAgo
		if cpu%2 == 1 {
			seen = now
		}
		if err := bpf.PutFlowOnCPU(objs.FlowCache, cpu, shared, bpf.FlowState{Backend: 1, LastSeenNs: seen}); err != nil {
			t.Fatal(err)
		}
	}

	n, err := x.ExpireFlows()
	if err != nil {
		t.Fatal(err)
	}
	idleCPUs := (cpus + 1) / 2
	if want := 2*cpus + idleCPUs; n != want {
		t.Errorf("expired %d entries, want %d (the idle and orphaned flows on %d CPUs, %d idle entries of the mixed slot)", n, want, cpus, idleCPUs)
	}
	for k, kept := range map[bpf.FlowKey]bool{idle: false, fresh: true, longLived: true, orphan: false} {
		want := 0
		if kept {
			want = cpus
		}
		if got := mustCPUsHoldingFlow(t, objs, k, 1); got != want {
			t.Errorf("flow %v is held on %d CPUs, want %d", k, got, want)
		}
	}
	after, err := bpf.FlowCacheSlotEntries(objs.FlowCache, bpf.FlowCacheSlot(shared))
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range after {
		if wantKept := i%2 == 1; (e.State.LastSeenNs != 0) != wantKept {
			t.Errorf("cpu %d entry of the mixed slot = %+v, kept want %v", i, e, wantKept)
		}
	}
}

// mustCPUsHoldingFlow counts the CPUs whose flow_cache holds k -> backend.
func mustCPUsHoldingFlow(tb testing.TB, objs *bpf.LBObjects, k bpf.FlowKey, backend uint32) int {
	tb.Helper()
	perCPU, err := bpf.FlowCacheSlotEntries(objs.FlowCache, bpf.FlowCacheSlot(k))
	if err != nil {
		tb.Fatalf("read flow_cache: %v", err)
	}
	n := 0
	for _, e := range perCPU {
		if e.Key == k && e.State.Backend == backend && e.State.LastSeenNs != 0 {
			n++
		}
	}
	return n
}

func mustPossibleCPUs(tb testing.TB) int {
	tb.Helper()
	n, err := ebpf.PossibleCPU()
	if err != nil {
		tb.Fatalf("count cpus: %v", err)
	}
	return n
}

func TestAttachNamesAPinnedMapOfAnotherLayout(t *testing.T) {
	root := mustBPFFSDir(t)
	lab := netns.New(t, netns.Config{Backends: 1})
	dir := PinDir(root, lab.LB.Iface)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	// A vips map pinned with another value size, as an older build might
	// have left it.
	m, err := ebpf.NewMapWithOptions(&ebpf.MapSpec{
		Name: "vips", Type: ebpf.Hash, KeySize: 20, ValueSize: 8, MaxEntries: 1, Pinning: ebpf.PinByName,
	}, ebpf.MapOptions{PinPath: dir})
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	err = lab.LB.Do(func() error {
		x, err := Attach(AttachOptions{Interface: lab.LB.Iface, PinRoot: root})
		if err == nil {
			x.Close()
		}
		return err
	})
	if err == nil {
		t.Fatal("attach adopted a map of another layout")
	}
	if !errors.Is(err, ebpf.ErrMapIncompatible) || !strings.Contains(err.Error(), "spooky detach "+lab.LB.Iface) {
		t.Fatalf("err = %v, want ErrMapIncompatible with the detach hint", err)
	}
}
