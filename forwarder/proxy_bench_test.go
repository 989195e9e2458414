package forwarder

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"

	"github.com/spooky-lb/spooky/test/netns"
)

// BenchmarkProxyForwarding compares, in one run and on the same cores,
// the datagrams per second that reach the backends through three UDP
// forwarders on the load balancer host of a netns lab:
//
//   - spooky: `spooky serve` with one forwarding: proxy service;
//   - nginx: nginx's UDP stream proxy as a user would set it up for QUIC
//     (listen ... udp reuseport, hash $remote_addr consistent,
//     proxy_responses 0, worker_processes auto);
//   - relay: a minimal Go relay (benchRelay: recvmmsg/sendmmsg through
//     x/net's batch calls, no routing, no sessions), the floor of what Go
//     costs.
//
// Load comes from the in-kernel generator of bpf/trafficgen.c (xdp_gen
// under BPF_PROG_RUN with live frames, XDP_TX out of the client's veth),
// pinned to one CPU; the forwarder under test is pinned (taskset) to the
// other. The backends count and drop with xdp_count. Frames carry a
// 1200-octet QUIC short-header packet with a routable CID. Two loads:
// "flow" is one client flow, the steady state of a connection;
// "new-flows" gives every datagram a new source port, so every datagram
// opens a session (the session setup rate). CPU per datagram is the
// forwarder processes' CPU time over the datagrams delivered; memory per
// session is spooky's resident memory and the kernel's slab growth over
// the sessions it opened.
//
// It needs root and nginx with its stream module (Debian: apt-get install
// nginx libnginx-mod-stream); without nginx it skips. CI installs no
// nginx, so there it skips.
//
//	go test ./forwarder/ -run '^$' -bench ProxyForwarding -benchtime 1x
func BenchmarkProxyForwarding(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("the proxy benchmark builds network namespaces and loads XDP programs: run as root")
	}
	nginx, err := exec.LookPath("nginx")
	if err != nil {
		b.Skip("nginx is not installed (apt-get install nginx libnginx-mod-stream): the benchmark compares spooky with it")
	}
	for _, tool := range []string{"taskset", "ss", "ethtool"} {
		if _, err := exec.LookPath(tool); err != nil {
			b.Skipf("%s is not installed (util-linux, iproute2, ethtool): the benchmark pins, watches and tunes with it", tool)
		}
	}
	streamMod := "/usr/lib/nginx/modules/ngx_stream_module.so"
	if _, err := os.Stat(streamMod); err != nil {
		b.Skipf("nginx's stream module is not installed (%s; apt-get install libnginx-mod-stream)", streamMod)
	}
	// Sessions hold file descriptors: as many as the hard limit allows.
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		b.Fatal(err)
	}
	lim.Cur = lim.Max
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		b.Fatalf("raise RLIMIT_NOFILE: %v", err)
	}
	setupSessions = min(setupSessions, int(lim.Max)*3/4)
	l := mustProxyBenchLab(b)
	spooky := mustBuildSpooky(b)
	dir := b.TempDir()

	variants := []*proxyBenchVariant{
		{name: "spooky", start: func(tb testing.TB) *benchProc { return l.startSpooky(tb, spooky, dir) }},
		{name: "nginx", start: func(tb testing.TB) *benchProc { return l.startNginx(tb, nginx, streamMod, dir) }},
		{name: "relay", start: func(tb testing.TB) *benchProc { return l.startRelay(tb) }},
		// spooky where the kernel does not coalesce: each datagram is
		// received, decided and sent alone, as for a client whose
		// datagrams arrive interleaved with many others'.
		{name: "spooky-nogro", start: func(tb testing.TB) *benchProc {
			l.setGRO(tb, false)
			p := l.startSpooky(tb, spooky, dir)
			stop := p.stop
			p.stop = func() { stop(); l.setGRO(tb, true) }
			return p
		}},
	}
	flow := l.frame(true)
	b.ResetTimer()
	for range b.N {
		for round := range 3 {
			for _, v := range variants {
				l.measure(b, v, flow, 0, round == 0)
			}
		}
		for _, v := range variants[:2] {
			l.measureSetup(b, v)
		}
	}
	b.StopTimer()

	sp, ng, re, nogro := variants[0], variants[1], variants[2], variants[3]
	for _, v := range variants {
		b.ReportMetric(v.pps, v.name+"-pps")
		b.ReportMetric(v.cpuNs, v.name+"-cpu-ns/datagram")
		// A forwarder far from 100% of its core was held back by the
		// generator's side (CPU shared with whatever else the machine
		// runs): compare CPU per datagram then.
		b.Logf("%-7s flow: %9.0f datagrams/s delivered, %6.0f ns CPU per datagram, %3.0f%% of its core busy (%d delivered in the best run)",
			v.name, v.pps, v.cpuNs, 100*v.busy, v.delivered)
	}
	for _, v := range variants[:2] {
		b.ReportMetric(v.setupRate, v.name+"-new-flows/s")
		b.Logf("%-7s new-flows: %6.0f ns CPU per new client address (%9.0f/s per core)", v.name, v.setupCPUNs, v.setupRate)
	}
	b.ReportMetric(sp.pps/ng.pps, "spooky-x-nginx")
	b.ReportMetric(sp.pps/re.pps, "spooky-x-relay")
	b.ReportMetric(re.cpuNs/sp.cpuNs, "relay-cpu-x-spooky")
	b.ReportMetric(ng.cpuNs/sp.cpuNs, "nginx-cpu-x-spooky")
	b.ReportMetric(sp.memPerSession, "spooky-rss-bytes/session")
	b.ReportMetric(sp.slabPerSession, "kernel-slab-bytes/session")
	b.ReportMetric(nogro.pps/re.pps, "spooky-nogro-x-relay")
	b.Logf("spooky/nginx %.2fx (target ≥ 3: %s), spooky/relay %.2fx (target ≥ 1.3: %s); sessions: %.0f B resident + %.0f B kernel slab each",
		sp.pps/ng.pps, met(sp.pps/ng.pps >= 3), sp.pps/re.pps, met(sp.pps/re.pps >= 1.3), sp.memPerSession, sp.slabPerSession)
}

