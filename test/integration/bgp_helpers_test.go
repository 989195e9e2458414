package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/spooky-lb/spooky/admin"
	"github.com/spooky-lb/spooky/test/netns"
)

// The BGP lab: a client on a segment of its own behind a router running
// BIRD 2, and behind the router the server segment (the lab's bridge) with
// two spooky hosts and two backends. Each spooky host attaches natively
// to its eth0, forwards l2dsr to the backends (which answer the client
// directly, through the router) and announces the VIPs to BIRD over BGP;
// BIRD installs them into the router's kernel table as one route with a
// next hop per announcing host (ECMP, `merge paths`), and the kernel
// hashes flows over them by addresses and ports.
//
//	outside (198.19.0.1, 2001:db8:1::1)
//	   │ eth0 ─ eth1
//	router (BIRD, AS 65000; 198.18.0.254, 2001:db8::fe on the bridge)
//	   │ br0
//	lb1 (198.18.0.2), lb2 (198.18.0.3): spooky attach, AS 65001
//	backend1 (198.18.0.11), backend2 (198.18.0.12): VIPs on lo
//
// The lab's own client host (198.18.0.1 on the bridge) stays idle: this
// lab's client must reach the VIPs through the router.

// Addresses of the BGP lab beyond the netns plan.
var (
	routerIPv4  = netip.MustParseAddr("198.18.0.254")
	routerIPv6  = netip.MustParseAddr("2001:db8::fe")
	lb2IPv4     = netip.MustParseAddr("198.18.0.3")
	lb2IPv6     = netip.MustParseAddr("2001:db8::3")
	outsideIPv4 = netip.MustParsePrefix("198.19.0.1/24")
	outsideIPv6 = netip.MustParsePrefix("2001:db8:1::1/64")
	routerOut4  = netip.MustParsePrefix("198.19.0.254/24")
	routerOut6  = netip.MustParsePrefix("2001:db8:1::fe/64")
	// extraVIP is the address a reload adds and removes.
	extraVIP = netip.MustParseAddr("198.18.0.20")
)

// bgpHoldTime is the hold time both sides offer in the lab: the smallest
// BGP allows (RFC 4271 §4.2), so a host that dies silently is dropped by
// BIRD within 3 s.
const bgpHoldTime = 3 * time.Second

// bgpWithdrawGrace is how long a spooky host forwards after withdrawing
// its routes on SIGTERM.
const bgpWithdrawGrace = 2 * time.Second

// bgpLab is the running lab.
type bgpLab struct {
	*netns.Lab
	tb             testing.TB // the test that owns the lab and its processes
	router, client *netns.Host
	lbs            [2]*netns.Host
	spooky         [2]*spookyProc
	dir            string
	birdSock       string
	vip4, vip6     netip.AddrPort
}

// lbName is how BIRD's protocols and the tests name load balancer i.
func lbName(i int) string { return fmt.Sprintf("lb%d", i+1) }

