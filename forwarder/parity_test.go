package forwarder

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/spooky-lb/spooky/bpf"
	"github.com/spooky-lb/spooky/config"
	"github.com/spooky-lb/spooky/health"
)

// The parity test runs one seeded corpus of frames through lb.c (with
// BPF_PROG_TEST_RUN) and through the Router, in the same order, and
// requires the same verdict and backend for every frame, the same
// reason_stats at the end and the same flow tables (DESIGN.md "Routing
// decision (one model, two implementations)").

// parityConfig is the configuration under test. The second version
// (reload) removes backend web4/b, adds nocid4/c, and loses the next hop
// of web4/a. Relative paths resolve against examples/, for the l7 certificate.
func parityConfig(reload bool) string {
	web4b := `      - {name: b, address: 198.18.1.2, server_id: "0002"}`
	nocidC := ""
	if reload {
		web4b = ""
		nocidC = `      - {name: c, address: 198.18.1.43}`
	}
	return `
services:
  - name: web4
    address: 198.18.10.1
    port: 443
    forwarding: l2dsr
    hash: src-ip
    maglev_size: 1009
    cid:
      - {config_id: 0, server_id_len: 2, nonce_len: 6}
      - {config_id: 1, server_id_len: 2, nonce_len: 8, key: 000102030405060708090a0b0c0d0e0f}
    backends:
      - {name: a, address: 198.18.1.1, server_id: "0001"}
` + web4b + `
      - {name: c, address: 198.18.1.3, server_id: "0003"}
      - {name: d, address: 198.18.1.4, server_id: "0004"}
      - {name: e, address: 198.18.1.5, server_id: "0005", weight: 50}
  - name: web6
    address: 2001:db8:10::1
    port: 443
    forwarding: ipip
    hash: 4-tuple
    maglev_size: 1009
    cid:
      - {config_id: 2, server_id_len: 1, nonce_len: 5}
    backends:
      - {name: a, address: "2001:db8:1::11", server_id: "01"}
      - {name: b, address: "2001:db8:1::12", server_id: "02"}
      - {name: c, address: "2001:db8:1::13", server_id: "03"}
      - {name: d, address: 198.18.1.14, server_id: "04"}
  - name: enc6
    address: 2001:db8:10::2
    port: 4433
    hash: src-ip
    maglev_size: 307
    cid:
      - {config_id: 3, server_id_len: 3, nonce_len: 10, key: 8f95f09245765f80256934e50c66207f}
    backends:
      - {name: a, address: "2001:db8:1::21", server_id: "000021"}
      - {name: b, address: "2001:db8:1::22", server_id: "000022"}
  - name: enc4
    address: 198.18.10.5
    port: 443
    forwarding: ipip
    hash: 4-tuple
    maglev_size: 307
    cid:
      - {config_id: 0, server_id_len: 2, nonce_len: 4, key: 1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f}
      - {config_id: 4, server_id_len: 2, nonce_len: 12}
    backends:
      - {name: a, address: 198.18.1.31, server_id: "0031"}
      - {name: b, address: 198.18.1.32, server_id: "0032"}
      - {name: c, address: "2001:db8:1::33", server_id: "0033"}
  - name: strict4
    address: 198.18.10.2
    port: 443
    strict: true
    forwarding: ipip
    maglev_size: 307
    cid:
      - {config_id: 5, server_id_len: 1, nonce_len: 4}
    backends:
      - {name: a, address: 198.18.1.51, server_id: "51"}
      - {name: b, address: 198.18.1.52, server_id: "52"}
  - name: strict6
    address: 2001:db8:10::3
    port: 443
    strict: true
    hash: 4-tuple
    maglev_size: 307
    backends:
      - {name: a, address: "2001:db8:1::61"}
      - {name: b, address: "2001:db8:1::62"}
  - name: nocid4
    address: 198.18.10.4
    port: 8443
    hash: 4-tuple
    maglev_size: 307
    backends:
      - {name: a, address: 198.18.1.41}
      - {name: b, address: 198.18.1.42}
` + nocidC + `
  - name: proxied
    address: 198.18.10.6
    port: 443
    forwarding: proxy
    maglev_size: 307
    backends:
      - {name: a, address: 198.18.1.71}
  - name: edge
    address: 198.18.10.3
    port: 443
    mode: l7
    tls:
      - server_names: [example.test]
        cert: certs/example.test.crt
        key: certs/example.test.key
    cid:
      - {config_id: 0, server_id_len: 2, nonce_len: 6}
    l7_server_id: "00ff"
    routes:
      - pool: api
pools:
  - name: api
    upstreams:
      - address: https://198.18.2.1:8443
`
}

