package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/spooky-lb/spooky/cid"
	"github.com/spooky-lb/spooky/forwarder"
	"github.com/spooky-lb/spooky/test/netns"
)

// The proxy lab: spooky (forwarding: proxy) on the load balancer host,
// the backends on a subnet of their own (198.18.2.0/24, 2001:db8:2::/64,
// on their lo) that only the load balancer routes to, through each
// backend's address on the shared link. The client reaches the VIPs
// through the load balancer and cannot reach the backends at all, so
// every datagram it exchanges with a backend went through spooky's
// sockets.

// proxyCID4 is the IPv4 service's plaintext QUIC-LB config; proxyCID6 the
// IPv6 service's encrypted one, which the proxy decrypts with the key.
var (
	proxyCID4 = cid.Config{ID: 0, ServerIDLen: 2, NonceLen: 8}
	proxyCID6 = cid.Config{ID: 1, ServerIDLen: 2, NonceLen: 8,
		Key: []byte{0x8f, 0x95, 0xf0, 0x92, 0x45, 0x76, 0x5f, 0x80, 0x25, 0x69, 0x34, 0xe5, 0x0c, 0x66, 0x20, 0x7f}}
)

// proxyBackendPort is where the backends listen: not the VIP's port,
// which only forwarding: proxy can change.
const proxyBackendPort = 4433

// proxyBackendAddr is backend i's address of vip's family.
func proxyBackendAddr(i int, vip netip.AddrPort) netip.Addr {
	if vip.Addr().Is6() {
		return netip.MustParseAddr(fmt.Sprintf("2001:db8:2::%x", i+1))
	}
	return netip.AddrFrom4([4]byte{198, 18, 2, byte(i + 1)})
}

type proxyLab struct {
	*netns.Lab
	cfgPath    string
	vip4, vip6 netip.AddrPort
	names      []string
	spooky     *spookyProc
}

func (x *proxyLab) vips() []netip.AddrPort { return []netip.AddrPort{x.vip4, x.vip6} }

func (x *proxyLab) adminSocket() string { return filepath.Join(filepath.Dir(x.cfgPath), "admin.sock") }

// mustProxyLab builds the lab with spooky-backends on every backend host
// (one per VIP family) and writes the config; spooky is not started.
func mustProxyLab(t *testing.T, xdp bool) *proxyLab {
	t.Helper()
	opts := netns.Config{Backends: len(xdpWeights)}
	if xdp {
		// spooky attach runs native XDP on the load balancer's eth0 (for
		// an l2dsr service beside the proxy ones): the client's checksum
		// offload goes off and the peer gets an XDP program (lab-facts).
		opts.Client = netns.HostOptions{TxChecksumOff: true}
		opts.LB = netns.HostOptions{PeerXDP: true, MountNS: true}
	}
	lab := netns.New(t, opts)
	x := &proxyLab{
		Lab:     lab,
		cfgPath: filepath.Join(t.TempDir(), "spooky.yaml"),
		vip4:    netip.AddrPortFrom(netns.VIPv4, vipPort),
		vip6:    netip.AddrPortFrom(netns.VIPv6, vipPort),
	}
	for _, vip := range x.vips() {
		gw := netns.LBIPv4
		if vip.Addr().Is6() {
			gw = netns.LBIPv6
		}
		if err := lab.Client.AddRoute(netip.PrefixFrom(vip.Addr(), vip.Addr().BitLen()), gw); err != nil {
			t.Fatal(err)
		}
	}
	for i, h := range lab.Backends {
		x.names = append(x.names, h.Name)
		for _, vip := range x.vips() {
			addr := proxyBackendAddr(i, vip)
			// AddVIP puts the address on lo; it is the backend's own
			// address here, on a subnet only the load balancer routes.
			if err := h.AddVIP(addr); err != nil {
				t.Fatal(err)
			}
			via := h.IPv4
			c := proxyCID4
			if vip.Addr().Is6() {
				via, c = h.IPv6, proxyCID6
			}
			if err := lab.LB.AddRoute(netip.PrefixFrom(addr, addr.BitLen()), via); err != nil {
				t.Fatal(err)
			}
			mustStartBackend(t, h, h.Name, netip.AddrPortFrom(addr, proxyBackendPort), c, serverID(i))
		}
	}
	x.writeConfig(t, []int{0, 1, 2}, xdp)
	return x
}

