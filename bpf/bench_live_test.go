package bpf

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"

	"github.com/spooky-lb/spooky/test/netns"
)

// Forwarding rate through the netns lab (client, lb, two backends on a
// bridge), driven by an in-kernel generator: trafficgen.c's xdp_gen runs on
// the client under BPF_PROG_RUN with BPF_F_TEST_XDP_LIVE_FRAMES and sends
// each frame out of the client's veth with XDP_TX (lab-facts: ~18 M
// frames/s on one core; Debian's xdp-trafficgen does not load here). The
// load balancer's veth runs xdp_lb in native mode, or xdp_baseline in its
// place; the backends count and drop with xdp_count. The rate is what the
// backends count per second of generator run, so drops anywhere on the
// way (a full veth ring) lower it. Everything runs on the CPU of the
// generator call, so the figures compare per-packet cost along the path;
// compare them as ratios within one run.
//
//	go test ./bpf/ -run '^$' -bench Forwarding -benchtime 1x

// bpfFTestXDPLiveFrames is BPF_F_TEST_XDP_LIVE_FRAMES (Linux 5.18).
const bpfFTestXDPLiveFrames = 1 << 1

// liveSeconds is how long each generator call should last: far more than
// the ~20 ms a call costs to set up (lab-facts).
const liveSeconds = 2

// liveRounds is how many times each variant runs, interleaved with the
// others; the best round counts, as the one least disturbed by whatever
// else the (shared, two-core) machine runs.
const liveRounds = 3

// xdpMD is struct xdp_md, the context of an XDP test run.
type xdpMD struct {
	Data, DataEnd, DataMeta      uint32
	IngressIfindex, RxQueueIndex uint32
	EgressIfindex                uint32
}

// liveLab is the lab of the forwarding benchmark.
type liveLab struct {
	lab      *netns.Lab
	gen      *trafficgenObjects
	counters []*trafficgenObjects // per backend
	lb       *LBObjects
	base     *baselineObjects
	attached link.Link
	parent   *testing.B // owns what outlives one sub-benchmark
}

var liveVIP = netip.AddrPortFrom(netns.VIPv4, 443)

func mustLiveLab(b *testing.B) *liveLab {
	b.Helper()
	l := &liveLab{parent: b, lab: netns.New(b, netns.Config{
		Backends: 2,
		Client:   netns.HostOptions{PeerXDP: true},
		LB:       netns.HostOptions{PeerXDP: true},
	})}
	if err := l.lab.StaticNeighbors(); err != nil {
		b.Fatal(err)
	}
	// In the baseline run the client sends frames with backend 1's MAC
	// as source (xdp_baseline swaps the MACs, so that is where it sends
	// them); the bridge must not learn it on the client's port.
	err := l.lab.Bridge.Do(func() error {
		port, err := netlink.LinkByName(l.lab.Client.PeerName)
		if err != nil {
			return err
		}
		return netlink.LinkSetLearning(port, false)
	})
	if err != nil {
		b.Fatalf("turn learning off on the client's bridge port: %v", err)
	}

	l.gen = mustLoadTrafficgen(b)
	for _, h := range l.lab.Backends {
		c := mustLoadTrafficgen(b)
		l.counters = append(l.counters, c)
		mustAttachXDP(b, h, h.Index, c.XdpCount)
	}

	objs, err := LoadLB(nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { objs.Close() })
	l.lb = objs
	l.base = mustLoadBaseline(b)

	// The maps, filled by hand as the Syncer would: one VIP in l2dsr with
	// a Maglev table over both backends, server IDs 1 and 2 in a plaintext
	// config at codepoint 1 (2-octet server ID, 6-octet nonce).
	cfg, err := NewLBConfig(l.lab.LB.MAC, netip.Addr{}, netip.Addr{})
	if err != nil {
		b.Fatal(err)
	}
	mustPut(b, objs.Config, uint32(0), cfg)
	table := make([]uint32, 251)
	for i, h := range l.lab.Backends {
		idx := uint32(i + 1)
		be, err := NewBackend(h.IPv4, h.MAC, nil, BackendHealthy)
		if err != nil {
			b.Fatal(err)
		}
		mustPut(b, objs.Backends, idx, be)
		k, err := NewServerIDKey(0, []byte{0, byte(idx)})
		if err != nil {
			b.Fatal(err)
		}
		mustPut(b, objs.ServerIds, k, idx)
	}
	for i := range table {
		table[i] = uint32(1 + i%len(l.lab.Backends))
	}
	mustMaglevTable(b, objs, 0, 0, table)
	info := VIPInfo{Id: 0, MaglevSize: uint32(len(table)), Cid: testCIDConfigs}
	mustPut(b, objs.Vips, NewVIPKey(liveVIP), info)
	if err := InvalidateCaches(objs); err != nil {
		b.Fatal(err)
	}
	return l
}