func met(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}

func (l *proxyBenchLab) setGRO(tb testing.TB, on bool) {
	tb.Helper()
	if err := l.lab.LB.SetGRO(on); err != nil {
		tb.Fatal(err)
	}
}

// proxyBenchVariant is one forwarder and what was measured of it.
type proxyBenchVariant struct {
	name  string
	start func(testing.TB) *benchProc
	n     uint32 // frames per generator call, calibrated to ~2 s

	pps, cpuNs     float64
	busy           float64 // the forwarder's share of its core in the best run
	delivered      uint64
	setupRate      float64
	setupCPUNs     float64
	memPerSession  float64
	slabPerSession float64
}

// benchProc is a forwarder process in the load balancer host.
type benchProc struct {
	cmd  *exec.Cmd
	log  *strings.Builder
	stop func()
}

// proxyBenchLab is the lab: client, lb, two backends on one bridge.
type proxyBenchLab struct {
	lab        *netns.Lab
	gen        *ebpf.Program
	settings   *ebpf.Map
	counters   []*ebpf.Map
	genCPU     int
	fwdCPU     int
	vip        netip.AddrPort
	backendsAt []netip.AddrPort
}

// proxyBenchBackendPort is where the backends "listen" (xdp_count drops
// everything that reaches them).
const proxyBenchBackendPort = 4433