func mustBGPLab(t *testing.T) *bgpLab {
	t.Helper()
	if _, err := exec.LookPath("bird"); err != nil {
		t.Fatalf("the BGP lab needs BIRD 2 (apt-get install bird2): %v", err)
	}
	// Native XDP drops a partial checksum (lab-facts): every host whose
	// packets pass a native XDP program computes its checksums itself,
	// the BGP sessions included.
	lbOpts := netns.HostOptions{PeerXDP: true, MountNS: true, TxChecksumOff: true}
	lab := netns.New(t, netns.Config{Backends: 2, LB: lbOpts})
	x := &bgpLab{
		Lab:  lab,
		tb:   t,
		dir:  t.TempDir(),
		vip4: netip.AddrPortFrom(netns.VIPv4, vipPort),
		vip6: netip.AddrPortFrom(netns.VIPv6, vipPort),
	}
	x.lbs[0] = lab.LB
	var err error
	if x.lbs[1], err = lab.AddHost("lb2", lb2IPv4, lb2IPv6, lbOpts); err != nil {
		t.Fatal(err)
	}
	if x.router, err = lab.AddHost("router", routerIPv4, routerIPv6, netns.HostOptions{TxChecksumOff: true}); err != nil {
		t.Fatal(err)
	}
	if x.client, err = lab.AddHostBehind("outside", x.router, "eth1", outsideIPv4, outsideIPv6, routerOut4, routerOut6); err != nil {
		t.Fatal(err)
	}
	if err := x.client.SetTxChecksum(false); err != nil {
		t.Fatal(err)
	}
	// The router forwards and hashes flows over the next hops by
	// addresses and ports (policy 1), so one client's connections
	// spread; without it every flow between two addresses takes one path.
	for _, kv := range [][2]string{
		{"net.ipv4.ip_forward", "1"}, {"net.ipv6.conf.all.forwarding", "1"},
		{"net.ipv4.fib_multipath_hash_policy", "1"}, {"net.ipv6.fib_multipath_hash_policy", "1"},
		{"net.ipv4.conf.all.rp_filter", "0"},
	} {
		if err := x.router.SetSysctl(kv[0], kv[1]); err != nil {
			t.Fatal(err)
		}
	}
	mustRoute(t, x.client, netip.MustParsePrefix("198.18.0.0/24"), routerOut4.Addr())
	mustRoute(t, x.client, netip.MustParsePrefix("2001:db8::/64"), routerOut6.Addr())
	for i, h := range lab.Backends {
		mustRoute(t, h, outsideIPv4.Masked(), routerIPv4)
		mustRoute(t, h, outsideIPv6.Masked(), routerIPv6)
		for _, vip := range []netip.Addr{netns.VIPv4, netns.VIPv6, extraVIP} {
			if err := h.AddVIP(vip); err != nil {
				t.Fatal(err)
			}
		}
		for _, vip := range []netip.Addr{netns.VIPv4, netns.VIPv6} {
			mustStartBackend(t, h, h.Name, netip.AddrPortFrom(vip, vipPort), xdpCID, serverID(i))
		}
	}
	x.mustStartBIRD(t)
	for i := range x.lbs {
		x.writeConfig(t, i, bgpConfigOptions{})
		x.startSpooky(t, i)
	}
	return x
}

// startSpooky runs `spooky attach eth0` on host i, as mustStartSpooky
// does, and waits until it forwards. The process belongs to the lab: it
// gets SIGTERM (and must exit 0) when the lab's test ends, not when the
// subtest t that started it does.
func (x *bgpLab) startSpooky(t *testing.T, i int) {
	t.Helper()
	h := x.lbs[i]
	p := &spookyProc{log: &syncBuffer{}, exited: make(chan struct{})}
	p.cmd = h.Command(mustBuild(t, "spooky"), "attach", "-c", x.cfgPath(i), "--xdp-mode", "native", h.Iface)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start spooky attach on %s: %v", lbName(i), err)
	}
	go func() { p.waitErr = p.cmd.Wait(); close(p.exited) }()
	tb := x.tb
	tb.Cleanup(func() {
		if err := p.stop(); err != nil {
			tb.Error(err)
		}
	})
	x.spooky[i] = p
	p.mustWaitLog(t, "msg=forwarding", 1)
}

func mustRoute(tb testing.TB, h *netns.Host, dst netip.Prefix, gw netip.Addr) {
	tb.Helper()
	if err := h.AddRoute(dst, gw); err != nil {
		tb.Fatal(err)
	}
}

// birdConfig peers passively with both spooky hosts over IPv4 and IPv6
// and merges the equal routes they announce into one multipath kernel
// route. The short error wait lets a host that restarts reconnect at
// once (BIRD's default waits a minute after a session error).
const birdConfig = `router id 198.18.0.254;
protocol device { }
protocol kernel kernel4 {
	ipv4 { import none; export all; };
	merge paths on;
}
protocol kernel kernel6 {
	ipv6 { import none; export all; };
	merge paths on;
}
template bgp spooky {
	local as 65000;
	passive on;
	hold time %[1]d;
	keepalive time 1;
	error wait time 1, 5;
}
`

func (x *bgpLab) mustStartBIRD(t *testing.T) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, birdConfig, int(bgpHoldTime/time.Second))
	for i, h := range x.lbs {
		fmt.Fprintf(&b, "protocol bgp %sv4 from spooky {\n\tneighbor %s as 65001;\n\tipv4 { import all; export none; };\n}\n", lbName(i), h.IPv4)
		fmt.Fprintf(&b, "protocol bgp %sv6 from spooky {\n\tneighbor %s as 65001;\n\tipv6 { import all; export none; };\n}\n", lbName(i), h.IPv6)
	}
	conf := filepath.Join(x.dir, "bird.conf")
	if err := os.WriteFile(conf, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	x.birdSock = filepath.Join(x.dir, "bird.ctl")
	log := &syncBuffer{}
	cmd := x.router.Command("bird", "-f", "-c", conf, "-s", x.birdSock)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start bird: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	pollUntil(t, "BIRD answers on its control socket", 10*time.Second, func() bool {
		select {
		case <-exited:
			t.Fatalf("bird exited:\n%s", log)
		default:
		}
		_, err := x.birdc("show status")
		return err == nil
	})
}

