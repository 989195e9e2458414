package forwarder

import (
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/spooky-lb/spooky/bpf"
	"github.com/spooky-lb/spooky/test/netns"
)

// BenchmarkSlowPathLive compares, in one run, the forwarding rate of the
// XDP dataplane with --dataplane userspace through the netns lab (client,
// lb, two backends), driven by the in-kernel generator of the XDP
// benchmarks (bpf/trafficgen.c under BPF_F_TEST_XDP_LIVE_FRAMES, loaded
// from its test object) as bpf.BenchmarkForwarding does: short headers
// with routable CIDs of both backends, a new flow per frame. The rate is
// what the backends count per second of generator run. With userspace,
// xdp_lb redirects every frame to the AF_XDP socket and the slow path
// decides and transmits it, on the other core: the figure is what Go
// forwards when offered far more than it can take (the rest overflows the
// RX ring). Compare the two as a ratio.
//
//	go test ./forwarder/ -run '^$' -bench SlowPathLive -benchtime 1x
func BenchmarkSlowPathLive(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root: netns lab, XDP, AF_XDP")
	}
	lab := netns.New(b, netns.Config{
		Backends: 2,
		Client:   netns.HostOptions{PeerXDP: true},
		LB:       netns.HostOptions{PeerXDP: true},
	})
	if err := lab.StaticNeighbors(); err != nil {
		b.Fatal(err)
	}
	gen := mustLiveTrafficgen(b)
	var counters []*liveGen
	for _, h := range lab.Backends {
		c := mustLiveTrafficgen(b)
		counters = append(counters, c)
		mustLiveAttach(b, h, c.Count)
	}

	objs, err := bpf.LoadLB(nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { objs.Close() })
	vip := netip.AddrPortFrom(netns.VIPv4, 443)
	d := &Desired{VIPs: map[bpf.VIPKey]DesiredVIP{}, Backends: map[uint32]bpf.Backend{}, ServerIDs: map[bpf.ServerIDKey]uint32{}}
	table := make([]uint32, 251)
	for i, h := range lab.Backends {
		idx := uint32(i + 1)
		be, err := bpf.NewBackend(h.IPv4, h.MAC, nil, bpf.BackendHealthy)
		if err != nil {
			b.Fatal(err)
		}
		d.Backends[idx] = be
		d.ServerIDs[mustSID(b, 0, uint16(idx))] = idx
	}
	for i := range table {
		table[i] = uint32(1 + i%len(lab.Backends))
	}
	info := bpf.VIPInfo{Id: 0, MaglevSize: uint32(len(table)), Cid: rtCIDConfigs}
	d.VIPs[bpf.NewVIPKey(vip)] = DesiredVIP{Service: "web", Info: info, Table: table}
	syncer := NewSyncer(objs, nil)
	lbc, err := bpf.NewLBConfig(lab.LB.MAC, netip.Addr{}, netip.Addr{})
	if err != nil {
		b.Fatal(err)
	}
	if err := syncer.SetLB(lbc); err != nil {
		b.Fatal(err)
	}
	if err := syncer.Apply(d); err != nil {
		b.Fatal(err)
	}
	mustLiveAttach(b, lab.LB, objs.XdpLb)
	var sp *SlowPath
	err = lab.LB.Do(func() error {
		var err error
		sp, err = StartSlowPath(objs, SlowPathOptions{Ifindex: lab.LB.Index, Queues: 1, Socket: &userspaceSocket})
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { sp.Close() })
	sp.SetLB(lbc)

	tmpl := testFrame{src: netip.AddrPortFrom(netns.ClientIPv4, 40000), dst: vip, payload: quicShort(plainCID(1), 24)}.bytes()
	copy(tmpl[0:6], lab.LB.MAC)
	copy(tmpl[6:12], lab.Client.MAC)
	delivered := func() uint64 {
		var n uint64
		for _, c := range counters {
			var per []uint64
			if err := c.Counted.Lookup(uint32(0), &per); err != nil {
				b.Fatal(err)
			}
			for _, v := range per {
				n += v
			}
		}
		return n
	}
	const newFlowRotate = 1 | 2 // GEN_F_NEW_FLOW | GEN_F_ROTATE_SID
	if err := gen.Settings.Put(uint32(0), [2]uint32{newFlowRotate, uint32(len(lab.Backends))}); err != nil {
		b.Fatal(err)
	}
	run := func(n uint32) float64 {
		before := delivered()
		var elapsed time.Duration
		err := lab.Client.Do(func() error {
			start := time.Now()
			_, err := gen.Gen.Run(&ebpf.RunOptions{
				Data:      tmpl,
				Context:   liveXDPMD{DataEnd: uint32(len(tmpl)), IngressIfindex: uint32(lab.Client.Index)},
				Flags:     1 << 1, // BPF_F_TEST_XDP_LIVE_FRAMES
				Repeat:    n,
				BatchSize: 64,
			})
			elapsed = time.Since(start)
			return err
		})
		if err != nil {
			b.Fatalf("run generator: %v", err)
		}
		// Frames in the slow path's rings still arrive after the run.
		time.Sleep(200 * time.Millisecond)
		return float64(delivered()-before) / elapsed.Seconds()
	}
	setMode := func(userspace bool) {
		v := d.VIPs[bpf.NewVIPKey(vip)]
		v.Info.Flags = 0
		if userspace {
			v.Info.Flags = bpf.VIPUserspace
		}
		d.VIPs[bpf.NewVIPKey(vip)] = v
		sp.Update(d, nil)
		if err := syncer.Apply(d); err != nil {
			b.Fatal(err)
		}
	}
	var best [2]float64
	b.ResetTimer()
	for range b.N {
		for range 3 {
			for mode, userspace := range []bool{false, true} {
				setMode(userspace)
				n := uint32(4_000_000)
				if userspace {
					n = 1_000_000
				}
				best[mode] = max(best[mode], run(n))
			}
		}
	}
	b.StopTimer()
	b.ReportMetric(best[0], "xdp-pps")
	b.ReportMetric(best[1], "userspace-pps")
	b.ReportMetric(best[1]/best[0], "userspace-x-xdp")
	b.Logf("xdp %.0f pkt/s, userspace %.0f pkt/s: %.3fx", best[0], best[1], best[1]/best[0])
}