func mustProxyBenchLab(b *testing.B) *proxyBenchLab {
	b.Helper()
	l := &proxyBenchLab{
		lab: netns.New(b, netns.Config{
			Backends: 2,
			// XDP_TX of the generator delivers only if the client's
			// peer runs XDP (lab-facts).
			Client: netns.HostOptions{PeerXDP: true},
		}),
		vip: netip.AddrPortFrom(netns.VIPv4, 443),
	}
	if err := l.lab.StaticNeighbors(); err != nil {
		b.Fatal(err)
	}
	// The lb's veth receives through NAPI with GRO, as a NIC's driver
	// does; the VIP is on its lo.
	if err := l.lab.LB.SetGRO(true); err != nil {
		b.Fatal(err)
	}
	// A veth hands forwarded skbs to its peer's NAPI (and so GRO) only if
	// it does not segment TCP itself (veth_skb_is_eligible_for_gro).
	if out, err := l.lab.Bridge.Command("ethtool", "-K", l.lab.LB.PeerName, "tso", "off").CombinedOutput(); err != nil {
		b.Skipf("ethtool -K %s tso off (apt-get install ethtool): %v\n%s", l.lab.LB.PeerName, err, out)
	}
	if out, err := l.lab.LB.Command("ip", "addr", "replace", netns.VIPv4.String()+"/32", "dev", "lo").CombinedOutput(); err != nil {
		b.Fatalf("vip on lb's lo: %v\n%s", err, out)
	}
	for _, h := range l.lab.Backends {
		l.backendsAt = append(l.backendsAt, netip.AddrPortFrom(h.IPv4, proxyBenchBackendPort))
	}

	spec, err := ebpf.LoadCollectionSpec("../bpf/trafficgen_bpfel_test.o")
	if err != nil {
		b.Fatalf("load the generator (bpf/trafficgen.c): %v", err)
	}
	load := func() *ebpf.Collection {
		c, err := ebpf.NewCollection(spec)
		if err != nil {
			b.Fatalf("load trafficgen: %v", err)
		}
		b.Cleanup(c.Close)
		return c
	}
	g := load()
	l.gen, l.settings = g.Programs["xdp_gen"], g.Maps["gen_settings"]
	for _, h := range l.lab.Backends {
		c := load()
		l.counters = append(l.counters, c.Maps["counted"])
		prog := c.Programs["xdp_count"]
		if err := h.Do(func() error {
			lk, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: h.Index, Flags: link.XDPDriverMode})
			if err != nil {
				return err
			}
			b.Cleanup(func() { lk.Close() })
			return nil
		}); err != nil {
			b.Fatalf("attach xdp_count to %s: %v", h, err)
		}
	}
	l.genCPU, l.fwdCPU = 0, 0
	if runtime.NumCPU() > 1 {
		l.fwdCPU = 1
	}
	return l
}

// frame is the generator's template: a QUIC short header whose CID
// (config 0, server ID 0001, 6-octet nonce) routes to backend 1 in the
// spooky config, padded to a 1200-octet payload.
func (l *proxyBenchLab) frame(udpChecksum bool) []byte {
	payload := make([]byte, 1200)
	payload[0] = 0x40
	copy(payload[1:], []byte{0x00, 0x00, 0x01, 1, 2, 3, 4, 5, 6})
	f := testFrame{src: netip.AddrPortFrom(netns.ClientIPv4, 40000), dst: l.vip, payload: payload}.bytes()
	copy(f[0:6], l.lab.LB.MAC)
	copy(f[6:12], l.lab.Client.MAC)
	// Checksums, which testFrame leaves to the tests that need them: the
	// IPv4 header's (RFC 791 §3.1) and, with udpChecksum, the UDP one
	// (RFC 768), without which the kernel does not coalesce datagrams (UDP
	// GRO wants a checksum, as GSO makes one). New-flows frames go
	// without (0: none), as the generator rewrites their ports; they are
	// not coalesced anyway.
	ip := f[ethHdrLen : ethHdrLen+ipv4HdrLen]
	// Don't fragment, as QUIC sends (RFC 9000 §14): with a fixed IP ID,
	// GRO coalesces only such datagrams.
	ip[6] |= 0x40
	binary.BigEndian.PutUint16(ip[10:], 0)
	binary.BigEndian.PutUint16(ip[10:], ^onesSum(0, ip))
	udp := f[ethHdrLen+ipv4HdrLen:]
	if !udpChecksum {
		return f
	}
	pseudo := onesSum(0, ip[12:20])
	pseudo = onesSum(pseudo, []byte{0, protoUDP})
	pseudo = onesSum(pseudo, udp[4:6])
	binary.BigEndian.PutUint16(udp[6:], 0)
	c := ^onesSum(pseudo, udp)
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(udp[6:], c)
	return f
}