// birdc runs a BIRD CLI command on the router's control socket.
func (x *bgpLab) birdc(args ...string) (string, error) {
	out, err := exec.Command("birdc", append([]string{"-s", x.birdSock}, args...)...).CombinedOutput()
	return string(out), err
}

// birdProto matches the protocol, i.e. the host, that a route came from.
var birdProto = regexp.MustCompile(`\[(lb\d)v[46] `)

// birdRoutes returns the hosts whose route to vip BIRD holds.
func (x *bgpLab) birdRoutes(tb testing.TB, vip netip.Addr) []string {
	tb.Helper()
	out, err := x.birdc("show", "route", netip.PrefixFrom(vip, vip.BitLen()).String())
	if strings.Contains(out, "Network not found") {
		return nil
	}
	if err != nil {
		tb.Fatalf("birdc show route: %v\n%s", err, out)
	}
	var hosts []string
	for _, m := range birdProto.FindAllStringSubmatch(out, -1) {
		hosts = append(hosts, m[1])
	}
	slices.Sort(hosts)
	return hosts
}

// mustWaitBIRD waits until BIRD holds routes to vip from exactly hosts.
func (x *bgpLab) mustWaitBIRD(tb testing.TB, vip netip.Addr, hosts ...string) time.Duration {
	tb.Helper()
	return pollUntil(tb, fmt.Sprintf("BIRD's routes to %s come from %v", vip, hosts), 30*time.Second, func() bool {
		return slices.Equal(x.birdRoutes(tb, vip), hosts)
	})
}

// mustWaitAnnounced waits until BIRD holds routes to vip from exactly
// hosts and the router's kernel route to it goes via exactly those hosts.
// It returns how long that took.
func (x *bgpLab) mustWaitAnnounced(tb testing.TB, vip netip.Addr, hosts ...string) time.Duration {
	tb.Helper()
	var idx []int
	for i := range x.lbs {
		if slices.Contains(hosts, lbName(i)) {
			idx = append(idx, i)
		}
	}
	want := x.lbAddrs(vip, idx...)
	return pollUntil(tb, fmt.Sprintf("BIRD's routes to %s come from %v and the kernel's go via %v", vip, hosts, want), 30*time.Second, func() bool {
		return slices.Equal(x.birdRoutes(tb, vip), hosts) && slices.Equal(x.kernelNextHops(tb, vip), want)
	})
}

