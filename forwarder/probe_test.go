package forwarder

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/spooky-lb/spooky/bpf"
	"github.com/spooky-lb/spooky/config"
	"github.com/spooky-lb/spooky/test/netns"
)

func backendCfg(name, addr string) config.BackendConfig {
	return config.BackendConfig{Name: name, Address: netip.MustParseAddr(addr)}
}

func serviceCfg(name, vip string, mode config.Mode, fwd config.Forwarding, backends ...config.BackendConfig) config.ServiceConfig {
	return config.ServiceConfig{Name: name, Address: netip.MustParseAddr(vip), Port: 443, Mode: mode, Forwarding: fwd, Backends: backends}
}

// probeConfig has an l2dsr and an ipip service (with backends of both
// families) on IPv4, an l2dsr one on IPv6, an ipip service sharing the
// first one's address, and a proxy and an l7 service, whose backends
// cannot be probed through the VIP.
func probeConfig() *config.Config {
	cfg := &config.Config{Services: []config.ServiceConfig{
		serviceCfg("web", "198.18.0.10", config.ModeL4, config.ForwardingL2DSR,
			backendCfg("b1", "198.18.0.11"), backendCfg("b2", "198.18.0.12")),
		serviceCfg("tunnel", "198.18.0.20", config.ModeL4, config.ForwardingIPIP,
			backendCfg("b1", "198.18.0.11"), backendCfg("b6", "2001:db8::b")),
		serviceCfg("web6", "2001:db8::a", config.ModeL4, config.ForwardingL2DSR,
			backendCfg("b1", "2001:db8::b")),
		serviceCfg("shared", "198.18.0.10", config.ModeL4, config.ForwardingIPIP,
			backendCfg("b1", "198.18.0.11")),
		serviceCfg("udp-proxy", "198.18.0.30", config.ModeL4, config.ForwardingProxy,
			backendCfg("b1", "198.18.0.11")),
		serviceCfg("edge", "198.18.0.40", config.ModeL7, ""),
	}}
	cfg.SetDefaults()
	return cfg
}