// staticHops is the netlink boundary of the Planner: every backend is
// on-link with a MAC made from its address (so MACs are distinct), except
// those in fail, whose next hop does not resolve.
type staticHops struct{ fail map[netip.Addr]bool }

func (h staticHops) Resolve(_ context.Context, a netip.Addr) (NextHop, error) {
	if h.fail[a] {
		return NextHop{}, fmt.Errorf("resolve %v: %w", a, ErrNoNeighbour)
	}
	return NextHop{MAC: parityMAC(a)}, nil
}

func parityMAC(a netip.Addr) net.HardwareAddr {
	b := a.As16()
	fam := byte(6)
	if a.Is4() {
		fam = 4
	}
	return net.HardwareAddr{0x02, fam, b[12], b[13], b[14], b[15]}
}

var parityLBMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x1b}

func mustParityPlan(tb testing.TB, p *Planner, reload bool) (*config.Config, *Desired) {
	tb.Helper()
	cfg, err := config.Parse([]byte(parityConfig(reload)), "../examples/parity.yaml")
	if err != nil {
		tb.Fatalf("parse parity config: %v", err)
	}
	d, err := p.Plan(context.Background(), cfg)
	if err != nil {
		tb.Fatalf("plan: %v", err)
	}
	// A health state the Planner cannot see yet: web4/d just failed its
	// checks but is still in the Maglev table and server_ids, until the
	// next plan. And enc4 hands cid_cache misses to the forwarder.
	i := mustBackendIndex(tb, d, netip.MustParseAddr("198.18.1.4"))
	b := d.Backends[i]
	b.Flags = 0
	d.Backends[i] = b
	enc4 := bpf.NewVIPKey(netip.MustParseAddrPort("198.18.10.5:443"))
	v := d.VIPs[enc4]
	v.Info.Flags |= bpf.VIPCIDMissPass
	d.VIPs[enc4] = v
	// And enc6 has the slow path on, but no socket is registered.
	enc6 := bpf.NewVIPKey(netip.MustParseAddrPort("[2001:db8:10::2]:4433"))
	v = d.VIPs[enc6]
	v.Info.Flags |= bpf.VIPSlowPath
	d.VIPs[enc6] = v
	return cfg, d
}

func mustBackendIndex(tb testing.TB, d *Desired, a netip.Addr) uint32 {
	tb.Helper()
	want, err := bpf.NewBackend(a, nil, nil, 0)
	if err != nil {
		tb.Fatal(err)
	}
	for i, b := range d.Backends {
		if b.Addr == want.Addr && b.Family == want.Family {
			return i
		}
	}
	tb.Fatalf("no backend %v in the plan", a)
	return 0
}

// lockToOneCPU runs the calling goroutine on one OS thread bound to one
// CPU until the test ends: flow_cache is per CPU, and BPF_PROG_TEST_RUN
// runs the program on the caller's CPU, so the corpus meets one flow_cache,
// as the Router models it.
func lockToOneCPU(tb testing.TB) {
	tb.Helper()
	runtime.LockOSThread()
	var old unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		tb.Fatalf("get cpu affinity: %v", err)
	}
	cpu := -1
	for i := 0; i < 1024; i++ {
		if old.IsSet(i) {
			cpu = i
			break
		}
	}
	var one unix.CPUSet
	one.Set(cpu)
	if err := unix.SchedSetaffinity(0, &one); err != nil {
		tb.Fatalf("bind to cpu %d: %v", cpu, err)
	}
	// The goroutine never unlocks its thread, so the thread exits with
	// the test and its affinity with it; restore it anyway for a thread
	// the runtime might keep.
	tb.Cleanup(func() { _ = unix.SchedSetaffinity(0, &old) })
	tb.Logf("bound to cpu %d", cpu)
}

// parityRun is one side-by-side run: the loaded program and its syncer,
// the Router, and what the test knows about the world.
type parityRun struct {
	tb      testing.TB
	objs    *bpf.LBObjects
	syncer  *Syncer
	router  *Router
	desired *Desired
	byMAC   map[[6]byte]uint32
	byAddr  map[[16]byte]uint32

	frames     int
	paths      map[string]int
	mismatches int
	shown      []string
}