// kernelNextHops returns the next hops of the router's kernel route to
// vip: one per path of a multipath route.
func (x *bgpLab) kernelNextHops(tb testing.TB, vip netip.Addr) []netip.Addr {
	tb.Helper()
	fam := netlink.FAMILY_V4
	if vip.Is6() {
		fam = netlink.FAMILY_V6
	}
	dst := &net.IPNet{IP: vip.AsSlice(), Mask: net.CIDRMask(vip.BitLen(), vip.BitLen())}
	var hops []netip.Addr
	err := x.router.Do(func() error {
		routes, err := netlink.RouteListFiltered(fam, &netlink.Route{Dst: dst}, netlink.RT_FILTER_DST)
		if err != nil {
			return err
		}
		for _, r := range routes {
			if r.Gw != nil {
				hops = append(hops, mustAddr(r.Gw))
			}
			for _, nh := range r.MultiPath {
				hops = append(hops, mustAddr(nh.Gw))
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatalf("list the router's routes to %s: %v", vip, err)
	}
	slices.SortFunc(hops, netip.Addr.Compare)
	return hops
}

// mustAddr converts a next hop from netlink.
func mustAddr(ip net.IP) netip.Addr {
	a, _ := netip.AddrFromSlice(ip)
	return a.Unmap()
}

// lbAddrs returns the addresses of the given hosts in vip's family.
func (x *bgpLab) lbAddrs(vip netip.Addr, idx ...int) []netip.Addr {
	var out []netip.Addr
	for _, i := range idx {
		a := x.lbs[i].IPv4
		if vip.Is6() {
			a = x.lbs[i].IPv6
		}
		out = append(out, a)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

func (x *bgpLab) cfgPath(i int) string { return filepath.Join(x.dir, lbName(i)+".yaml") }
func (x *bgpLab) adminSock(i int) string {
	return filepath.Join(x.dir, lbName(i)+".sock")
}

// bgpConfigOptions vary the config the lab writes.
type bgpConfigOptions struct {
	// extraVIP adds service web4b on extraVIP.
	extraVIP bool
	// holdTime, if set, replaces the peers' hold time (a bad one makes a
	// config a reload must refuse).
	holdTime string
	// failingCheck gives web4 an active check that every backend fails:
	// a TCP connect to a port nothing listens on.
	failingCheck bool
}

// writeConfig writes host i's config: the two VIPs of the XDP lab (hash
// 4-tuple, routable CIDs) over both backends, and the bgp section.
func (x *bgpLab) writeConfig(tb testing.TB, i int, o bgpConfigOptions) {
	tb.Helper()
	hold := o.holdTime
	if hold == "" {
		hold = bgpHoldTime.String()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "log:\n  level: debug\nadmin:\n  socket: %s\n", x.adminSock(i))
	fmt.Fprintf(&b, "bgp:\n  asn: 65001\n  router_id: %s\n  withdraw_grace: %s\n  peers:\n", x.lbs[i].IPv4, bgpWithdrawGrace)
	for _, p := range []netip.Addr{routerIPv4, routerIPv6} {
		fmt.Fprintf(&b, "    - {address: %q, asn: 65000, hold_time: %s}\n", p, hold)
	}
	fmt.Fprintf(&b, "  vips:\n    - {address: %q, communities: [\"65001:100\"]}\n", netns.VIPv4)
	b.WriteString("services:\n")
	type svc struct {
		name string
		vip  netip.Addr
	}
	svcs := []svc{{"web4", netns.VIPv4}, {"web6", netns.VIPv6}}
	if o.extraVIP {
		svcs = append(svcs, svc{"web4b", extraVIP})
	}
	for _, s := range svcs {
		fmt.Fprintf(&b, "  - name: %s\n    address: %q\n    port: %d\n    forwarding: l2dsr\n    hash: 4-tuple\n    strict: true\n", s.name, s.vip, vipPort)
		if o.failingCheck && s.name == "web4" {
			b.WriteString("    health_check: {type: tcp, address: backend, port: 9, interval: 200ms, timeout: 100ms, fall: 2}\n")
		}
		fmt.Fprintf(&b, "    cid:\n      - {config_id: %d, server_id_len: %d, nonce_len: %d}\n    backends:\n",
			xdpCID.ID, xdpCID.ServerIDLen, xdpCID.NonceLen)
		for j, h := range x.Backends {
			addr := h.IPv4
			if s.vip.Is6() {
				addr = h.IPv6
			}
			fmt.Fprintf(&b, "      - {name: %s, address: %q, server_id: \"%x\"}\n", h.Name, addr, serverID(j))
		}
	}
	if err := os.WriteFile(x.cfgPath(i), []byte(b.String()), 0o600); err != nil {
		tb.Fatal(err)
	}
}

// vipPackets returns how many packets host i's XDP program has forwarded
// for vip (its pinned counters, which outlive the spooky process).
func (x *bgpLab) vipPackets(tb testing.TB, i int, vip netip.AddrPort) uint64 {
	tb.Helper()
	var n uint64
	for _, v := range mustStats(tb, x.lbs[i]).VIPs {
		if v.Address == vip {
			n += v.Packets
		}
	}
	return n
}

// counters returns vipPackets of both hosts.
func (x *bgpLab) counters(tb testing.TB, vip netip.AddrPort) [2]uint64 {
	tb.Helper()
	return [2]uint64{x.vipPackets(tb, 0, vip), x.vipPackets(tb, 1, vip)}
}

// mustCarryBoth checks that both hosts forward packets of the held
// connections of loop: with a dozen connections per VIP hashed over two
// next hops, all on one host happens with probability 2^-23.
func (x *bgpLab) mustCarryBoth(t *testing.T, loop *pacedLoop) {
	t.Helper()
	sum := func() [2]uint64 {
		a, b := x.counters(t, x.vip4), x.counters(t, x.vip6)
		return [2]uint64{a[0] + b[0], a[1] + b[1]}
	}
	before := sum()
	loop.mustWaitRequests(t, 5, 20*time.Second)
	if after := sum(); after[0] == before[0] || after[1] == before[1] {
		t.Fatalf("the held connections did not use both hosts (packets %v, then %v)", before, after)
	}
}

// mustStatus returns host i's `spooky status --json`.
func (x *bgpLab) mustStatus(tb testing.TB, i int) *admin.Status {
	tb.Helper()
	out, errOut, code := runSpooky(tb, x.lbs[i], "status", "--json", "--admin", x.adminSock(i))
	if code != 0 {
		tb.Fatalf("spooky status on %s: exit %d: %s", lbName(i), code, errOut)
	}
	var st admin.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		tb.Fatalf("spooky status --json: %v\n%s", err, out)
	}
	return &st
}

// mustSpooky runs a spooky admin command on host i and fails on a
// non-zero exit.
func (x *bgpLab) mustSpooky(tb testing.TB, i int, args ...string) string {
	tb.Helper()
	args = append(args[:1:1], append([]string{"--admin", x.adminSock(i)}, args[1:]...)...)
	out, errOut, code := runSpooky(tb, x.lbs[i], args...)
	if code != 0 {
		tb.Fatalf("spooky %v on %s: exit %d: %s%s", args, lbName(i), code, out, errOut)
	}
	return out
}

// mustHeldConns opens n connections to each vip from the outside client,
// each from a UDP socket (a client port) of its own.
func (x *bgpLab) mustHeldConns(tb testing.TB, n int, vips ...netip.AddrPort) []*h3Conn {
	tb.Helper()
	var conns []*h3Conn
	for _, vip := range vips {
		local := outsideIPv4.Addr()
		if vip.Addr().Is6() {
			local = outsideIPv6.Addr()
		}
		for range n {
			conns = append(conns, mustDialH3From(tb, x.client, local, vip))
		}
	}
	return conns
}

// pacedLoop makes a request on each of a set of connections every
// interval, each expected to stay on the backend that first answered it,
// and records the longest time any connection went without a successful
// request.
type pacedLoop struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	ok      []int64
	lastOK  []time.Time
	longest time.Duration
	errs    []string
}

// startPacedLoop starts one goroutine per connection; a request that
// takes longer than timeout fails.
func startPacedLoop(conns []*h3Conn, interval, timeout time.Duration) *pacedLoop {
	ctx, cancel := context.WithCancel(context.Background())
	l := &pacedLoop{cancel: cancel, ok: make([]int64, len(conns)), lastOK: make([]time.Time, len(conns))}
	now := time.Now()
	for i := range l.lastOK {
		l.lastOK[i] = now
	}
	for i, c := range conns {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			tick := time.NewTicker(interval)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				rctx, rcancel := context.WithTimeout(ctx, timeout)
				b, err := c.get(rctx)
				rcancel()
				if ctx.Err() != nil {
					return
				}
				l.mu.Lock()
				switch {
				case err != nil:
					l.errs = append(l.errs, fmt.Sprintf("connection from %s to %s: %v", c.localAddr(), c.url, err))
				case b != c.backend:
					l.errs = append(l.errs, fmt.Sprintf("connection from %s to %s: answered by %s, first by %s", c.localAddr(), c.url, b, c.backend))
				default:
					now := time.Now()
					l.longest = max(l.longest, now.Sub(l.lastOK[i]))
					l.lastOK[i] = now
					l.ok[i]++
				}
				l.mu.Unlock()
			}
		}()
	}
	return l
}

// mustWaitRequests waits until every connection has made n more
// successful requests than when called.
func (l *pacedLoop) mustWaitRequests(tb testing.TB, n int64, timeout time.Duration) {
	tb.Helper()
	l.mu.Lock()
	base := slices.Clone(l.ok)
	l.mu.Unlock()
	pollUntil(tb, fmt.Sprintf("every held connection makes %d more requests", n), timeout, func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		for i := range l.ok {
			if l.ok[i] < base[i]+n {
				return false
			}
		}
		return true
	})
}

// resetLongest forgets the longest gap seen so far.
func (l *pacedLoop) resetLongest() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.longest = 0
}

// stop ends the loop and returns the successful requests, the failures
// and the longest gap.
func (l *pacedLoop) stop() (ok int64, failures []string, longest time.Duration) {
	l.cancel()
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, n := range l.ok {
		ok += n
	}
	return ok, l.errs, l.longest
}