// writeConfig writes one proxy service per VIP family with the given
// backends, and with xdp an l2dsr service that XDP serves beside them.
func (x *proxyLab) writeConfig(tb testing.TB, backends []int, xdp bool) {
	tb.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "log:\n  level: debug\nadmin:\n  socket: %s\nservices:\n", x.adminSocket())
	if xdp {
		fmt.Fprintf(&b, "  - {name: dsr, address: 198.18.0.20, port: 443, backends: [{name: b0, address: %s}]}\n", netns.BackendIPv4(0))
	}
	for _, vip := range x.vips() {
		name, c := "web4", proxyCID4
		if vip.Addr().Is6() {
			name, c = "web6", proxyCID6
		}
		fmt.Fprintf(&b, "  - name: %s\n    address: %q\n    port: %d\n    forwarding: proxy\n    hash: 4-tuple\n    strict: true\n", name, vip.Addr(), vip.Port())
		fmt.Fprintf(&b, "    cid:\n      - {config_id: %d, server_id_len: %d, nonce_len: %d", c.ID, c.ServerIDLen, c.NonceLen)
		if c.Key != nil {
			fmt.Fprintf(&b, ", key: %x", c.Key)
		}
		b.WriteString("}\n    backends:\n")
		for _, i := range backends {
			fmt.Fprintf(&b, "      - {name: %s, address: %q, port: %d, weight: %d, server_id: \"%x\"}\n",
				x.names[i], proxyBackendAddr(i, vip), proxyBackendPort, xdpWeights[i], serverID(i))
		}
	}
	if err := os.WriteFile(x.cfgPath, []byte(b.String()), 0o600); err != nil {
		tb.Fatal(err)
	}
}

// expectedShares returns each backend's share of vip's Maglev table.
func (x *proxyLab) expectedShares(tb testing.TB, vip netip.AddrPort) map[string]float64 {
	tb.Helper()
	var ring []forwarder.MaglevBackend
	for i := range x.Backends {
		ring = append(ring, forwarder.MaglevBackend{Key: proxyBackendAddr(i, vip).String(), Weight: uint32(xdpWeights[i])})
	}
	table, err := forwarder.BuildMaglev(ring, 65537)
	if err != nil {
		tb.Fatal(err)
	}
	counts := make([]int, len(ring))
	for _, e := range table {
		counts[e]++
	}
	shares := map[string]float64{}
	for i, n := range counts {
		shares[x.names[i]] = float64(n) / float64(len(table))
	}
	return shares
}

// mustProxyStats returns `spooky stats --proxy --json` of the lab's daemon.
func (x *proxyLab) mustProxyStats(tb testing.TB) *forwarder.ProxyStats {
	tb.Helper()
	out, errOut, code := runSpooky(tb, x.LB, "stats", "--proxy", "--json", "--admin", x.adminSocket())
	if code != 0 {
		tb.Fatalf("spooky stats --proxy: exit %d: %s", code, errOut)
	}
	var st forwarder.ProxyStats
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		tb.Fatalf("spooky stats --proxy --json: %v\n%s", err, out)
	}
	return &st
}

func proxyBackendStats(st *forwarder.ProxyStats, service, name string) forwarder.ProxyBackendStats {
	for _, b := range st.Backends {
		if b.Service == service && b.Name == name {
			return b
		}
	}
	return forwarder.ProxyBackendStats{}
}

func serviceOf(vip netip.AddrPort) string {
	if vip.Addr().Is6() {
		return "web6"
	}
	return "web4"
}

// mustConnsToEveryBackend opens connections to vip until every backend
// answers one.
func (x *proxyLab) mustConnsToEveryBackend(tb testing.TB, vip netip.AddrPort) map[string]*h3Conn {
	tb.Helper()
	conns := map[string]*h3Conn{}
	for range 60 {
		c := mustDialH3(tb, x.Client, vip)
		if conns[c.backend] == nil {
			conns[c.backend] = c
		} else {
			_ = c.conn.CloseWithError(0, "")
		}
		if len(conns) == len(x.Backends) {
			return conns
		}
	}
	tb.Fatalf("60 connections to %s reached only %d backends", vip, len(conns))
	return nil
}