func (pr *parityRun) apply(d *Desired) {
	pr.tb.Helper()
	if err := pr.syncer.Apply(d); err != nil {
		pr.tb.Fatalf("apply: %v", err)
	}
	// The Syncer has deleted the freed backends' flows from every CPU's
	// flow_cache (bpf.DeleteFlows), as Router.Update forgets them.
	// Turn on (and refresh) XDP's caches of vips and server_ids, which is
	// how production runs.
	if err := bpf.InvalidateCaches(pr.objs); err != nil {
		pr.tb.Fatalf("invalidate caches: %v", err)
	}
	pr.router.Update(d, nil)
	pr.desired = d
	pr.byMAC, pr.byAddr = map[[6]byte]uint32{}, map[[16]byte]uint32{}
	for i, b := range d.Backends {
		pr.byMAC[b.Mac] = i
		pr.byAddr[b.Addr] = i
	}
}

func (pr *parityRun) setLB(c bpf.LBConfig) {
	pr.tb.Helper()
	if err := pr.syncer.SetLB(c); err != nil {
		pr.tb.Fatal(err)
	}
	pr.router.SetLB(c)
}

// cacheCID puts dcid -> backend into cid_cache on both sides, as the
// forwarder does after decrypting.
func (pr *parityRun) cacheCID(vipID uint32, dcid []byte, backend uint32) {
	pr.tb.Helper()
	k, err := bpf.NewCIDKey(vipID, dcid)
	if err != nil {
		pr.tb.Fatal(err)
	}
	if err := pr.objs.CidCache.Put(k, backend); err != nil {
		pr.tb.Fatalf("put cid_cache: %v", err)
	}
	if err := pr.router.CacheCID(vipID, dcid, backend); err != nil {
		pr.tb.Fatal(err)
	}
}

// putFlow puts a flow into the flow table on both sides: every CPU's
// flow_cache (bpf.PutFlow) and the Router's mirror of this CPU's.
func (pr *parityRun) putFlow(vipID uint32, src netip.AddrPort, backend uint32) {
	pr.tb.Helper()
	k := bpf.NewFlowKey(vipID, src)
	if err := bpf.PutFlow(pr.objs, k, bpf.FlowState{Backend: backend, LastSeenNs: 1}); err != nil {
		pr.tb.Fatal(err)
	}
	pr.router.tables.recordFlow(k, backend)
}

// XDP actions (enum xdp_action).
const (
	xdpDrop = 1
	xdpPass = 2
	xdpTX   = 3
)

// run routes frame both ways and compares.
func (pr *parityRun) run(frame []byte) {
	pr.tb.Helper()
	opts := &ebpf.RunOptions{Data: bytes.Clone(frame), DataOut: make([]byte, len(frame)+256)}
	ret, err := pr.objs.XdpLb.Run(opts)
	if err != nil {
		pr.tb.Fatalf("run xdp_lb on frame %d: %v", pr.frames, err)
	}
	var to routeTo
	got := pr.router.routeFrame(frame, &to)
	pr.frames++

	var cVerdict Verdict
	var cBackend uint32
	var problem string
	switch ret {
	case xdpDrop:
		cVerdict = VerdictDrop
	case xdpPass:
		cVerdict = VerdictPass
	case xdpTX:
		cVerdict = VerdictTX
		cBackend, err = pr.backendOf(frame, opts.DataOut)
		if err != nil {
			problem = err.Error()
		}
	default:
		problem = fmt.Sprintf("xdp_lb returned action %d", ret)
	}
	switch {
	case problem != "":
	case cVerdict != got.Verdict:
		problem = fmt.Sprintf("verdict: xdp %v, router %v", cVerdict, got.Verdict)
	case cVerdict == VerdictTX && cBackend != got.Backend:
		problem = fmt.Sprintf("backend: xdp %d, router %d", cBackend, got.Backend)
	case cVerdict == VerdictTX:
		// The frame the slow path would send for the Router's decision,
		// built by the product's builders, is xdp_lb's byte for byte.
		want, err := builtFrame(frame, got, &to)
		if err != nil {
			problem = fmt.Sprintf("build the frame: %v", err)
		} else if !bytes.Equal(want, opts.DataOut) {
			problem = fmt.Sprintf("frame: xdp sent\n%s\nthe builders make\n%s", hex.Dump(opts.DataOut), hex.Dump(want))
		}
	}

	switch got.Verdict {
	case VerdictTX:
		pr.paths[got.Path.String()]++
	default:
		pr.paths[got.Verdict.String()]++
	}
	if problem == "" {
		return
	}
	pr.mismatches++
	if len(pr.shown) < 5 {
		pr.shown = append(pr.shown, fmt.Sprintf("frame %d: %s (router: %v)\n%s",
			pr.frames-1, problem, got, hex.Dump(frame)))
	}
}