// onesSum adds b to sum in ones' complement, 16 bits at a time (RFC 1071).
func onesSum(sum uint16, b []byte) uint16 {
	s := uint32(sum)
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}

func (l *proxyBenchLab) delivered(tb testing.TB) uint64 {
	tb.Helper()
	var total uint64
	for _, m := range l.counters {
		var per []uint64
		if err := m.Lookup(uint32(0), &per); err != nil {
			tb.Fatal(err)
		}
		for _, v := range per {
			total += v
		}
	}
	return total
}

// genNewFlow is GEN_F_NEW_FLOW of trafficgen.c: a new source port (and,
// every 64512 frames, a new source address) per frame.
const genNewFlow = 1 << 0

// run sends n copies of tmpl from the client, from a thread pinned to
// the generator's CPU, and returns how long the generator ran.
func (l *proxyBenchLab) run(tb testing.TB, tmpl []byte, flags uint32, n uint32) time.Duration {
	tb.Helper()
	if err := l.settings.Put(uint32(0), [2]uint32{flags, 0}); err != nil {
		tb.Fatal(err)
	}
	var elapsed time.Duration
	err := l.lab.Client.Do(func() error {
		var set unix.CPUSet
		set.Set(l.genCPU)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			return err
		}
		start := time.Now()
		_, err := l.gen.Run(&ebpf.RunOptions{
			Data:      tmpl,
			Context:   benchXDPMD{DataEnd: uint32(len(tmpl)), IngressIfindex: uint32(l.lab.Client.Index)},
			Flags:     1 << 1, // BPF_F_TEST_XDP_LIVE_FRAMES
			Repeat:    n,
			BatchSize: 64,
		})
		elapsed = time.Since(start)
		return err
	})
	if err != nil {
		tb.Fatalf("run the generator: %v", err)
	}
	return elapsed
}

// benchXDPMD is struct xdp_md, the context of an XDP test run.
type benchXDPMD struct {
	Data, DataEnd, DataMeta      uint32
	IngressIfindex, RxQueueIndex uint32
	EgressIfindex                uint32
}

// measure runs v under one load and keeps its best rate.
func (l *proxyBenchLab) measure(b *testing.B, v *proxyBenchVariant, tmpl []byte, flags uint32, calibrate bool) {
	b.Helper()
	p := v.start(b)
	defer p.stop()
	l.warmUp(b, v, p, tmpl, flags)
	if calibrate || v.n == 0 {
		el := l.run(b, tmpl, flags, 2_000_000)
		v.n = uint32(min(2_000_000*2/el.Seconds(), 1<<31))
		waitSettled(func() uint64 { return l.delivered(b) })
	}
	cpu0 := procCPU(p.cmd.Process.Pid)
	d0 := l.delivered(b)
	el := l.run(b, tmpl, flags, v.n)
	d1 := l.delivered(b)
	cpu1 := procCPU(p.cmd.Process.Pid)
	// Datagrams still queued when the generator stops are not counted.
	pps := float64(d1-d0) / el.Seconds()
	if v.name == "spooky" {
		st := l.stats(b)
		b.Logf("spooky events after a run of %v: %v", el, st.Events)
	}
	if pps > v.pps {
		v.pps, v.delivered = pps, d1-d0
		v.cpuNs = float64(cpu1-cpu0) / float64(d1-d0)
		v.busy = float64(cpu1-cpu0) / float64(el)
	}
}