// TestProxyModeUnderAttach runs real HTTP/3 clients through `spooky
// attach` serving two proxy-mode services (IPv4 with plaintext CIDs, IPv6
// with encrypted ones) beside an XDP service, to spooky-backends that only
// the load balancer can reach. The subtests share the lab; order matters.
func TestProxyModeUnderAttach(t *testing.T) {
	x := mustProxyLab(t, true)
	x.spooky = mustStartSpooky(t, x.LB, x.cfgPath)
	x.spooky.mustWaitLog(t, "msg=\"proxy serving\"", 2)

	for _, vip := range x.vips() {
		t.Run("new connections spread by weight and each stays on one backend over "+family(vip), func(t *testing.T) {
			const conns, requests = 300, 3
			before := x.mustProxyStats(t)
			r := mustRunClient(t, x.Client, vip, conns, requests)
			after := x.mustProxyStats(t)
			if r.Failed != 0 || r.OK != conns*requests {
				t.Errorf("%d of %d requests failed: %v", r.Failed, r.Requests, r.Errors)
			}
			if r.SwitchedConns != 0 {
				t.Errorf("switched_connections = %d, want 0", r.SwitchedConns)
			}
			for name, want := range x.expectedShares(t, vip) {
				got := float64(r.ConnBackends[name]) / conns
				tol := binomialTolerance(want, conns, 4.5)
				t.Logf("%s: %d of %d connections, share %.3f, want %.3f ± %.3f", name, r.ConnBackends[name], conns, got, want, tol)
				if math.Abs(got-want) > tol {
					t.Errorf("%s got share %.3f of new connections, want %.3f ± %.3f", name, got, want, tol)
				}
			}
			// Each connection has a client port of its own, so a session
			// of its own; a datagram of a connection decided to another
			// backend would have opened a second session. So: exactly one
			// session per connection, and each backend has as many new
			// sessions as it answered connections.
			if got := after.Events["sessions_created"] - before.Events["sessions_created"]; got != conns {
				t.Errorf("%d sessions opened for %d connections: some connection's datagrams went to two backends", got, conns)
			}
			svc := serviceOf(vip)
			for _, name := range x.names {
				b, a := proxyBackendStats(before, svc, name), proxyBackendStats(after, svc, name)
				if got := a.Sessions - b.Sessions; got != int64(r.ConnBackends[name]) {
					t.Errorf("%s: %d new sessions, but answered %d connections", name, got, r.ConnBackends[name])
				}
				if a.Packets == b.Packets || a.Replies == b.Replies {
					t.Errorf("%s: packets %d→%d, replies %d→%d: want both counted", name, b.Packets, a.Packets, b.Replies, a.Replies)
				}
			}
		})
	}

	for _, vip := range x.vips() {
		t.Run("a client that migrates to a new port keeps its backend over "+family(vip), func(t *testing.T) {
			c := mustDialH3(t, x.Client, vip)
			before := x.mustProxyStats(t)
			sockB := mustUDPSocket(t, x.Client, clientAddr(vip))
			trB := &quic.Transport{Conn: sockB}
			t.Cleanup(func() { _ = trB.Close() })
			defer c.conn.CloseWithError(0, "")
			newAddr := sockB.LocalAddr().(*net.UDPAddr).AddrPort()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			path, err := c.conn.AddPath(trB)
			if err != nil {
				t.Fatalf("add path: %v", err)
			}
			// The new path uses a new connection ID (RFC 9000 §9.5), and
			// the proxy has no session for the new port: only the CID's
			// server ID (decrypted for IPv6) brings it to the same backend.
			if err := path.Probe(ctx); err != nil {
				t.Fatalf("probe path from %s: %v", newAddr, err)
			}
			if err := path.Switch(); err != nil {
				t.Fatalf("switch to path from %s: %v", newAddr, err)
			}
			for i := range 5 {
				b, err := c.get(ctx)
				if err != nil {
					t.Fatalf("request %d after migrating to %s: %v", i, newAddr, err)
				}
				if b != c.backend {
					t.Fatalf("request %d after migrating to %s answered by %s, before by %s", i, newAddr, b, c.backend)
				}
			}
			after := x.mustProxyStats(t)
			svc := serviceOf(vip)
			if got := proxyBackendStats(after, svc, c.backend).Sessions - proxyBackendStats(before, svc, c.backend).Sessions; got < 1 {
				t.Errorf("%s has %d new sessions after the migration, want the new port's", c.backend, got)
			}
			reason := "cid_unknown_server" // never: a plaintext server ID of the config
			if vip.Addr().Is6() {
				reason = "cid_cache_miss" // decrypted: the first datagram misses the cache
			}
			if vip.Addr().Is6() && after.Reasons[reason] == before.Reasons[reason] {
				t.Errorf("reason %s did not rise: the new port's encrypted connection ID was not decrypted", reason)
			}
			if vip.Addr().Is4() && after.Reasons[reason] != before.Reasons[reason] {
				t.Errorf("reason %s rose: a connection ID named no backend", reason)
			}
		})
	}

	t.Run("a burst of 20000 garbage datagrams is counted and fails no request", func(t *testing.T) {
		var conns []*h3Conn
		for _, vip := range x.vips() {
			for _, c := range x.mustConnsToEveryBackend(t, vip) {
				conns = append(conns, c)
			}
		}
		loop := startRequestLoop(conns)
		defer loop.stop()
		loop.mustWaitRequests(t, 2)
		before := x.mustProxyStats(t)
		var sent garbageCounts
		for round := range 20 {
			vip := x.vips()[round%2]
			sent.add(mustSendGarbage(t, x.Client, vip, 1000))
			// Paced by what spooky has counted, so that a slow
			// scheduler cannot make the kernel drop the burst unseen.
			mustPoll(t, "spooky counted the garbage", func() bool {
				st := x.mustProxyStats(t)
				return st.Events["from_clients"]-before.Events["from_clients"] >= uint64(sent.total)
			})
		}
		loop.mustWaitRequests(t, 3)
		after := x.mustProxyStats(t)
		ok, failures := loop.stop()
		delta := func(m func(*forwarder.ProxyStats) map[string]uint64, k string) uint64 {
			return m(after)[k] - m(before)[k]
		}
		events := func(s *forwarder.ProxyStats) map[string]uint64 { return s.Events }
		reasons := func(s *forwarder.ProxyStats) map[string]uint64 { return s.Reasons }
		t.Logf("sent %d garbage datagrams (%d not QUIC, %d with a DCID over 20 octets); from_clients +%d, drop_not_quic_strict +%d, cid_too_long +%d, drop_no_backend +%d; %d requests ok meanwhile",
			sent.total, sent.notQUIC, sent.tooLongCID, delta(events, "from_clients"), delta(reasons, "drop_not_quic_strict"),
			delta(reasons, "cid_too_long"), delta(events, "drop_no_backend"), ok)
		if sent.total != 20000 {
			t.Fatalf("sent %d, want 20000", sent.total)
		}
		if got := delta(reasons, "drop_not_quic_strict"); got < uint64(sent.notQUIC) {
			t.Errorf("drop_not_quic_strict rose by %d, want at least %d", got, sent.notQUIC)
		}
		if got := delta(events, "drop_no_backend"); got < uint64(sent.notQUIC) {
			t.Errorf("drop_no_backend rose by %d, want at least %d", got, sent.notQUIC)
		}
		if got := delta(reasons, "cid_too_long"); got < uint64(sent.tooLongCID) {
			t.Errorf("cid_too_long rose by %d, want at least %d", got, sent.tooLongCID)
		}
		if len(failures) > 0 {
			t.Errorf("%d requests failed during the burst: %v", len(failures), failures)
		}
	})

	t.Run("spooky stats --proxy prints the backends and reasons", func(t *testing.T) {
		out, errOut, code := runSpooky(t, x.LB, "stats", "--proxy", "--admin", x.adminSocket())
		if code != 0 {
			t.Fatalf("spooky stats --proxy: exit %d: %s", code, errOut)
		}
		for _, want := range []string{"web4/" + x.names[0], "web6/" + x.names[2], "drop_not_quic_strict", "sessions_created", x.vip6.String()} {
			if !strings.Contains(out, want) {
				t.Errorf("no %q in:\n%s", want, out)
			}
		}
	})

	t.Run("a reload that removes a backend closes its sessions and keeps the others", func(t *testing.T) {
		const removed = 1
		name := x.names[removed]
		conns := map[netip.AddrPort]map[string]*h3Conn{}
		for _, vip := range x.vips() {
			conns[vip] = x.mustConnsToEveryBackend(t, vip)
		}
		for _, byName := range conns {
			_ = byName[name].conn.CloseWithError(0, "")
		}
		before := x.mustProxyStats(t)
		x.writeConfig(t, []int{0, 2}, true)
		if err := x.spooky.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		mustPoll(t, "the proxy drops "+name, func() bool {
			st := x.mustProxyStats(t)
			return proxyBackendStats(st, "web4", name).Name == "" && proxyBackendStats(st, "web6", name).Name == ""
		})
		after := x.mustProxyStats(t)
		if after.Events["sessions_closed"] == before.Events["sessions_closed"] {
			t.Errorf("no session was closed when %s was removed", name)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		for vip, byName := range conns {
			for b, c := range byName {
				if b == name {
					continue
				}
				for i := range 3 {
					if got, err := c.get(ctx); err != nil || got != b {
						t.Errorf("request %d to %s on a connection to %s after the reload: %q, %v", i, vip, b, got, err)
					}
				}
			}
			r := mustRunClient(t, x.Client, vip, 40, 1)
			if r.Failed != 0 || r.ConnBackends[name] != 0 {
				t.Errorf("new connections to %s after the reload: %d failed, %d reached the removed %s", vip, r.Failed, r.ConnBackends[name], name)
			}
		}
	})

	t.Run("SIGTERM stops spooky cleanly and removes the local routes it added", func(t *testing.T) {
		if !strings.Contains(localRoutes(t, x.LB), netns.VIPv4.String()) {
			t.Fatalf("no local route for %s while serving:\n%s", netns.VIPv4, localRoutes(t, x.LB))
		}
		if err := x.spooky.stop(); err != nil {
			t.Fatal(err)
		}
		routes := localRoutes(t, x.LB)
		for _, vip := range x.vips() {
			if strings.Contains(routes, vip.Addr().String()+" ") {
				t.Errorf("the local route of %s outlived spooky:\n%s", vip.Addr(), routes)
			}
		}
	})
}

// localRoutes lists the destinations of h's routes in table local, as
// `ip route show table local` would (one per line, "ADDR " each), read
// through netlink: CI has no iproute2.
func localRoutes(tb testing.TB, h *netns.Host) string {
	tb.Helper()
	var out strings.Builder
	err := h.Do(func() error {
		routes, err := netlink.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_LOCAL}, netlink.RT_FILTER_TABLE)
		if err != nil {
			return err
		}
		for _, r := range routes {
			if r.Dst != nil {
				fmt.Fprintf(&out, "%s %s\n", r.Dst.IP, r.Dst)
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatalf("list local routes in %s: %v", h, err)
	}
	return out.String()
}

// loAddrs lists the addresses on h's lo.
func loAddrs(tb testing.TB, h *netns.Host) string {
	tb.Helper()
	var out strings.Builder
	err := h.Do(func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		addrs, err := netlink.AddrList(lo, netlink.FAMILY_ALL)
		for _, a := range addrs {
			fmt.Fprintln(&out, a.IP)
		}
		return err
	})
	if err != nil {
		tb.Fatalf("list lo's addresses in %s: %v", h, err)
	}
	return out.String()
}

// TestProxyModeUnderServe runs the proxy under `spooky serve` (no XDP at
// all), with the IPv6 VIP already on the load balancer's lo, as an
// operator may have put it: spooky must serve it as it is and leave it.
func TestProxyModeUnderServe(t *testing.T) {
	x := mustProxyLab(t, false)
	if err := x.LB.AddVIP(netns.VIPv6); err != nil {
		t.Fatal(err)
	}
	d := mustStartDaemon(t, x.LB, "proxy serving", "serve", "-c", x.cfgPath)
	d.mustLog(t, "service=web6")
	for _, vip := range x.vips() {
		r := mustRunClient(t, x.Client, vip, 30, 2)
		if r.Failed != 0 || len(r.ConnBackends) != len(x.Backends) {
			t.Errorf("%s: %d of %d requests failed, backends %v", vip, r.Failed, r.Requests, r.ConnBackends)
		}
	}
	st := x.mustProxyStats(t)
	for _, s := range st.Services {
		if want := s.VIP.Addr() == netns.VIPv4; s.LocalRoute != want {
			t.Errorf("service %s: local route added %v, want %v (the IPv6 VIP is already on lo)", s.Service, s.LocalRoute, want)
		}
	}
	d.mustStop(t)
	if out := loAddrs(t, x.LB); !strings.Contains(out, netns.VIPv6.String()+"\n") {
		t.Errorf("the operator's %s on lo is gone after spooky stopped:\n%s", netns.VIPv6, out)
	}
	if routes := localRoutes(t, x.LB); strings.Contains(routes, netns.VIPv4.String()+" ") {
		t.Errorf("the local route of %s outlived spooky:\n%s", netns.VIPv4, routes)
	}
}
