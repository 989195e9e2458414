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
// Two methods, because with Repeat > 1 the kernel runs the program again
// on the buffer the previous run rewrote (lab-facts):
//   - repeat: one packet, Repeat = b.N. Honest for paths whose output is
//     the same kind of packet: an l2dsr rewrite leaves a routable short
//     header routable and a known flow known.
//   - fresh: a new 4-tuple per run (Repeat = 1 each), so every Initial
//     misses the flow table, goes through Maglev and inserts its flow;
//     also used for ipip, whose output would not route again. Each run
//     includes the test-run timer's own overhead, so it is compared with
//     the baseline measured the same way.

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

// freshInitials returns n Initial packets from distinct clients to vip.
func freshInitials(n int, vip netip.AddrPort) [][]byte {
	frames := make([][]byte, n)
	for i := range frames {
		src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 19, byte(i >> 16), byte(i >> 8)}), uint16(1024+i&0xff))
		frames[i] = frame{src: src, dst: vip, payload: longHeader(randomCID)}.bytes()
	}
	return frames
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
	base, err := LoadBaseline()
	if err != nil {
		b.Fatal(err)
	}
	defer base.Close()
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
	const nFresh = 1 << 16 // fewer than the flow table holds per CPU
	fresh := freshInitials(nFresh, vipL2)
	freshIPIP := make([][]byte, 256)
	for i := range freshIPIP {
		src := netip.AddrPortFrom(client4.Addr(), uint16(2000+i))
		freshIPIP[i] = frame{src: src, dst: vipIPIP, payload: shortHeader(plainCID(1))}.bytes()
	}
	if err := clearFlows(objs); err != nil {
		b.Fatal(err)
	}
	goFlow := frame{src: client4b, dst: vipL2, payload: longHeader(randomCID)}.bytes()
	mustPut(b, objs.Flows, NewFlowKey(0, client4b), FlowState{Backend: 2, LastSeenNs: uint64(time.Now().UnixNano())})

	var baseRepeat, baseFresh time.Duration
	b.Run("baseline/repeat", func(b *testing.B) {
		baseRepeat = benchRepeat(b, base.XdpBaseline, short, xdpTX)
		report(b, baseRepeat, baseRepeat)
	})
	b.Run("baseline/fresh", func(b *testing.B) {
		baseFresh = benchFresh(b, base.XdpBaseline, fresh, xdpTX, nil)
		report(b, baseFresh, baseFresh)
	})
	b.Run("pass/repeat", func(b *testing.B) {
		report(b, benchRepeat(b, base.XdpPass, short, xdpPass), baseRepeat)
	})
	b.Run("lb/short-header-cid/repeat", func(b *testing.B) {
		report(b, benchRepeat(b, objs.XdpLb, short, xdpTX), baseRepeat)
	})
	// The first run hashes the Initial and records its flow in
	// flow_cache; every later one is a flow-table hit.
	b.Run("lb/flow-hit/repeat", func(b *testing.B) {
		report(b, benchRepeat(b, objs.XdpLb, initial, xdpTX), baseRepeat)
	})
	// A flow Go wrote into flows (found after a flow_cache miss).
	b.Run("lb/flow-hit-go-flows/repeat", func(b *testing.B) {
		report(b, benchRepeat(b, objs.XdpLb, goFlow, xdpTX), baseRepeat)
	})
	b.Run("lb/initial-maglev/fresh", func(b *testing.B) {
		reset := func() error { return clearFlows(objs) }
		if err := reset(); err != nil {
			b.Fatal(err)
		}
		report(b, benchFresh(b, objs.XdpLb, fresh, xdpTX, reset), baseFresh)
	})
	b.Run("lb/short-header-ipip/fresh", func(b *testing.B) {
		report(b, benchFresh(b, objs.XdpLb, freshIPIP, xdpTX, nil), baseFresh)
	})
	b.Run("lb/not-vip/repeat", func(b *testing.B) {
		in := frame{src: client4, dst: netip.MustParseAddrPort("198.18.0.1:53"), payload: shortHeader(plainCID(1))}.bytes()
		report(b, benchRepeat(b, objs.XdpLb, in, xdpPass), baseRepeat)
	})
}

// clearFlows empties flow_cache, so every fresh frame is a new flow.
func clearFlows(objs *LBObjects) error {
	_, err := DeleteFlows(objs, func(FlowKey, FlowState) bool { return true })
	return err
}