// warmUp sends until datagrams reach a backend: the forwarder's workers
// run (nginx's start after its sockets are bound), its session exists and
// the neighbours are resolved.
func (l *proxyBenchLab) warmUp(b *testing.B, v *proxyBenchVariant, p *benchProc, tmpl []byte, flags uint32) {
	b.Helper()
	before := l.delivered(b)
	for range 50 {
		l.run(b, tmpl, flags, 1000)
		waitSettled(func() uint64 { return l.delivered(b) })
		if l.delivered(b) > before {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.Fatalf("%s: no datagram reached a backend; its log:\n%s", v.name, p.log)
}

// setupSessions is how many new client addresses measureSetup sends:
// each holds a file descriptor in spooky, and RLIMIT_NOFILE bounds them.
var setupSessions = 15000

// measureSetup sends v datagrams from new client addresses and ports
// (every datagram opens a session), in calls of 1000 that the socket
// buffer holds whole, and measures the CPU time each costs: one core sets
// up 1e9 / that many per second. Blasting them at once would measure the
// kernel's drops, and the file descriptor limit bounds how many sessions
// can be open.
func (l *proxyBenchLab) measureSetup(b *testing.B, v *proxyBenchVariant) {
	b.Helper()
	p := v.start(b)
	defer p.stop()
	tmpl := l.frame(false)
	l.warmUp(b, v, p, tmpl, 0)
	rss0, slab0 := procRSS(p.cmd.Process.Pid), slabBytes()
	cpu0 := procCPU(p.cmd.Process.Pid)
	d0 := l.delivered(b)
	for range setupSessions / 1000 {
		l.run(b, tmpl, genNewFlow, 1000)
		waitSettled(func() uint64 { return l.delivered(b) })
	}
	d1 := l.delivered(b)
	cpu1 := procCPU(p.cmd.Process.Pid)
	v.setupCPUNs = float64(cpu1-cpu0) / float64(max(d1-d0, 1))
	v.setupRate = 1e9 / v.setupCPUNs
	b.Logf("%s: %d of %d new-flow datagrams delivered", v.name, d1-d0, setupSessions/1000*1000)
	if d1 == d0 {
		b.Logf("%s log:\n%s", v.name, p.log)
	}
	if v.name != "spooky" {
		return
	}
	st := l.stats(b)
	sessions := float64(st.Sessions)
	if sessions > 0 {
		v.memPerSession = float64(procRSS(p.cmd.Process.Pid)-rss0) / sessions
		v.slabPerSession = float64(slabBytes()-slab0) / sessions
	}
	b.Logf("spooky: %.0f sessions open after the new-flows run; events %v", sessions, st.Events)
}

// waitSettled waits until read stops changing (the forwarder drained its
// queues), for at most 2 s.
func waitSettled(read func() uint64) {
	last := read()
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		n := read()
		if n == last {
			return
		}
		last = n
	}
}

// benchAdminSocket is the admin socket of the running spooky.
var benchAdminSocket string

// sessions reads the open sessions of the running spooky.
func (l *proxyBenchLab) sessions(tb testing.TB) int64 { return l.stats(tb).Sessions }

// stats reads the running spooky's proxy counters.
func (l *proxyBenchLab) stats(tb testing.TB) *ProxyStats {
	tb.Helper()
	out, err := l.lab.LB.Command(benchSpookyBin, "stats", "--proxy", "--json", "--admin", benchAdminSocket).Output()
	if err != nil {
		tb.Fatalf("spooky stats --proxy: %v", err)
	}
	var st ProxyStats
	if err := json.Unmarshal(out, &st); err != nil {
		tb.Fatal(err)
	}
	return &st
}

// benchSpookyBin is the spooky binary the benchmark built.
var benchSpookyBin string

func mustBuildSpooky(b *testing.B) string {
	b.Helper()
	bin := filepath.Join(b.TempDir(), "spooky")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/spooky-lb/spooky/cmd/spooky").CombinedOutput()
	if err != nil {
		b.Fatalf("go build spooky: %v\n%s", err, out)
	}
	benchSpookyBin = bin
	return bin
}

// pinned returns a command running name in the lb host on the forwarder's
// CPU.
func (l *proxyBenchLab) pinned(name string, args ...string) *exec.Cmd {
	return l.lab.LB.Command("taskset", append([]string{"-c", strconv.Itoa(l.fwdCPU), name}, args...)...)
}

func (l *proxyBenchLab) startSpooky(tb testing.TB, bin, dir string) *benchProc {
	tb.Helper()
	benchAdminSocket = filepath.Join(dir, "admin.sock")
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "log: {level: warn}\nadmin: {socket: %s}\nproxy: {max_sessions: %d}\nservices:\n", benchAdminSocket, setupSessions+1000)
	fmt.Fprintf(&cfg, "  - name: bench\n    address: %s\n    port: %d\n    forwarding: proxy\n    hash: 4-tuple\n",
		l.vip.Addr(), l.vip.Port())
	cfg.WriteString("    cid: [{config_id: 0, server_id_len: 2, nonce_len: 6}]\n    backends:\n")
	for i, a := range l.backendsAt {
		fmt.Fprintf(&cfg, "      - {name: b%d, address: %s, port: %d, server_id: \"%04x\"}\n", i+1, a.Addr(), a.Port(), i+1)
	}
	path := filepath.Join(dir, "spooky.yaml")
	if err := os.WriteFile(path, []byte(cfg.String()), 0o600); err != nil {
		tb.Fatal(err)
	}
	cmd := l.pinned(bin, "serve", "-c", path)
	return l.startProc(tb, cmd, func() bool { return l.udpBound() })
}