// backendOf identifies the backend xdp_lb sent frame to from its output:
// l2dsr rewrote the destination MAC to the backend's; ipip prepended an
// outer header whose destination is the backend's address. Everything
// else must be the frame as it came.
func (pr *parityRun) backendOf(in, out []byte) (uint32, error) {
	if !bytes.Equal(out[6:12], parityLBMAC) {
		return 0, fmt.Errorf("tx frame has source mac %x, not the load balancer's", out[6:12])
	}
	l2 := ethHdrLen
	if p := binary.BigEndian.Uint16(in[12:]); p == ether8021Q || p == ether8021AD {
		l2 += vlanHdrLen
	}
	var idx uint32
	var ok bool
	switch len(out) - len(in) {
	case 0:
		if !bytes.Equal(out[12:], in[12:]) {
			return 0, errors.New("l2dsr changed more than the MACs")
		}
		idx, ok = pr.byMAC[[6]byte(out[:6])]
	case ipv4HdrLen, ipv6HdrLen:
		outer := len(out) - len(in)
		if !bytes.Equal(out[l2+outer:], in[l2:]) {
			return 0, errors.New("ipip changed the inner packet")
		}
		var addr [16]byte
		if outer == ipv4HdrLen {
			copy(addr[:4], out[l2+16:l2+20])
		} else {
			copy(addr[:], out[l2+24:l2+40])
		}
		idx, ok = pr.byAddr[addr]
		if ok && [6]byte(out[:6]) != pr.desired.Backends[idx].NexthopMac {
			return 0, fmt.Errorf("ipip to backend %d went to mac %x, not its next hop", idx, out[:6])
		}
	default:
		return 0, fmt.Errorf("tx frame grew by %d octets", len(out)-len(in))
	}
	if !ok {
		return 0, fmt.Errorf("tx frame goes to no known backend (dst mac %x)", out[:6])
	}
	return idx, nil
}

