package bpf

import (
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"
)

// Per-packet cost of the XDP programs under BPF_PROG_TEST_RUN, reported as
// ns/pkt (the kernel's own timing, without the syscall) and as a ratio to
// baseline.c's xdp_baseline measured the same way in the same run.
//
// Three methods, because with Repeat > 1 the kernel runs the program again
// on the buffer the previous run rewrote (lab-facts):
//   - repeat: one packet, Repeat = b.N. Honest for paths whose output is
//     the same kind of packet: an l2dsr rewrite leaves a routable short
//     header routable and a known flow known.
//   - stamp: stamp.c's xdp_stamp writes a new client address and port into
//     the frame and tail-calls xdp_lb (or xdp_baseline), Repeat = b.N, so
//     every repetition is a new flow: a flow-table miss, a Maglev lookup
//     and a flow_cache insert, without a syscall per packet. The stamp and
//     the tail call cost the same on both sides of the ratio; the
//     benchmark checks that every repetition took the Maglev path.
//   - fresh: a new frame per run (Repeat = 1 each), for ipip, whose output
//     would not route again and which grows the frame (adjust_head). Each
//     run includes the test-run timer's own overhead, so it is compared
//     with the baseline measured the same way.

func benchRepeat(b *testing.B, prog *ebpf.Program, in []byte, want uint32) time.Duration {
	b.Helper()
	ret, d, err := prog.Benchmark(in, b.N, b.ResetTimer)
	if err != nil {
		b.Fatal(err)
	}
	if ret != want {
		b.Fatalf("verdict %d, want %d", ret, want)
	}
	return d
}

// benchFresh runs each frame once; when it wraps around, reset (if not
// nil) restores the state the frames expect. Only the kernel's timing of
// the runs is summed, so the reset costs nothing measured.
func benchFresh(b *testing.B, prog *ebpf.Program, frames [][]byte, want uint32, reset func() error) time.Duration {
	b.Helper()
	var total time.Duration
	b.ResetTimer()
	for i := range b.N {
		if i > 0 && i%len(frames) == 0 && reset != nil {
			if err := reset(); err != nil {
				b.Fatal(err)
			}
		}
		ret, d, err := prog.Benchmark(frames[i%len(frames)], 1, nil)
		if err != nil {
			b.Fatal(err)
		}
		if ret != want {
			b.Fatalf("verdict %d, want %d", ret, want)
		}
		total += d
	}
	return total / time.Duration(b.N)
}

// StampObjects are stamp.c's benchmark programs and maps.
type stampObjs = stampObjects

// mustLoadBaseline loads baseline.c's xdp_baseline, the speed limit the
// XDP benchmarks report lb.c's cost against.
func mustLoadBaseline(tb testing.TB) *baselineObjects {
	tb.Helper()
	var objs baselineObjects
	if err := loadBaselineObjects(&objs, nil); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { objs.Close() })
	return &objs
}

// mustLoadStamp loads stamp.c, sharing lb's maglev map.
func mustLoadStamp(tb testing.TB, lb *LBObjects) *stampObjs {
	tb.Helper()
	spec, err := loadStamp()
	if err != nil {
		tb.Fatal(err)
	}
	var objs stampObjs
	opts := &ebpf.CollectionOptions{MapReplacements: map[string]*ebpf.Map{"maglev": lb.Maglev}}
	if err := spec.LoadAndAssign(&objs, opts); err != nil {
		tb.Fatalf("load stamp: %v", err)
	}
	tb.Cleanup(func() { objs.Close() })
	return &objs
}

// benchStamp runs xdp_stamp with Repeat = b.N, tail-calling next.
func benchStamp(b *testing.B, st *stampObjs, next *ebpf.Program, in []byte, want uint32) time.Duration {
	b.Helper()
	if err := st.StampNext.Put(uint32(0), next); err != nil {
		b.Fatalf("put stamp_next: %v", err)
	}
	return benchRepeat(b, st.XdpStamp, in, want)
}

// mustFullMaglevTable gives the VIP a table of the largest size, so the
// Maglev lookups of the stamp benchmark touch a production-sized table.
func mustFullMaglevTable(tb testing.TB, objs *LBObjects, vip netip.AddrPort, id uint32) {
	tb.Helper()
	entries := make([]uint32, MaglevMaxSize)
	for i := range entries {
		entries[i] = 1 + uint32(i%2) // backends 1 and 2
	}
	mustMaglevTable(tb, objs, id, 1, entries)
	var info VIPInfo
	if err := objs.Vips.Lookup(NewVIPKey(vip), &info); err != nil {
		tb.Fatal(err)
	}
	info.MaglevSize, info.MaglevSlot = MaglevMaxSize, 1
	mustPut(tb, objs.Vips, NewVIPKey(vip), info)
	mustInvalidateCaches(tb, objs)
}

func mustVIPCounters(tb testing.TB, objs *LBObjects, id uint32) VIPCounters {
	tb.Helper()
	var per []VIPCounters
	if err := objs.VipStats.Lookup(id, &per); err != nil {
		tb.Fatal(err)
	}
	var s VIPCounters
	for _, p := range per {
		s.Packets += p.Packets
		s.Maglev += p.Maglev
		s.Flow += p.Flow
	}
	return s
}