func (l *proxyBenchLab) startNginx(tb testing.TB, bin, module, dir string) *benchProc {
	tb.Helper()
	var ups strings.Builder
	for _, a := range l.backendsAt {
		fmt.Fprintf(&ups, "    server %s;\n", a)
	}
	conf := fmt.Sprintf(`load_module %s;
daemon off;
worker_processes auto;
worker_rlimit_nofile %d;
pid %s/nginx.pid;
error_log stderr error;
events { worker_connections %d; }
stream {
  upstream backends {
    hash $remote_addr consistent;
%s  }
  server {
    listen %s udp reuseport;
    proxy_pass backends;
    proxy_responses 0;
    proxy_timeout 60s;
  }
}
`, module, setupSessions*4/3, dir, setupSessions, ups.String(), l.vip)
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		tb.Fatal(err)
	}
	cmd := l.pinned(bin, "-c", path, "-p", dir, "-e", "stderr")
	return l.startProc(tb, cmd, func() bool { return l.udpBound() })
}

// startRelay runs this test binary as the minimal relay (benchRelay).
func (l *proxyBenchLab) startRelay(tb testing.TB) *benchProc {
	tb.Helper()
	cmd := l.pinned(os.Args[0])
	cmd.Env = append(os.Environ(), "SPOOKY_BENCH_RELAY="+l.vip.String()+","+l.backendsAt[0].String())
	return l.startProc(tb, cmd, func() bool { return l.udpBound() })
}

// udpBound reports whether something listens on the VIP in the lb host.
func (l *proxyBenchLab) udpBound() bool {
	out, err := l.lab.LB.Command("ss", "-Hlun", "src", l.vip.String()).Output()
	return err == nil && strings.TrimSpace(string(out)) != ""
}