func mustLoadTrafficgen(b *testing.B) *trafficgenObjects {
	b.Helper()
	var objs trafficgenObjects
	if err := loadTrafficgenObjects(&objs, nil); err != nil {
		b.Fatalf("load trafficgen: %v", err)
	}
	b.Cleanup(func() { objs.Close() })
	return &objs
}

func mustAttachXDP(b *testing.B, h *netns.Host, ifindex int, prog *ebpf.Program) link.Link {
	b.Helper()
	var lk link.Link
	err := h.Do(func() error {
		var err error
		lk, err = link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifindex, Flags: link.XDPDriverMode})
		return err
	})
	if err != nil {
		b.Fatalf("attach %s to %s: %v", prog, h, err)
	}
	b.Cleanup(func() { lk.Close() })
	return lk
}

// attachLB puts prog (xdp_lb or xdp_baseline) on the lb host's veth.
func (l *liveLab) attachLB(b *testing.B, prog *ebpf.Program) {
	b.Helper()
	if l.attached != nil {
		if err := l.attached.Update(prog); err != nil {
			b.Fatalf("replace program on lb: %v", err)
		}
		return
	}
	l.attached = mustAttachXDP(l.parent, l.lab.LB, l.lab.LB.Index, prog)
}

func (l *liveLab) delivered(tb testing.TB) (total uint64, per []uint64) {
	tb.Helper()
	for _, c := range l.counters {
		n := sumPerCPU(tb, c.Counted, 0)
		per = append(per, n)
		total += n
	}
	return total, per
}

// liveFrame is the generator's template: from the client, Ethernet source
// src, to dstMAC, UDP to the VIP with payload.
func liveFrame(l *liveLab, src, dstMAC net.HardwareAddr, payload []byte) []byte {
	f := frame{src: netip.AddrPortFrom(netns.ClientIPv4, 40000), dst: liveVIP, payload: payload}.bytes()
	copy(f[0:6], dstMAC)
	copy(f[6:12], src)
	return f
}

// runLive sends n copies of tmpl out of the client's veth, stamped as
// flags say, and returns what the backends received per second and in all.
func (l *liveLab) runLive(tb testing.TB, tmpl []byte, flags trafficgenGenFlags, n uint32) (float64, uint64) {
	tb.Helper()
	mustPut(tb, l.gen.GenSettings, uint32(0), trafficgenGenConfig{Flags: flags, Sids: uint32(len(l.lab.Backends))})
	before, _ := l.delivered(tb)
	var elapsed time.Duration
	err := l.lab.Client.Do(func() error {
		start := time.Now()
		_, err := l.gen.XdpGen.Run(&ebpf.RunOptions{
			Data: tmpl,
			// The kernel wants data_end = len(Data) (bpf_prog_test_run_xdp).
			Context:   xdpMD{DataEnd: uint32(len(tmpl)), IngressIfindex: uint32(l.lab.Client.Index)},
			Flags:     bpfFTestXDPLiveFrames,
			Repeat:    n,
			BatchSize: 64,
		})
		elapsed = time.Since(start)
		return err
	})
	if err != nil {
		tb.Fatalf("run generator: %v", err)
	}
	after, _ := l.delivered(tb)
	return float64(after-before) / elapsed.Seconds(), after - before
}

