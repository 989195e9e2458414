package integration

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/quic-go/quic-go"

	"github.com/spooky-lb/spooky/cid"
	"github.com/spooky-lb/spooky/forwarder"
	"github.com/spooky-lb/spooky/test/netns"
)

// Encrypted QUIC-LB configs (draft-21 §5.4): a server ID and nonce of 16
// octets together are one AES block (single pass); shorter ones take the
// four-pass Feistel construction.
var (
	slowSinglePass = cid.Config{ID: 1, ServerIDLen: 2, NonceLen: 14,
		Key: []byte{0x8f, 0x95, 0xf0, 0x92, 0x45, 0x76, 0x5f, 0x80, 0x25, 0x69, 0x34, 0xe5, 0x0c, 0x66, 0x20, 0x7f}}
	slowFourPass = cid.Config{ID: 2, ServerIDLen: 2, NonceLen: 6,
		Key: []byte{0x1c, 0x2d, 0x3e, 0x4f, 0x5a, 0x6b, 0x7c, 0x8d, 0x9e, 0x0f, 0x1a, 0x2b, 0x3c, 0x4d, 0x5e, 0x6f}}
)

func TestSlowPathSinglePassInL2DSRMode(t *testing.T) { testSlowPath(t, "l2dsr", slowSinglePass) }

func TestSlowPathFourPassInIPIPMode(t *testing.T) { testSlowPath(t, "ipip", slowFourPass) }