func TestProbePlan(t *testing.T) {
	cfg := probeConfig()
	p := NewPlanner(fixedHops{}, nil)
	if _, err := p.Plan(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	index := func(key string) uint32 {
		i, ok := p.backends.byKey[key]
		if !ok {
			t.Fatalf("no index for %s", key)
		}
		return i
	}
	marks, routes := probePlan(cfg, p.backends, 1500)

	t.Run("l2dsr and ipip backends get the base, their index and the ipip bit of their service", func(t *testing.T) {
		want := map[string]uint32{
			"web/b1":    bpf.ProbeMarkBase | index("web/b1"),
			"web/b2":    bpf.ProbeMarkBase | index("web/b2"),
			"tunnel/b1": bpf.ProbeMarkBase | bpf.ProbeMarkIPIP | index("tunnel/b1"),
			"tunnel/b6": bpf.ProbeMarkBase | bpf.ProbeMarkIPIP | index("tunnel/b6"),
			"web6/b1":   bpf.ProbeMarkBase | index("web6/b1"),
			"shared/b1": bpf.ProbeMarkBase | bpf.ProbeMarkIPIP | index("shared/b1"),
		}
		if len(marks) != len(want) {
			t.Errorf("marks = %v, want %v", marks, want)
		}
		for k, w := range want {
			if marks[k] != w {
				t.Errorf("mark of %s = %#x, want %#x", k, marks[k], w)
			}
			if marks[k]&bpf.ProbeMarkMask != bpf.ProbeMarkBase {
				t.Errorf("mark of %s = %#x does not match the rule's %#x/%#x", k, marks[k], bpf.ProbeMarkBase, bpf.ProbeMarkMask)
			}
		}
	})
	t.Run("proxy and l7 backends have no mark", func(t *testing.T) {
		for _, k := range []string{"udp-proxy/b1", "edge/b1"} {
			if m, ok := marks[k]; ok {
				t.Errorf("%s has mark %#x", k, m)
			}
		}
	})
	t.Run("each l2dsr and ipip VIP address gets a route, with room for the outer header", func(t *testing.T) {
		want := map[netip.Addr]int{
			// ipip "shared" on the l2dsr VIP's address: IPv4 outer.
			netip.MustParseAddr("198.18.0.10"): 1500 - 20,
			// an IPv6 backend: the IPv6 outer header is the larger.
			netip.MustParseAddr("198.18.0.20"): 1500 - 40,
			netip.MustParseAddr("2001:db8::a"): 0,
		}
		if len(routes) != len(want) {
			t.Errorf("routes = %v, want %v", routes, want)
		}
		for vip, mtu := range want {
			if got, ok := routes[vip]; !ok || got != mtu {
				t.Errorf("route to %s: mtu %d (present %v), want %d", vip, got, ok, mtu)
			}
		}
	})
}

// probeLabConfig is one l2dsr service per family on the lab's VIPs, with
// every lab backend.
func probeLabConfig(lab *netns.Lab, families ...int) *config.Config {
	cfg := &config.Config{}
	for _, f := range families {
		vip, name := netns.VIPv4, "web4"
		if f == unix.AF_INET6 {
			vip, name = netns.VIPv6, "web6"
		}
		s := serviceCfg(name, vip.String(), config.ModeL4, config.ForwardingL2DSR)
		for _, h := range lab.Backends {
			addr := h.IPv4
			if f == unix.AF_INET6 {
				addr = h.IPv6
			}
			s.Backends = append(s.Backends, backendCfg(h.Name, addr.String()))
		}
		cfg.Services = append(cfg.Services, s)
	}
	cfg.SetDefaults()
	return cfg
}

// mustAttachProbes attaches to the lab's load balancer, applies cfg and
// closes at cleanup. Every call into the XDP object must run inside
// lab.LB.Do: netlink works in the calling thread's namespace.
func mustAttachProbes(tb testing.TB, lab *netns.Lab, root string, cfg *config.Config, log *slog.Logger) *XDP {
	tb.Helper()
	var x *XDP
	err := lab.LB.Do(func() error {
		var err error
		x, err = Attach(AttachOptions{Interface: lab.LB.Iface, PinRoot: root, Logger: log})
		if err != nil {
			return err
		}
		tb.Cleanup(func() { _ = lab.LB.Do(x.Close) })
		return x.Apply(context.Background(), cfg)
	})
	if err != nil {
		tb.Fatalf("attach and apply: %v", err)
	}
	return x
}

// probeKernelState is what the kernel holds for the probes of one
// interface and family.
type probeKernelState struct {
	rules     []netlink.Rule
	routes    map[netip.Addr]netlink.Route
	neighbour *netlink.Neigh // the placeholder's
	programs  int            // probe programs on tc egress
}

func mustProbeKernelState(tb testing.TB, h *netns.Host, family int) probeKernelState {
	tb.Helper()
	var s probeKernelState
	err := h.Do(func() error {
		var err error
		if s.rules, err = probeRules(family, h.Index); err != nil {
			return err
		}
		routes, err := probeTableRoutes(family, ProbeTable(h.Index))
		if err != nil {
			return err
		}
		s.routes = map[netip.Addr]netlink.Route{}
		for _, r := range routes {
			dst, _ := routeDst(r)
			s.routes[dst] = r
		}
		hop := ProbeNextHopIPv4
		if family == unix.AF_INET6 {
			hop = ProbeNextHopIPv6
		}
		neighs, err := netlink.NeighList(h.Index, family)
		if err != nil {
			return err
		}
		for _, n := range neighs {
			if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap() == hop {
				s.neighbour = &n
			}
		}
		s.programs, err = probePrograms(h.Index)
		return err
	})
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func (s probeKernelState) empty() bool {
	return len(s.rules) == 0 && len(s.routes) == 0 && s.neighbour == nil
}

// mustRouteGet asks the kernel of host h how it routes to dst from a
// socket with mark (0: none).
func mustRouteGet(tb testing.TB, h *netns.Host, dst netip.Addr, mark uint32) netlink.Route {
	tb.Helper()
	var r netlink.Route
	err := h.Do(func() error {
		routes, err := netlink.RouteGetWithOptions(dst.AsSlice(), &netlink.RouteGetOptions{Mark: mark})
		if err != nil {
			return err
		}
		r = routes[0]
		return nil
	})
	if err != nil {
		tb.Fatalf("route get %s mark %#x in %s: %v", dst, mark, h, err)
	}
	return r
}

func TestAttachSetsUpProbeSteering(t *testing.T) {
	root := mustBPFFSDir(t)
	lab := netns.New(t, netns.Config{Backends: 2})
	unmarkedBefore := map[netip.Addr]netlink.Route{}
	for _, vip := range []netip.Addr{netns.VIPv4, netns.VIPv6} {
		unmarkedBefore[vip] = mustRouteGet(t, lab.LB, vip, 0)
	}
	x := mustAttachProbes(t, lab, root, probeLabConfig(lab, unix.AF_INET, unix.AF_INET6), nil)

	t.Run("probe marks are on for every backend", func(t *testing.T) {
		if err := x.ProbeErr(); err != nil {
			t.Fatalf("ProbeErr = %v", err)
		}
		for _, svc := range []string{"web4", "web6"} {
			for _, h := range lab.Backends {
				index := x.planner.backends.byKey[backendKey(svc, h.Name)]
				if m, ok := x.ProbeMark(svc, h.Name); !ok || m != bpf.ProbeMarkBase|index {
					t.Errorf("ProbeMark(%s, %s) = %#x, %v; want %#x", svc, h.Name, m, ok, bpf.ProbeMarkBase|index)
				}
			}
		}
		if _, ok := x.ProbeMark("web4", "nobody"); ok {
			t.Error("an unknown backend has a mark")
		}
	})
	for _, f := range []struct {
		name   string
		family int
		vip    netip.Addr
		hop    netip.Addr
	}{{"IPv4", unix.AF_INET, netns.VIPv4, ProbeNextHopIPv4}, {"IPv6", unix.AF_INET6, netns.VIPv6, ProbeNextHopIPv6}} {
		t.Run(f.name+" has a rule, a route to the VIP via the placeholder and its neighbour entry", func(t *testing.T) {
			s := mustProbeKernelState(t, lab.LB, f.family)
			if len(s.rules) != 1 {
				t.Fatalf("rules = %v, want one", s.rules)
			}
			r := s.rules[0]
			if r.Priority != ProbeRulePriority || r.Mark != bpf.ProbeMarkBase || r.Mask == nil || *r.Mask != bpf.ProbeMarkMask {
				t.Errorf("rule = %+v, want priority %d fwmark %#x/%#x", r, ProbeRulePriority, bpf.ProbeMarkBase, bpf.ProbeMarkMask)
			}
			route, ok := s.routes[f.vip]
			if len(s.routes) != 1 || !ok || route.LinkIndex != lab.LB.Index || !route.Gw.Equal(f.hop.AsSlice()) {
				t.Errorf("routes = %v, want %s via %s dev %s", s.routes, f.vip, f.hop, lab.LB.Iface)
			}
			if n := s.neighbour; n == nil || n.State != netlink.NUD_PERMANENT || !bytes.Equal(n.HardwareAddr, lab.LB.MAC) {
				t.Errorf("placeholder neighbour = %+v, want permanent with %s", n, lab.LB.MAC)
			}
			if s.programs != 1 {
				t.Errorf("%d probe programs on tc egress, want 1", s.programs)
			}
		})
		t.Run(f.name+" marked lookups use the probe table and unmarked ones are as before", func(t *testing.T) {
			marked := mustRouteGet(t, lab.LB, f.vip, bpf.ProbeMarkBase|1)
			if marked.Table != ProbeTable(lab.LB.Index) || !marked.Gw.Equal(f.hop.AsSlice()) || marked.LinkIndex != lab.LB.Index {
				t.Errorf("marked route = %+v, want table %d via %s", marked, ProbeTable(lab.LB.Index), f.hop)
			}
			other := mustRouteGet(t, lab.LB, f.vip, 0x4000)
			unmarked := mustRouteGet(t, lab.LB, f.vip, 0)
			for _, got := range []netlink.Route{unmarked, other} {
				want := unmarkedBefore[f.vip]
				if got.Table != want.Table || !got.Gw.Equal(want.Gw) || got.LinkIndex != want.LinkIndex {
					t.Errorf("route without a probe mark = %+v, want as before attach: %+v", got, want)
				}
			}
		})
	}
	t.Run("a config without IPv6 VIPs takes the IPv6 rule, route and neighbour away", func(t *testing.T) {
		err := lab.LB.Do(func() error { return x.Apply(context.Background(), probeLabConfig(lab, unix.AF_INET)) })
		if err != nil {
			t.Fatal(err)
		}
		if s := mustProbeKernelState(t, lab.LB, unix.AF_INET6); !s.empty() {
			t.Errorf("IPv6 state left: %+v", s)
		}
		if s := mustProbeKernelState(t, lab.LB, unix.AF_INET); len(s.rules) != 1 || len(s.routes) != 1 {
			t.Errorf("IPv4 state = %+v, want its rule and route", s)
		}
		if _, ok := x.ProbeMark("web6", lab.Backends[0].Name); ok {
			t.Error("a backend of the removed service keeps its mark")
		}
	})
	t.Run("Close removes the program, rules, routes and neighbours", func(t *testing.T) {
		if err := lab.LB.Do(x.Close); err != nil {
			t.Fatal(err)
		}
		for _, f := range []int{unix.AF_INET, unix.AF_INET6} {
			if s := mustProbeKernelState(t, lab.LB, f); !s.empty() || s.programs != 0 {
				t.Errorf("family %d: left %+v", f, s)
			}
		}
		if _, ok := x.ProbeMark("web4", lab.Backends[0].Name); ok {
			t.Error("a closed XDP still hands out marks")
		}
	})
}

func TestCloseLeavesProbeSteeringToADaemonThatTookOver(t *testing.T) {
	root := mustBPFFSDir(t)
	lab := netns.New(t, netns.Config{Backends: 1})
	cfg := probeLabConfig(lab, unix.AF_INET)
	old := mustAttachProbes(t, lab, root, cfg, nil)
	successor := mustAttachProbes(t, lab, root, cfg, nil)

	if err := lab.LB.Do(old.Close); err != nil {
		t.Fatal(err)
	}
	if s := mustProbeKernelState(t, lab.LB, unix.AF_INET); len(s.rules) != 1 || len(s.routes) != 1 || s.neighbour == nil || s.programs != 1 {
		t.Errorf("after the old daemon closed: %+v, want the successor's rule, route, neighbour and program", s)
	}
	if err := lab.LB.Do(successor.Close); err != nil {
		t.Fatal(err)
	}
	if s := mustProbeKernelState(t, lab.LB, unix.AF_INET); !s.empty() || s.programs != 0 {
		t.Errorf("after the successor closed: left %+v", s)
	}
}

func TestRemoveProbeSteeringCleansUpAfterADeadDaemon(t *testing.T) {
	root := mustBPFFSDir(t)
	lab := netns.New(t, netns.Config{Backends: 1})
	x := mustAttachProbes(t, lab, root, probeLabConfig(lab, unix.AF_INET, unix.AF_INET6), nil)
	// A daemon killed with SIGKILL: its tcx link went with it, the rules
	// and routes stayed.
	x.probe.mu.Lock()
	x.probe.tc.Close()
	x.probe.tc = nil
	x.probe.mu.Unlock()

	// A rule of an interface deleted since, and one of an interface that
	// exists (lo).
	orphan, alive := probeRule(unix.AF_INET, 9999), probeRule(unix.AF_INET, 1)
	err := lab.LB.Do(func() error {
		if err := netlink.RuleAdd(orphan); err != nil {
			return err
		}
		if err := netlink.RuleAdd(alive); err != nil {
			return err
		}
		return RemoveProbeSteering(lab.LB.Iface)
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []int{unix.AF_INET, unix.AF_INET6} {
		if s := mustProbeKernelState(t, lab.LB, f); !s.empty() {
			t.Errorf("family %d: left %+v", f, s)
		}
	}
	var left []netlink.Rule
	err = lab.LB.Do(func() error {
		var err error
		left, err = netlink.RuleListFiltered(unix.AF_INET, &netlink.Rule{Priority: ProbeRulePriority}, netlink.RT_FILTER_PRIORITY)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 1 || left[0].Table != alive.Table {
		t.Errorf("probe rules left = %v, want only lo's (table %d)", left, alive.Table)
	}
}

// syncBuffer is an io.Writer safe for a logger and a reader at once.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestProbesAreOffWithoutNetAdmin(t *testing.T) {
	lb := mustLoadLB(t)
	lab := netns.New(t, netns.Config{Backends: 1})
	iface, err := lab.LB.Link()
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	x := &XDP{}

	// Capabilities are per thread: drop CAP_NET_ADMIN (and CAP_SYS_ADMIN,
	// which the kernel accepts in its place) on a thread of its own in
	// the load balancer's namespace, which then dies with its goroutine.
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits
		ns, err := vnetns.GetFromPath(lab.LB.Path())
		if err != nil {
			done <- err
			return
		}
		defer ns.Close()
		if err := vnetns.Set(ns); err != nil {
			done <- err
			return
		}
		if err := dropCapabilities(unix.CAP_NET_ADMIN, unix.CAP_SYS_ADMIN); err != nil {
			done <- err
			return
		}
		x.probe.start(lb, iface, log)
		x.probe.apply(probeLabConfig(lab, unix.AF_INET), newIDs(bpf.MaxBackends))
		done <- nil
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	err = x.ProbeErr()
	t.Logf("ProbeErr: %v", err)
	if !errors.Is(err, ErrProbesOff) || !errors.Is(err, ErrPrivilege) {
		t.Errorf("ProbeErr = %v, want ErrProbesOff and ErrPrivilege", err)
	}
	if !strings.Contains(logs.String(), "health checks fall back to backend addresses") {
		t.Errorf("log does not say probes fall back:\n%s", logs.String())
	}
	if _, ok := x.ProbeMark("web4", lab.Backends[0].Name); ok {
		t.Error("ProbeMark hands out a mark while steering is off")
	}
	if err := x.probe.close(); err != nil {
		t.Errorf("close with steering off: %v", err)
	}
}

// dropCapabilities removes caps from the calling thread's effective set.
func dropCapabilities(caps ...int) error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capget: %w", err)
	}
	for _, c := range caps {
		data[c/32].Effective &^= 1 << (c % 32)
	}
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capset: %w", err)
	}
	return nil
}