// liveVariant is one thing the benchmark measures.
type liveVariant struct {
	name  string
	prog  *ebpf.Program // on the lb host's veth; nil: leave as is
	tmpl  []byte
	flags trafficgenGenFlags
	n     uint32 // frames per call, from a calibration run
	best  float64
	sent  uint64
	got   []uint64 // per backend
}

func BenchmarkForwarding(b *testing.B) {
	skipUnlessRoot(b)
	l := mustLiveLab(b)
	be1 := l.lab.Backends[0]
	short := liveFrame(l, l.lab.Client.MAC, l.lab.LB.MAC, shortHeader(plainCID(1)))
	initial := liveFrame(l, l.lab.Client.MAC, l.lab.LB.MAC, longHeader(randomCID))
	const newFlow, rotate = trafficgenGenFlagsGEN_F_NEW_FLOW, trafficgenGenFlagsGEN_F_ROTATE_SID
	variants := []*liveVariant{
		// client -> backend 1, no load balancer on the way.
		{name: "direct", tmpl: liveFrame(l, l.lab.Client.MAC, be1.MAC, shortHeader(plainCID(1))), flags: newFlow},
		// xdp_baseline swaps the MACs: with backend 1's MAC as the
		// source, it sends every frame there.
		{name: "baseline", prog: l.base.XdpBaseline, tmpl: liveFrame(l, be1.MAC, l.lab.LB.MAC, shortHeader(plainCID(1))), flags: newFlow},
		// Routable CIDs of both backends, a new source port per frame.
		{name: "lb-short-cid", prog: l.lb.XdpLb, tmpl: short, flags: newFlow | rotate},
		// A new flow per frame: flow_cache miss, Maglev, record.
		{name: "lb-initial-maglev", prog: l.lb.XdpLb, tmpl: initial, flags: newFlow},
		// One flow's Initials: all but the first hit the flow table.
		{name: "lb-flow-hit", prog: l.lb.XdpLb, tmpl: initial},
	}
	run := func(v *liveVariant, n uint32) float64 {
		if v.prog != nil {
			l.attachLB(b, v.prog)
		}
		pps, got := l.runLive(b, v.tmpl, v.flags, n)
		if got == 0 {
			b.Fatalf("%s: no frame reached a backend", v.name)
		}
		return pps
	}
	for _, v := range variants {
		pps := run(v, 100_000)
		v.n = uint32(min(pps*liveSeconds, 1<<31))
	}
	b.ResetTimer()
	for range b.N {
		for range liveRounds {
			for _, v := range variants {
				_, before := l.delivered(b)
				pps := run(v, v.n)
				_, after := l.delivered(b)
				v.best = max(v.best, pps)
				v.sent += uint64(v.n)
				if v.got == nil {
					v.got = make([]uint64, len(after))
				}
				for i := range after {
					v.got[i] += after[i] - before[i]
				}
			}
		}
	}
	b.StopTimer()
	direct, base := variants[0].best, variants[1].best
	for _, v := range variants {
		b.ReportMetric(v.best, v.name+"-pps")
		if v.prog == l.lb.XdpLb {
			b.ReportMetric(v.best/base, v.name+"-x-baseline")
		}
		b.Logf("%-18s %9.0f pkt/s  %.2fx baseline  %.2fx direct  (of %d frames sent, %d per call, backends got %v)",
			v.name, v.best, v.best/base, v.best/direct, v.sent, v.n, v.got)
	}
	b.ReportMetric(base/direct, "baseline-x-direct")
}