// liveGen is trafficgen.c's programs and maps.
type liveGen struct {
	Gen      *ebpf.Program `ebpf:"xdp_gen"`
	Count    *ebpf.Program `ebpf:"xdp_count"`
	Settings *ebpf.Map     `ebpf:"gen_settings"`
	Seq      *ebpf.Map     `ebpf:"gen_seq"`
	Counted  *ebpf.Map     `ebpf:"counted"`
}

// liveXDPMD is struct xdp_md, the context of an XDP test run.
type liveXDPMD struct {
	Data, DataEnd, DataMeta      uint32
	IngressIfindex, RxQueueIndex uint32
	EgressIfindex                uint32
}

// mustLiveTrafficgen loads the generator from bpf's test object (bench-only
// code, not part of package bpf's API).
func mustLiveTrafficgen(b *testing.B) *liveGen {
	b.Helper()
	spec, err := ebpf.LoadCollectionSpec("../bpf/trafficgen_bpfel_test.o")
	if err != nil {
		b.Fatalf("load trafficgen object: %v", err)
	}
	var g liveGen
	if err := spec.LoadAndAssign(&g, nil); err != nil {
		b.Fatalf("load trafficgen: %v", err)
	}
	b.Cleanup(func() {
		for _, c := range []interface{ Close() error }{g.Gen, g.Count, g.Settings, g.Seq, g.Counted} {
			c.Close()
		}
	})
	return &g
}

func mustLiveAttach(b *testing.B, h *netns.Host, prog *ebpf.Program) {
	b.Helper()
	err := h.Do(func() error {
		l, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: h.Index, Flags: link.XDPDriverMode})
		if err != nil {
			return err
		}
		b.Cleanup(func() { l.Close() })
		return nil
	})
	if err != nil {
		b.Fatalf("attach %v in %s: %v", prog, h, err)
	}
}