func report(b *testing.B, d, base time.Duration) {
	b.ReportMetric(float64(d.Nanoseconds()), "ns/pkt")
	if base > 0 {
		b.ReportMetric(float64(d)/float64(base), "x-baseline")
	}
	b.Logf("%-40s %6d ns/pkt  %.2fx baseline (%d ns)", b.Name(), d.Nanoseconds(), float64(d)/float64(base), base.Nanoseconds())
}

func BenchmarkXDP(b *testing.B) {
	skipUnlessRoot(b)
	base := mustLoadBaseline(b)
	pass, err := LoadPass()
	if err != nil {
		b.Fatal(err)
	}
	defer pass.Close()
	objs, err := LoadLB(nil) // full-size flow table, as in production
	if err != nil {
		b.Fatal(err)
	}
	defer objs.Close()
	fillWorld(b, objs)
	// As the Syncer does after writing the maps: turns the per-CPU
	// caches of vips and server_ids on.
	if err := InvalidateCaches(objs); err != nil {
		b.Fatal(err)
	}
	// One CPU, so the per-CPU caches (and flow_cache) are those a stream
	// of packets on one RX queue would see.
	pinToOneCPU(b)

	short := frame{src: client4, dst: vipL2, payload: shortHeader(plainCID(1))}.bytes()
	initial := frame{src: client4, dst: vipL2, payload: longHeader(randomCID)}.bytes()
	freshIPIP := make([][]byte, 256)
	for i := range freshIPIP {
		src := netip.AddrPortFrom(client4.Addr(), uint16(2000+i))
		freshIPIP[i] = frame{src: src, dst: vipIPIP, payload: shortHeader(plainCID(1))}.bytes()
	}
	if err := clearFlows(objs); err != nil {
		b.Fatal(err)
	}
	mustFullMaglevTable(b, objs, vipL2, 0)
	st := mustLoadStamp(b, objs)

	var baseRepeat, baseStamp, baseFresh time.Duration
	b.Run("baseline/repeat", func(b *testing.B) {
		baseRepeat = benchRepeat(b, base.XdpBaseline, short, xdpTX)
		report(b, baseRepeat, baseRepeat)
	})
	b.Run("baseline/stamp", func(b *testing.B) {
		baseStamp = benchStamp(b, st, base.XdpBaseline, initial, xdpTX)
		report(b, baseStamp, baseStamp)
	})
	b.Run("baseline/fresh", func(b *testing.B) {
		baseFresh = benchFresh(b, base.XdpBaseline, freshIPIP, xdpTX, nil)
		report(b, baseFresh, baseFresh)
	})
	b.Run("pass/repeat", func(b *testing.B) {
		report(b, benchRepeat(b, pass.XdpPass, short, xdpPass), baseRepeat)
	})
	b.Run("lb/short-header-cid/repeat", func(b *testing.B) {
		report(b, benchRepeat(b, objs.XdpLb, short, xdpTX), baseRepeat)
	})
	// The first run hashes the Initial and records its flow in
	// flow_cache; every later one is a flow-table hit.
	b.Run("lb/flow-hit/repeat", func(b *testing.B) {
		report(b, benchRepeat(b, objs.XdpLb, initial, xdpTX), baseRepeat)
	})
	// Every repetition a new client: flow_cache misses, the Maglev table
	// decides, flow_cache records it.
	b.Run("lb/initial-maglev/stamp", func(b *testing.B) {
		before := mustVIPCounters(b, objs, 0)
		d := benchStamp(b, st, objs.XdpLb, initial, xdpTX)
		after := mustVIPCounters(b, objs, 0)
		if got := after.Maglev - before.Maglev; got != uint64(b.N) {
			b.Fatalf("%d of %d repetitions took the Maglev path (flow path: %d)", got, b.N, after.Flow-before.Flow)
		}
		report(b, d, baseStamp)
	})
	b.Run("lb/short-header-ipip/fresh", func(b *testing.B) {
		report(b, benchFresh(b, objs.XdpLb, freshIPIP, xdpTX, nil), baseFresh)
	})
	b.Run("lb/not-vip/repeat", func(b *testing.B) {
		in := frame{src: client4, dst: netip.MustParseAddrPort("198.18.0.1:53"), payload: shortHeader(plainCID(1))}.bytes()
		report(b, benchRepeat(b, objs.XdpLb, in, xdpPass), baseRepeat)
	})
	// The Maglev table lookup alone: the outer ARRAY_OF_MAPS lookup is
	// inlined; the inner one is a helper call. The difference between
	// these two is the inner lookup's cost.
	b.Run("maglev/outer/repeat", func(b *testing.B) {
		report(b, benchRepeat(b, st.XdpMaglevOuter, short, xdpTX), baseRepeat)
	})
	b.Run("maglev/outer+inner/repeat", func(b *testing.B) {
		report(b, benchRepeat(b, st.XdpMaglevInner, short, xdpTX), baseRepeat)
	})
}

// clearFlows empties flow_cache, so every fresh frame is a new flow.
func clearFlows(objs *LBObjects) error {
	_, err := DeleteFlows(objs, func(FlowKey, FlowState) bool { return true })
	return err
}