// testSlowPath runs HTTP/3 clients through `spooky attach` to backends
// that issue encrypted routable CIDs, which XDP cannot decode: the first
// datagram of each DCID goes to Go over AF_XDP, which decrypts it, forwards
// it and fills cid_cache; the rest stay in XDP.
func testSlowPath(t *testing.T, forwarding string, cfg cid.Config) {
	x := mustXDPLabWith(t, forwarding, xdpLabOptions{cid: cfg})
	vips := []netip.AddrPort{x.vip4, x.vip6}
	dec, err := cid.NewDecoder(cfg)
	if err != nil {
		t.Fatal(err)
	}

	for _, vip := range vips {
		t.Run("every connection stays on one backend, its DCIDs decrypted once by the slow path and then found in cid_cache over "+family(vip), func(t *testing.T) {
			const conns, requests = 60, 5
			before := mustSettledVIPStats(t, x, vip)
			caps := x.mustCaptureBackends(t)
			r := mustRunClient(t, x.Client, vip, conns, requests)
			frames := caps.mustStopFrames(t)
			seen := tuplesOf(frames, vip)
			after := mustSettledVIPStats(t, x, vip)

			if r.Failed != 0 || r.OK != conns*requests {
				t.Errorf("%d of %d requests failed: %v", r.Failed, r.Requests, r.Errors)
			}
			if len(r.ConnBackends) < 2 {
				t.Errorf("connections reached only %v", r.ConnBackends)
			}
			for src, by := range seen {
				if len(by) != 1 {
					t.Errorf("datagrams from %s reached %d backends: %v", src, len(by), by)
				}
			}
			if len(seen) != conns {
				t.Errorf("captures saw %d client ports, want %d", len(seen), conns)
			}
			// Every short header the backends received carries a DCID
			// they issued, and so do long headers after the client's
			// first Initial; count the distinct ones.
			dcids := map[string]bool{}
			for _, fr := range frames {
				d, ok := netns.ParseUDP(decapsulated(fr.Data.Data))
				if !ok || d.Dst != vip {
					continue
				}
				h, err := cid.ParseHeader(d.Payload, cfg.Len())
				if err != nil {
					continue
				}
				sid, err := dec.ServerID(nil, h.DCID)
				valid := err == nil && len(h.DCID) == cfg.Len() && sid[0] == 0 && sid[1] >= 1 && int(sid[1]) <= len(x.Backends)
				if !h.Long && !valid {
					t.Errorf("%s received a short header with DCID %x, which does not decode to a backend (%x, %v)", fr.host, h.DCID, sid, err)
				}
				if valid {
					dcids[string(h.DCID)] = true
				}
			}
			slowCID := after.SlowPath.CID - before.SlowPath.CID
			byCache := after.CIDCache - before.CIDCache
			t.Logf("%d distinct DCIDs; slow path: %d redirected, %d decrypted, %d by Go's cache, %d by flow, %d by maglev; XDP: %d by cid_cache; %d entries cached, hit ratio %.3f",
				len(dcids), after.SlowPath.Redirected-before.SlowPath.Redirected, slowCID, after.SlowPath.CIDCache-before.SlowPath.CIDCache,
				after.SlowPath.Flow-before.SlowPath.Flow, after.SlowPath.Maglev-before.SlowPath.Maglev, byCache,
				after.SlowPath.CacheEntries, after.SlowPath.HitRatio)
			if slowCID < conns {
				t.Errorf("the slow path decrypted %d DCIDs, want one at least per connection (%d)", slowCID, conns)
			}
			if slowCID > uint64(len(dcids)) {
				t.Errorf("the slow path decrypted %d DCIDs, more than the %d distinct ones: a DCID was decrypted twice", slowCID, len(dcids))
			}
			if byCache < slowCID {
				t.Errorf("XDP found %d datagrams in cid_cache, fewer than the %d the slow path decrypted", byCache, slowCID)
			}
			if after.SlowPath.Limited != before.SlowPath.Limited {
				t.Errorf("%d misses were over the limit", after.SlowPath.Limited-before.SlowPath.Limited)
			}
		})
	}

	for _, vip := range vips {
		t.Run("a client that migrates to a new port keeps its backend with the flow table cleared over "+family(vip), func(t *testing.T) {
			c := mustDialH3(t, x.Client, vip)
			caps := x.mustCaptureBackends(t)
			sockB := mustUDPSocket(t, x.Client, clientAddr(vip))
			trB := &quic.Transport{Conn: sockB}
			t.Cleanup(func() { _ = trB.Close() })
			defer c.conn.CloseWithError(0, "")
			newAddr := sockB.LocalAddr().(*net.UDPAddr).AddrPort()
			// Only the routable CID can carry the new path now.
			mustClearFlows(t, x)
			before := mustSettledVIPStats(t, x, vip)

			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			path, err := c.conn.AddPath(trB)
			if err != nil {
				t.Fatalf("add path: %v", err)
			}
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
			seen := caps.mustStopTuples(t, vip)
			if by := seen[newAddr]; len(by) != 1 || by[c.backend] == 0 {
				t.Errorf("datagrams from the new port %s reached %v, want only %s", newAddr, by, c.backend)
			}
			// The new path's connection ID (RFC 9000 §9.5) was new to
			// cid_cache: the slow path decrypted it.
			if after := mustSettledVIPStats(t, x, vip); after.SlowPath.CID == before.SlowPath.CID {
				t.Error("the slow path decrypted no DCID while the client migrated")
			}
		})
	}

	t.Run("a restart of spooky attach keeps cid_cache: established connections need no decryption", func(t *testing.T) {
		conns := x.mustConnsToEveryBackendOf(t, vips)
		loop := startRequestLoop(conns)
		loop.mustWaitRequests(t, 3)
		before := mustSettledStats(t, x)
		if err := x.spooky.stop(); err != nil {
			t.Fatal(err)
		}
		x.spooky = mustStartSpooky(x.tb, x.LB, x.cfgPath, x.opts.attach...)
		loop.mustWaitRequests(t, 5)
		_, failures := loop.stop()
		after := mustSettledStats(t, x)
		if len(failures) > 0 {
			t.Errorf("%d requests failed or changed backend across the restart: %v", len(failures), failures)
		}
		for i, v := range after.VIPs {
			b := before.VIPs[i]
			t.Logf("%s: %d cached DCIDs before the restart, %d after; decrypted %d before, %d after", v.Service,
				b.SlowPath.CacheEntries, v.SlowPath.CacheEntries, b.SlowPath.CID, v.SlowPath.CID)
			if v.SlowPath.CacheEntries < b.SlowPath.CacheEntries {
				t.Errorf("%s: cid_cache held %d entries before the restart and %d after", v.Service, b.SlowPath.CacheEntries, v.SlowPath.CacheEntries)
			}
			if v.SlowPath.CID != b.SlowPath.CID {
				t.Errorf("%s: the slow path decrypted %d DCIDs after the restart: the established connections' were not cached", v.Service, v.SlowPath.CID-b.SlowPath.CID)
			}
		}
	})

	t.Run("a load balancer with an empty cid_cache and flow table takes over every established connection", func(t *testing.T) {
		conns := x.mustConnsToEveryBackendOf(t, vips)
		loop := startRequestLoop(conns)
		loop.mustWaitRequests(t, 3)
		// What a second spooky host that the route moves to would hold:
		// nothing. Detach drops every pinned map, cid_cache included.
		if err := x.spooky.stop(); err != nil {
			t.Fatal(err)
		}
		if out, errOut, code := runSpooky(t, x.LB, "detach", x.LB.Iface); code != 0 {
			t.Fatalf("spooky detach: exit %d: %s%s", code, out, errOut)
		}
		// The lab's test owns the new process, as it did the old one.
		x.spooky = mustStartSpooky(x.tb, x.LB, x.cfgPath, x.opts.attach...)
		loop.mustWaitRequests(t, 10)
		ok, failures := loop.stop()
		// The gap while no program was attached loses datagrams, which
		// QUIC retransmits; no request may fail or change backend.
		if len(failures) > 0 {
			t.Errorf("%d requests failed or changed backend: %v", len(failures), failures)
		}
		// The new maps count from zero: each connection's DCID was
		// decrypted by the slow path, then found in cid_cache.
		for _, vip := range vips {
			v := mustSettledVIPStats(t, x, vip)
			t.Logf("%s after the takeover: %d decrypted by the slow path, %d by cid_cache", v.Service, v.SlowPath.CID, v.CIDCache)
			if v.SlowPath.CID < uint64(len(x.Backends)) || v.CIDCache == 0 {
				t.Errorf("%s: %d decrypted, %d by cid_cache: the %d connections did not go through the slow path to the cache",
					v.Service, v.SlowPath.CID, v.CIDCache, len(x.Backends))
			}
		}
		t.Logf("%d requests on %d connections", ok, len(conns))
	})

	t.Run("a flood of made-up DCIDs is limited and fails no request", func(t *testing.T) {
		// A low limit, so that the flood meets it.
		x.opts.top = "slow_path: {rate: 2000, burst: 32}\n"
		x.writeConfig(t, []int{0, 1, 2})
		if _, errOut, code := runSpooky(t, x.LB, "reload", "--admin", x.adminSocket()); code != 0 {
			t.Fatalf("spooky reload: exit %d: %s", code, errOut)
		}
		conns := x.mustConnsToEveryBackendOf(t, vips)
		loop := startRequestLoop(conns)
		loop.mustWaitRequests(t, 3)
		before := mustSettledStats(t, x)
		const flood = 50_000
		mustFlood(t, x.Client, vips, cfg, flood)
		loop.mustWaitRequests(t, 5)
		ok, failures := loop.stop()
		after := mustSettledStats(t, x)
		if len(failures) > 0 {
			t.Errorf("%d requests failed during the flood: %v", len(failures), failures)
		}
		var limited, redirected uint64
		for i, v := range after.VIPs {
			limited += v.SlowPath.Limited - before.VIPs[i].SlowPath.Limited
			redirected += v.SlowPath.Redirected - before.VIPs[i].SlowPath.Redirected
			t.Logf("%s: %d entries in cid_cache", v.Service, v.SlowPath.CacheEntries)
		}
		t.Logf("flood of %d: %d redirected to the slow path, %d over the limit; %d requests on held connections", flood, redirected, limited, ok)
		if limited == 0 {
			t.Error("no datagram of the flood was over the slow path's limit")
		}
		if redirected+limited < flood/2 {
			t.Errorf("only %d of the %d datagrams were cid_cache misses", redirected+limited, flood)
		}
	})
}

