package bpf

import (
	"errors"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// pinToOneCPU keeps the calling test on one CPU, so that every
// BPF_PROG_TEST_RUN sees the same per-CPU caches. The goroutine stays
// locked to its thread, which ends with the test.
func pinToOneCPU(tb testing.TB) {
	tb.Helper()
	runtime.LockOSThread()
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		tb.Fatal(err)
	}
	for cpu := 0; cpu < 1024; cpu++ {
		if set.IsSet(cpu) {
			set.Zero()
			set.Set(cpu)
			if err := unix.SchedSetaffinity(0, &set); err != nil {
				tb.Fatal(err)
			}
			return
		}
	}
	tb.Fatal("no CPU in the affinity mask")
}

// mustRoute runs in and checks verdict and, for XDP_TX, the backend whose
// MAC the frame now carries (0: not forwarded).
func mustRoute(tb testing.TB, objs *LBObjects, in []byte, wantVerdict uint32, wantBackend uint32) {
	tb.Helper()
	verdict, out := mustRun(tb, objs.XdpLb, in)
	if verdict != wantVerdict {
		tb.Fatalf("verdict = %d, want %d", verdict, wantVerdict)
	}
	if wantBackend != 0 && string(out[:6]) != string(backendMAC(wantBackend)) {
		tb.Fatalf("sent to %x, want backend %d (%s)", out[:6], wantBackend, backendMAC(wantBackend))
	}
}

func TestInvalidateCachesBumpsTheGeneration(t *testing.T) {
	objs := mustLoadLB(t)
	for want := uint64(1); want <= 3; want++ {
		mustInvalidateCaches(t, objs)
		var gen uint64
		if err := objs.CacheGen.Lookup(uint32(0), &gen); err != nil {
			t.Fatal(err)
		}
		if gen != want {
			t.Fatalf("generation %d after %d calls", gen, want)
		}
	}
	mustPut(t, objs.CacheGen, uint32(0), ^uint64(0))
	mustInvalidateCaches(t, objs)
	var gen uint64
	if err := objs.CacheGen.Lookup(uint32(0), &gen); err != nil {
		t.Fatal(err)
	}
	if gen != 1 {
		t.Fatalf("generation wrapped to %d, want 1 (0 turns the caches off)", gen)
	}
}