func (l *proxyBenchLab) startProc(tb testing.TB, cmd *exec.Cmd, ready func() bool) *benchProc {
	tb.Helper()
	var log strings.Builder
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start %v: %v", cmd.Args, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(20 * time.Second)
	for !ready() {
		select {
		case <-exited:
			tb.Fatalf("%v exited: %s", cmd.Args, log.String())
		default:
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			tb.Fatalf("%v not listening within 20s: %s", cmd.Args, log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return &benchProc{cmd: cmd, log: &log, stop: func() {
		_ = unix.Kill(-cmd.Process.Pid, unix.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = unix.Kill(-cmd.Process.Pid, unix.SIGKILL)
			<-exited
		}
		// Wait until the VIP is free for the next forwarder.
		for deadline := time.Now().Add(10 * time.Second); l.udpBound() && time.Now().Before(deadline); {
			time.Sleep(20 * time.Millisecond)
		}
	}}
}

// procCPU returns the CPU time (ns) of pid and its descendants.
func procCPU(pid int) int64 {
	var total int64
	for _, p := range descendants(pid) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		// Fields from state (3): utime is 14, stime 15 (proc(5)).
		ut, _ := strconv.ParseInt(f[14-3], 10, 64)
		st, _ := strconv.ParseInt(f[15-3], 10, 64)
		total += (ut + st) * int64(time.Second) / 100 // USER_HZ
	}
	return total
}

// descendants returns pid and every process below it.
func descendants(pid int) []int {
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", out[i], out[i]))
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if c, err := strconv.Atoi(f); err == nil {
				out = append(out, c)
			}
		}
	}
	return out
}

// procRSS returns the resident memory (bytes) of pid.
func procRSS(pid int) int64 { return statusKB(fmt.Sprintf("/proc/%d/status", pid), "VmRSS:") * 1024 }

// slabBytes returns the kernel's slab memory (bytes).
func slabBytes() int64 { return statusKB("/proc/meminfo", "Slab:") * 1024 }

func statusKB(path, key string) int64 {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), key); ok {
			n, _ := strconv.ParseInt(strings.Fields(rest)[0], 10, 64)
			return n
		}
	}
	return 0
}

// TestMain runs the tests, or, as BenchmarkProxyForwarding's child
// (SPOOKY_BENCH_RELAY=VIP,BACKEND), the benchmark's minimal relay.
func TestMain(m *testing.M) {
	if env := os.Getenv("SPOOKY_BENCH_RELAY"); env != "" {
		if err := benchRelay(env); err != nil {
			fmt.Fprintln(os.Stderr, "relay:", err)
			os.Exit(1)
		}
		return
	}
	os.Exit(m.Run())
}

// benchRelay is the minimal relay of BenchmarkProxyForwarding: batches of
// datagrams read with recvmmsg and written with sendmmsg to one backend,
// through golang.org/x/net/ipv4's ReadBatch and WriteBatch, with no
// routing and no sessions. It runs until killed.
func benchRelay(env string) error {
	vip, backend, _ := strings.Cut(env, ",")
	in, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(vip)))
	if err != nil {
		return err
	}
	out, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(backend)))
	if err != nil {
		return err
	}
	_ = in.SetReadBuffer(4 << 20)
	rx, tx := ipv4.NewPacketConn(in), ipv4.NewPacketConn(out)
	msgs := make([]ipv4.Message, 64)
	for i := range msgs {
		msgs[i].Buffers = [][]byte{make([]byte, 2048)}
	}
	outMsgs := make([]ipv4.Message, 64)
	for {
		n, err := rx.ReadBatch(msgs, 0)
		if err != nil {
			return err
		}
		for i := 0; i < n; i++ {
			outMsgs[i].Buffers = [][]byte{msgs[i].Buffers[0][:msgs[i].N]}
			outMsgs[i].Addr = nil
		}
		for sent := 0; sent < n; {
			m, err := tx.WriteBatch(outMsgs[sent:n], 0)
			if err != nil {
				break // a full socket buffer: the rest is lost, as in a queue
			}
			sent += m
		}
	}
}