// mustSettledStats returns spooky stats once Go has counted every
// datagram XDP had redirected to it when called: decided by the slow
// path, or dropped by the kernel on the way (drop_slow_path_ring). The
// slow path writes its counters to the maps a moment after it forwards;
// with traffic still flowing, Go's counts may run ahead of the target.
func mustSettledStats(tb testing.TB, x *xdpLab) *forwarder.Stats {
	tb.Helper()
	return mustSettledStatsOn(tb, x.LB)
}

// mustSettledStatsOn is mustSettledStats of the spooky on host h.
func mustSettledStatsOn(tb testing.TB, h *netns.Host) *forwarder.Stats {
	tb.Helper()
	var target uint64
	for _, v := range mustStats(tb, h).VIPs {
		target += v.SlowPath.Redirected
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := mustStats(tb, h)
		var done uint64
		for _, v := range st.VIPs {
			s := v.SlowPath
			done += s.CID + s.CIDCache + s.Flow + s.Maglev + s.NotForwarded
		}
		done += st.SlowPathReasons["drop_slow_path_ring"]
		if done >= target {
			return st
		}
		if time.Now().After(deadline) {
			tb.Fatalf("the slow path counted %d datagrams, XDP had redirected %d: %+v", done, target, st.VIPs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// mustSettledVIPStats returns the settled counters of the VIP at vip.
func mustSettledVIPStats(tb testing.TB, x *xdpLab, vip netip.AddrPort) forwarder.VIPStats {
	tb.Helper()
	for _, v := range mustSettledStats(tb, x).VIPs {
		if v.Address == vip {
			return v
		}
	}
	tb.Fatalf("spooky stats has no VIP %s", vip)
	return forwarder.VIPStats{}
}

// hostFrame is a frame a backend capture saw, and the backend.
type hostFrame struct {
	host string
	Data netns.Frame
}

// mustStopFrames stops the captures and returns the frames each received.
func (caps backendCaptures) mustStopFrames(tb testing.TB) []hostFrame {
	tb.Helper()
	var out []hostFrame
	for name, c := range caps {
		frames, err := c.Stop()
		if err != nil {
			tb.Fatalf("capture on %s: %v", name, err)
		}
		for _, f := range frames {
			if !f.Outgoing {
				out = append(out, hostFrame{name, f})
			}
		}
	}
	return out
}

// tuplesOf returns, for every client address and port that sent to vip,
// the backends that received its datagrams and how many each received.
func tuplesOf(frames []hostFrame, vip netip.AddrPort) map[netip.AddrPort]map[string]int {
	seen := map[netip.AddrPort]map[string]int{}
	for _, f := range frames {
		d, ok := netns.ParseUDP(decapsulated(f.Data.Data))
		if !ok || d.Dst != vip {
			continue
		}
		if seen[d.Src] == nil {
			seen[d.Src] = map[string]int{}
		}
		seen[d.Src][f.host]++
	}
	return seen
}

// mustClearFlows empties every CPU's flow_cache of the running spooky.
func mustClearFlows(tb testing.TB, x *xdpLab) {
	tb.Helper()
	path := fmt.Sprintf("/proc/%d/root%s", x.spooky.cmd.Process.Pid, filepath.Join(forwarder.PinDir("", netns.HostIface), "flow_cache"))
	m, err := ebpf.LoadPinnedMap(path, nil)
	if err != nil {
		tb.Fatalf("open pinned flow_cache: %v", err)
	}
	defer m.Close()
	n := int(m.MaxEntries())
	keys := make([]uint32, n)
	for i := range keys {
		keys[i] = uint32(i)
	}
	if m.ValueSize() != 32 {
		tb.Fatalf("flow_cache entries are %d octets, this test clears 32", m.ValueSize())
	}
	if _, err := m.BatchUpdate(keys, make([][32]byte, n), nil); err != nil {
		tb.Fatalf("clear flow_cache: %v", err)
	}
}

// mustFlood sends n QUIC-shaped datagrams, long and short headers in
// turn, from the client host to the VIPs, each with a random DCID of the
// config's length and codepoint: the cid_cache misses an attacker who
// does not know the key can make.
func mustFlood(tb testing.TB, h *netns.Host, vips []netip.AddrPort, cfg cid.Config, n int) {
	tb.Helper()
	err := h.Do(func() error {
		var socks []*net.UDPConn
		for _, vip := range vips {
			s, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(vip))
			if err != nil {
				return err
			}
			defer s.Close()
			socks = append(socks, s)
		}
		buf := make([]byte, 64)
		for i := range n {
			p := buf[:0]
			dcid := make([]byte, cfg.Len())
			_, _ = rand.Read(dcid)
			dcid[0] = cfg.ID<<5 | dcid[0]&0x1f
			if i%2 == 0 {
				p = append(p, 0xc0, 0, 0, 0, 1, byte(len(dcid)))
				p = append(p, dcid...)
				p = append(p, 0)
			} else {
				p = append(p, 0x40)
				p = append(p, dcid...)
			}
			p = append(p, make([]byte, 40)...)
			if _, err := socks[i%len(socks)].Write(p); err != nil && !strings.Contains(err.Error(), "refused") {
				return err
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatalf("flood: %v", err)
	}
}

// The XDP lab's scenarios with every datagram of the l4 VIPs decided in Go
// (spooky attach --dataplane userspace): XDP only redirects them to the
// AF_XDP sockets.
func TestUserspaceDataplaneInL2DSRMode(t *testing.T) {
	testXDPFastPathWith(t, "l2dsr", xdpLabOptions{attach: []string{"--dataplane", "userspace"}})
}

func TestUserspaceDataplaneInIPIPMode(t *testing.T) {
	testXDPFastPathWith(t, "ipip", xdpLabOptions{attach: []string{"--dataplane", "userspace"}})
}

// TestSlowPathRoutesBothConfigsOfARotation runs a config rotation
// (draft-21 §3.1): the VIPs carry an old and a new encrypted config, with
// their own codepoints and keys, and the backends issue CIDs of one or the
// other, as during the overlap. Every connection stays on its backend, and
// the slow path decrypts DCIDs of both codepoints.
func TestSlowPathRoutesBothConfigsOfARotation(t *testing.T) {
	x := mustXDPLabWith(t, "l2dsr", xdpLabOptions{rotation: []cid.Config{slowSinglePass, slowFourPass}})
	for _, vip := range []netip.AddrPort{x.vip4, x.vip6} {
		t.Run("connections over "+family(vip), func(t *testing.T) {
			const conns = 60
			caps := x.mustCaptureBackends(t)
			r := mustRunClient(t, x.Client, vip, conns, 3)
			frames := caps.mustStopFrames(t)
			after := mustSettledVIPStats(t, x, vip)
			if r.Failed != 0 {
				t.Errorf("%d of %d requests failed: %v", r.Failed, r.Requests, r.Errors)
			}
			for src, by := range tuplesOf(frames, vip) {
				if len(by) != 1 {
					t.Errorf("datagrams from %s reached %d backends: %v", src, len(by), by)
				}
			}
			// Short headers by codepoint, as the backends received them:
			// backend i issues CIDs of config rotation[i%2].
			byCodepoint := map[uint8]int{}
			for _, fr := range frames {
				d, ok := netns.ParseUDP(decapsulated(fr.Data.Data))
				if !ok || d.Dst != vip || len(d.Payload) < 2 || d.Payload[0]&0x80 != 0 {
					continue
				}
				byCodepoint[d.Payload[1]>>5]++
			}
			t.Logf("short headers by codepoint %v; backends %v; slow path decrypted %d", byCodepoint, r.ConnBackends, after.SlowPath.CID)
			for _, c := range []cid.Config{slowSinglePass, slowFourPass} {
				if byCodepoint[c.ID] == 0 {
					t.Errorf("no short header of codepoint %d reached a backend", c.ID)
				}
			}
			if after.SlowPath.CID < conns {
				t.Errorf("the slow path decrypted %d DCIDs for %d connections", after.SlowPath.CID, conns)
			}
		})
	}
}

// TestSlowPathSecondHostTakesOverEveryConnection moves the client's routes
// to the VIPs from one load balancer host to another whose spooky has
// never seen the connections (empty cid_cache and flow table), as a
// route change or an ECMP rehash does (DESIGN.md "Scale-out"): every
// established connection carries on at its backend, its DCIDs decrypted
// by the second host's slow path.
func TestSlowPathSecondHostTakesOverEveryConnection(t *testing.T) {
	x := mustXDPLabWith(t, "ipip", xdpLabOptions{cid: slowSinglePass, secondLB: true})
	vips := []netip.AddrPort{x.vip4, x.vip6}
	// The second host's config: the same services, its own admin socket.
	cfg2 := filepath.Join(filepath.Dir(x.cfgPath), "spooky-lb2.yaml")
	b, err := os.ReadFile(x.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	b = []byte(strings.Replace(string(b), x.adminSocket(), filepath.Join(filepath.Dir(x.cfgPath), "admin-lb2.sock"), 1))
	if err := os.WriteFile(cfg2, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := x.LB2.SetTxChecksum(false); err != nil { // as the first host's probes need
		t.Fatal(err)
	}
	spooky2 := mustStartSpooky(t, x.LB2, cfg2, x.opts.attach...)

	conns := x.mustConnsToEveryBackendOf(t, vips)
	loop := startRequestLoop(conns)
	loop.mustWaitRequests(t, 3)
	before := mustSettledStatsOn(t, x.LB2)
	for _, vip := range vips {
		gw := netns.LB2IPv4
		if vip.Addr().Is6() {
			gw = netns.LB2IPv6
		}
		pfx := netip.PrefixFrom(vip.Addr(), vip.Addr().BitLen())
		if out, err := x.Client.Command("ip", "route", "replace", pfx.String(), "via", gw.String()).CombinedOutput(); err != nil {
			t.Fatalf("move the route to %s to %s: %v: %s", vip, gw, err, out)
		}
	}
	loop.mustWaitRequests(t, 10)
	ok, failures := loop.stop()
	if len(failures) > 0 {
		t.Errorf("%d requests failed or changed backend after the route moved: %v", len(failures), failures)
	}
	after := mustSettledStatsOn(t, x.LB2)
	for i, v := range after.VIPs {
		b := before.VIPs[i]
		decrypted, hits := v.SlowPath.CID-b.SlowPath.CID, v.CIDCache-b.CIDCache
		t.Logf("%s on lb2: %d DCIDs decrypted by the slow path, then %d datagrams by cid_cache", v.Service, decrypted, hits)
		if decrypted < uint64(len(x.Backends)) || hits == 0 {
			t.Errorf("%s on lb2: %d decrypted, %d by cid_cache: the %d connections did not go through lb2's slow path to its cache",
				v.Service, decrypted, hits, len(x.Backends))
		}
	}
	t.Logf("%d requests on %d connections; lb2's log has %d lines", ok, len(conns), strings.Count(spooky2.log.String(), "\n"))
}

// TestSlowPathWithXDPInGenericMode runs the slow path behind XDP attached
// in generic (skb) mode, which every driver supports: the AF_XDP sockets
// work in copy mode there too.
func TestSlowPathWithXDPInGenericMode(t *testing.T) {
	x := mustXDPLabWith(t, "l2dsr", xdpLabOptions{cid: slowFourPass, attach: []string{"--xdp-mode", "generic"}})
	for _, vip := range []netip.AddrPort{x.vip4, x.vip6} {
		t.Run("connections over "+family(vip), func(t *testing.T) {
			const conns = 30
			caps := x.mustCaptureBackends(t)
			r := mustRunClient(t, x.Client, vip, conns, 3)
			seen := tuplesOf(caps.mustStopFrames(t), vip)
			v := mustSettledVIPStats(t, x, vip)
			if r.Failed != 0 {
				t.Errorf("%d of %d requests failed: %v", r.Failed, r.Requests, r.Errors)
			}
			for src, by := range seen {
				if len(by) != 1 {
					t.Errorf("datagrams from %s reached %d backends: %v", src, len(by), by)
				}
			}
			t.Logf("slow path decrypted %d, XDP by cid_cache %d", v.SlowPath.CID, v.CIDCache)
			if v.SlowPath.CID < conns || v.CIDCache == 0 {
				t.Errorf("decrypted %d DCIDs, %d datagrams by cid_cache: want one decryption per connection at least and cache hits", v.SlowPath.CID, v.CIDCache)
			}
		})
	}
}