func TestCachesFollowTheMapsOnceInvalidated(t *testing.T) {
	skipUnlessRoot(t)
	sid1, err := NewServerIDKey(0, []byte{0, 1})
	if err != nil {
		t.Fatal(err)
	}
	short := frame{src: client4, dst: vipL2, payload: shortHeader(plainCID(1))}.bytes()
	newVIP := netip.MustParseAddrPort("198.18.10.20:443")
	toNewVIP := frame{src: client4, dst: newVIP, payload: shortHeader(plainCID(1))}.bytes()

	t.Run("a moved server ID is followed after InvalidateCaches, not before", func(t *testing.T) {
		pinToOneCPU(t)
		objs := mustWorld(t)
		mustInvalidateCaches(t, objs)
		mustRoute(t, objs, short, xdpTX, 1)
		mustPut(t, objs.ServerIds, sid1, uint32(2))
		mustRoute(t, objs, short, xdpTX, 1) // the documented window
		mustInvalidateCaches(t, objs)
		mustRoute(t, objs, short, xdpTX, 2)
	})
	t.Run("a deleted server ID falls through to Maglev after InvalidateCaches", func(t *testing.T) {
		pinToOneCPU(t)
		objs := mustWorld(t)
		mustInvalidateCaches(t, objs)
		mustRoute(t, objs, short, xdpTX, 1)
		if err := objs.ServerIds.Delete(sid1); err != nil {
			t.Fatal(err)
		}
		mustInvalidateCaches(t, objs)
		before := mustCounters(t, objs)
		mustRoute(t, objs, short, xdpTX, maglevPick(vipL2, client4))
		after := mustCounters(t, objs)
		if d := after.reasons[rUnknownServer] - before.reasons[rUnknownServer]; d != 1 {
			t.Errorf("unknown server counted %d times, want 1", d)
		}
		if d := after.vips[0].Maglev - before.vips[0].Maglev; d != 1 {
			t.Errorf("maglev path counted %d times, want 1", d)
		}
	})
	t.Run("a VIP switched to l7 is passed after InvalidateCaches", func(t *testing.T) {
		pinToOneCPU(t)
		objs := mustWorld(t)
		mustInvalidateCaches(t, objs)
		mustRoute(t, objs, short, xdpTX, 1)
		info := VIPInfo{Id: 0, Mode: ModeL7, Cid: testCIDConfigs}
		mustPut(t, objs.Vips, NewVIPKey(vipL2), info)
		mustInvalidateCaches(t, objs)
		before := mustCounters(t, objs)
		mustRoute(t, objs, short, xdpPass, 0)
		if d := mustCounters(t, objs).reasons[rL7] - before.reasons[rL7]; d != 1 {
			t.Errorf("l7 passes grew by %d, want 1", d)
		}
	})
	t.Run("a VIP added after a packet to its address is routed after InvalidateCaches", func(t *testing.T) {
		pinToOneCPU(t)
		objs := mustWorld(t)
		mustInvalidateCaches(t, objs)
		mustRoute(t, objs, toNewVIP, xdpPass, 0) // "no VIP" is cached too
		info := VIPInfo{Id: 20, Cid: testCIDConfigs}
		mustPut(t, objs.Vips, NewVIPKey(newVIP), info)
		k, err := NewServerIDKey(20, []byte{0, 1})
		if err != nil {
			t.Fatal(err)
		}
		mustPut(t, objs.ServerIds, k, uint32(2))
		mustInvalidateCaches(t, objs)
		mustRoute(t, objs, toNewVIP, xdpTX, 2)
	})
	t.Run("a deleted VIP is passed after InvalidateCaches", func(t *testing.T) {
		pinToOneCPU(t)
		objs := mustWorld(t)
		mustInvalidateCaches(t, objs)
		mustRoute(t, objs, short, xdpTX, 1)
		if err := objs.Vips.Delete(NewVIPKey(vipL2)); err != nil {
			t.Fatal(err)
		}
		mustInvalidateCaches(t, objs)
		before := mustCounters(t, objs)
		mustRoute(t, objs, short, xdpPass, 0)
		if d := mustCounters(t, objs).reasons[rNotVIP] - before.reasons[rNotVIP]; d != 1 {
			t.Errorf("not-VIP passes grew by %d, want 1", d)
		}
	})
}