func TestParityWithXDP(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("loading xdp_lb and BPF_PROG_TEST_RUN need root (CAP_BPF, CAP_NET_ADMIN); run as root")
	}
	lockToOneCPU(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	hops := staticHops{fail: map[netip.Addr]bool{netip.MustParseAddr("2001:db8:1::13"): true}}
	planner := NewPlanner(hops, log)
	// web4/c drains: out of the Maglev table, its server ID kept.
	reg := health.NewRegistry(nil)
	reg.Report(health.Backend("web4", "c"), health.Operator, health.Draining, "parity test")
	planner.SetHealth(reg)
	cfg, d := mustParityPlan(t, planner, false)
	if len(d.Problems) != 1 {
		t.Fatalf("plan problems %v, want the one unresolved next hop", d.Problems)
	}

	objs, err := bpf.LoadLB(nil)
	if err != nil {
		t.Fatalf("load lb: %v", err)
	}
	t.Cleanup(func() { objs.Close() })
	pr := &parityRun{tb: t, objs: objs, syncer: NewSyncer(objs, log), router: NewRouter(d, nil), paths: map[string]int{}}
	lb, err := bpf.NewLBConfig(parityLBMAC, netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("2001:db8::1"))
	if err != nil {
		t.Fatal(err)
	}
	pr.setLB(lb)
	pr.apply(d)

	rng := rand.New(rand.NewPCG(0x5370306b, 2025))
	w := newParityWorld(t, cfg, d, rng)
	// The forwarder has decrypted half of each encrypted config's CIDs
	// (including some of backends that became unusable), and Go put a few
	// flows into the flow table, some to backends that become unusable.
	for _, c := range w.cached {
		pr.cacheCID(c.vipID, c.dcid, mustBackendIndex(t, d, c.backend))
	}
	for i, c := range w.clients[:8] {
		v := w.l4VIPs(c.Addr().Is4())[i%2]
		pr.putFlow(v.id, c, mustBackendIndex(t, d, v.backends[i%len(v.backends)]))
	}

	const (
		phase1 = 8000 // the configuration as planned
		phase2 = 3000 // after a reload that frees, adds and loses backends
		phase3 = 1500 // without an IPv6 outer source address
	)
	for range phase1 {
		pr.run(w.frame())
	}
	// The reload: web4/a loses its next hop (its flows must be hashed
	// again), enc6/a turns unhealthy (its server ID goes).
	hops.fail[netip.MustParseAddr("198.18.1.1")] = true
	reg.Report(health.Backend("enc6", "a"), health.Active, health.Unhealthy, "parity test")
	_, d2 := mustParityPlan(t, planner, true)
	if len(d2.Freed) == 0 {
		t.Fatal("the reload freed no backend index")
	}
	pr.apply(d2)
	for range phase2 {
		pr.run(w.frame())
	}
	lb.Addr6 = [16]byte{}
	pr.setLB(lb)
	for range phase3 {
		pr.run(w.frame())
	}

	t.Logf("%d frames; paths: %v", pr.frames, pr.paths)
	if pr.mismatches > 0 {
		t.Errorf("%d of %d frames decided differently; the first:\n%s", pr.mismatches, pr.frames, strings.Join(pr.shown, "\n"))
	}
	for _, p := range []string{"cid", "cid_cache", "flow", "maglev", "pass", "drop"} {
		if pr.paths[p] < 100 {
			t.Errorf("only %d frames took path %s: the corpus does not exercise it", pr.paths[p], p)
		}
	}

	// Counters: reason_stats summed over CPUs equals the Router's counts,
	// and the corpus reached every reason lb.c can count.
	goCounts := pr.router.ReasonCounts()
	var summary []string
	for r := range bpf.NumReasons {
		reason := bpf.Reason(r)
		var perCPU []uint64
		if err := objs.ReasonStats.Lookup(uint32(r), &perCPU); err != nil {
			t.Fatalf("read reason_stats[%v]: %v", reason, err)
		}
		var c uint64
		for _, v := range perCPU {
			c += v
		}
		if c != goCounts[r] {
			t.Errorf("reason %v: xdp counted %d, router %d", reason, c, goCounts[r])
		}
		summary = append(summary, fmt.Sprintf("%v=%d", reason, c))
		// Redirects need AF_XDP sockets, which the test run has none
		// of (the slow path's own tests have).
		unreachable := reason == reasonPassEncapFailed || reason == reasonFlowInsertFailed ||
			reason == reasonRedirectSlowPath || reason == reasonRedirectUserspace || reason == reasonSlowPathLimited ||
			reason == reasonDropSlowPathRing
		if c == 0 && !unreachable {
			t.Errorf("no frame was counted as %v: the corpus does not reach it", reason)
		}
	}
	t.Logf("reasons: %s", strings.Join(summary, " "))

	pr.compareFlows()
}

// compareFlows checks that the flow tables ended up equal: this CPU's
// flow_cache slot by slot.
func (pr *parityRun) compareFlows() {
	t := pr.tb
	t.Helper()
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		t.Fatal(err)
	}
	me := -1
	for i := 0; i < 1024 && me < 0; i++ {
		if set.IsSet(i) {
			me = i
		}
	}
	tables := &pr.router.tables
	mine := make([]bpf.FlowCacheEntry, bpf.FlowCacheSize)
	err := bpf.ForEachCachedFlow(pr.objs.FlowCache, func(cpu int, slot uint32, e bpf.FlowCacheEntry) {
		if cpu == me {
			mine[slot] = e
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	var xdp, diff int
	for slot, e := range mine {
		g := tables.cache[slot]
		valid := e.State.LastSeenNs != 0
		if valid {
			xdp++
		}
		if valid != g.valid || valid && (e.Key != g.key || e.State.Backend != g.backend) {
			if diff++; diff <= 3 {
				t.Errorf("flow_cache slot %d: xdp %+v (valid %v), router %+v", slot, e, valid, g)
			}
		}
	}
	if diff > 0 {
		t.Errorf("%d flow_cache slots differ", diff)
	}
	t.Logf("flow tables: %d flows in this CPU's flow_cache (router %d)", xdp, tables.cached)
}

// builtFrame is the frame bpf.RewriteL2DSR or bpf.Encap make of frame for
// decision d, made with the state and VIP in to, as the slow path sends it.
func builtFrame(frame []byte, d Decision, to *routeTo) ([]byte, error) {
	be := &to.st.backends[d.Backend]
	if to.vip.info.Forwarding == bpf.ForwardingIPIP {
		out := append(make([]byte, bpf.EncapLen(be)), frame...)
		return out, bpf.Encap(out, be, &to.st.lb)
	}
	out := bytes.Clone(frame)
	return out, bpf.RewriteL2DSR(out, be, &to.st.lb)
}