func TestFlowCache(t *testing.T) {
	skipUnlessRoot(t)
	initial := frame{src: client4b, dst: vipL2, payload: longHeader(randomCID)}.bytes()
	pick := maglevPick(vipL2, client4b)
	other := 3 - pick // the other of backends 1 and 2
	key := NewFlowKey(0, client4b)

	t.Run("later Initials keep their backend when the Maglev table changes", func(t *testing.T) {
		pinToOneCPU(t)
		objs := mustWorld(t)
		mustRoute(t, objs, initial, xdpTX, pick)
		mustMaglevTable(t, objs, 0, 0, repeatTable(other))
		before := mustCounters(t, objs)
		mustRoute(t, objs, initial, xdpTX, pick)
		after := mustCounters(t, objs)
		if d := after.vips[0].Flow - before.vips[0].Flow; d != 1 {
			t.Errorf("flow path counted %d times, want 1", d)
		}
		if d := after.backends[pick].Packets - before.backends[pick].Packets; d != 1 {
			t.Errorf("backend %d counted %d packets, want 1", pick, d)
		}
		if n := mustCPUsHolding(t, objs, key, pick); n != 1 {
			t.Errorf("%d CPUs hold the flow in the slot FlowCacheSlot names, want 1 (the test's)", n)
		}
	})
	t.Run("a cached flow to an unusable backend is hashed again and replaced", func(t *testing.T) {
		pinToOneCPU(t)
		objs := mustWorld(t)
		mustRoute(t, objs, initial, xdpTX, pick)
		mustMaglevTable(t, objs, 0, 0, repeatTable(other))
		be, err := NewBackend(netip.MustParseAddr(testBackends[pick].addr), backendMAC(pick), nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		mustPut(t, objs.Backends, pick, be) // unhealthy
		before := mustCounters(t, objs)
		mustRoute(t, objs, initial, xdpTX, other)
		after := mustCounters(t, objs)
		if d := after.reasons[rFlowUnusable] - before.reasons[rFlowUnusable]; d != 1 {
			t.Errorf("unusable flow backend counted %d times, want 1", d)
		}
		if d := after.vips[0].Maglev - before.vips[0].Maglev; d != 1 {
			t.Errorf("maglev path counted %d times, want 1", d)
		}
		wantFlow(0, client4b, other)(t, objs)
	})
	t.Run("a flow Go puts is followed on every CPU until DeleteFlows removes it", func(t *testing.T) {
		objs := mustWorld(t)
		mustPutFlow(t, objs, 0, client4b, FlowState{Backend: other, LastSeenNs: 1})
		if n, cpus := mustCPUsHolding(t, objs, key, other), mustPossibleCPUs(t); n != cpus {
			t.Fatalf("%d of %d CPUs hold the flow", n, cpus)
		}
		mustRoute(t, objs, initial, xdpTX, other) // on whichever CPU
		if _, err := DeleteFlows(objs, func(k FlowKey, _ FlowState) bool { return k == key }); err != nil {
			t.Fatal(err)
		}
		mustRoute(t, objs, initial, xdpTX, pick)
	})
	t.Run("PutFlow refuses a flow without a last-seen time", func(t *testing.T) {
		objs := mustLoadLB(t)
		if err := PutFlow(objs, key, FlowState{Backend: 1}); !errors.Is(err, ErrNoTimestamp) {
			t.Errorf("PutFlow without LastSeenNs = %v, want ErrNoTimestamp", err)
		}
	})
	t.Run("PutFlow refuses a VIP id the map cannot hold and a CPU without a table", func(t *testing.T) {
		objs := mustLoadLB(t)
		if err := PutFlow(objs, NewFlowKey(MaxVIPs, client4b), FlowState{Backend: 1, LastSeenNs: 1}); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("PutFlow of vip %d = %v, want ErrInvalidKey", MaxVIPs, err)
		}
		if err := PutFlowOnCPU(objs.FlowCache, mustPossibleCPUs(t), key, FlowState{Backend: 1, LastSeenNs: 1}); !errors.Is(err, ErrNoSuchCPU) {
			t.Errorf("PutFlowOnCPU past the last CPU = %v, want ErrNoSuchCPU", err)
		}
	})
	t.Run("DeleteFlows removes the matching flows of every CPU and keeps the others", func(t *testing.T) {
		pinToOneCPU(t)
		objs := mustWorld(t)
		cpus := mustPossibleCPUs(t)
		k4, k6 := NewFlowKey(0, client4), NewFlowKey(0, client6)
		if s := FlowCacheSlot(key); s == FlowCacheSlot(k4) || s == FlowCacheSlot(k6) || FlowCacheSlot(k4) == FlowCacheSlot(k6) {
			t.Fatal("the test's flows share a flow_cache slot; pick other clients")
		}
		mustRoute(t, objs, initial, xdpTX, pick) // client4b -> pick, this CPU
		mustPutFlow(t, objs, 0, client4, FlowState{Backend: pick, LastSeenNs: 1})
		mustPutFlow(t, objs, 0, client6, FlowState{Backend: 5, LastSeenNs: 1})
		n, err := DeleteFlows(objs, func(_ FlowKey, s FlowState) bool { return s.Backend == pick })
		if err != nil {
			t.Fatal(err)
		}
		if want := 1 + cpus; n != want {
			t.Errorf("deleted %d entries, want %d (XDP's on one CPU, Go's on %d)", n, want, cpus)
		}
		if got := mustCPUsHolding(t, objs, key, pick); got != 0 {
			t.Errorf("%d CPUs still hold the flow XDP recorded", got)
		}
		if got := mustCPUsHolding(t, objs, k4, pick); got != 0 {
			t.Errorf("%d CPUs still hold the flow Go put for the deleted backend", got)
		}
		if got := mustCPUsHolding(t, objs, k6, 5); got != cpus {
			t.Errorf("%d of %d CPUs kept a flow that did not match", got, cpus)
		}
		mustMaglevTable(t, objs, 0, 0, repeatTable(other))
		mustRoute(t, objs, initial, xdpTX, other)
	})
	t.Run("flows are stamped with the coarse monotonic clock, read again once it moves", func(t *testing.T) {
		pinToOneCPU(t)
		objs := mustWorld(t)
		before := mustCoarseNow(t)
		mustRoute(t, objs, initial, xdpTX, pick)
		after := mustCoarseNow(t)
		first, ok := mustLookupCachedFlow(t, objs, key)
		if !ok {
			t.Fatal("no flow recorded")
		}
		// XDP reads the clock once per jiffy and may see the tick's
		// jiffies before its time (tick_do_update_jiffies64): allow
		// one tick (at most 10 ms, HZ >= 100) of lag.
		if first.LastSeenNs+uint64(10*time.Millisecond) < before || first.LastSeenNs > after {
			t.Fatalf("flow stamped %d, want CLOCK_MONOTONIC_COARSE between %d and %d", first.LastSeenNs, before, after)
		}
		deadline := time.Now().Add(5 * time.Second)
		for mustCoarseNow(t) <= first.LastSeenNs {
			if time.Now().After(deadline) {
				t.Fatal("the coarse clock did not move in 5 s")
			}
			runtime.Gosched()
		}
		next := netip.AddrPortFrom(client4b.Addr(), client4b.Port()+1)
		in := frame{src: next, dst: vipL2, payload: longHeader(randomCID)}.bytes()
		mustRoute(t, objs, in, xdpTX, maglevPick(vipL2, next))
		second, ok := mustLookupCachedFlow(t, objs, NewFlowKey(0, next))
		if !ok {
			t.Fatal("no flow recorded for the second client")
		}
		if second.LastSeenNs <= first.LastSeenNs {
			t.Errorf("a flow recorded a tick later is stamped %d, not after the first's %d: the per-CPU clock was not read again", second.LastSeenNs, first.LastSeenNs)
		}
	})
}

// mustCPUsHolding counts the CPUs whose flow_cache holds key -> backend in
// the slot FlowCacheSlot names.
func mustCPUsHolding(tb testing.TB, objs *LBObjects, key FlowKey, backend uint32) int {
	tb.Helper()
	perCPU, err := FlowCacheSlotEntries(objs.FlowCache, FlowCacheSlot(key))
	if err != nil {
		tb.Fatal(err)
	}
	n := 0
	for _, e := range perCPU {
		if e.Key == key && e.State.Backend == backend && e.State.LastSeenNs != 0 {
			n++
		}
	}
	return n
}

func mustPossibleCPUs(tb testing.TB) int {
	tb.Helper()
	n, err := ebpf.PossibleCPU()
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

// mustCoarseNow reads CLOCK_MONOTONIC_COARSE, the clock
// bpf_ktime_get_coarse_ns reads.
func mustCoarseNow(tb testing.TB) uint64 {
	tb.Helper()
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC_COARSE, &ts); err != nil {
		tb.Fatal(err)
	}
	return uint64(ts.Nano())
}
