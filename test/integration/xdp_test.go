package integration

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/spooky-lb/spooky/test/netns"
)

func TestXDPFastPathInL2DSRMode(t *testing.T) { testXDPFastPath(t, "l2dsr") }

func TestXDPFastPathInIPIPMode(t *testing.T) { testXDPFastPath(t, "ipip") }

// testXDPFastPath runs real HTTP/3 clients through `spooky attach` (native
// XDP) to three spooky-backend processes of weights 100/200/300, over IPv4
// and IPv6, in one lab shared by the subtests; later subtests change the
// lab (restart, reload, detach), so the order matters.
func testXDPFastPath(t *testing.T, forwarding string) {
	testXDPFastPathWith(t, forwarding, xdpLabOptions{})
}

// testXDPFastPathWith runs the scenarios of testXDPFastPath in a lab with
// opts (spooky attach --dataplane userspace: every decision made in Go).
func testXDPFastPathWith(t *testing.T, forwarding string, opts xdpLabOptions) {
	x := mustXDPLabWith(t, forwarding, opts)
	vips := []netip.AddrPort{x.vip4, x.vip6}

	for _, vip := range vips {
		t.Run("new connections spread by weight and every packet of one reaches one backend over "+family(vip), func(t *testing.T) {
			// Each connection's 4-tuple (a random ephemeral port) hashes to
			// a uniform Maglev entry, so backend i's count of n connections
			// is Binomial(n, p_i) with p_i its share of the table (computed
			// from the same table spooky builds, ≈ weight share). We allow
			// 4.5 σ: a correct balancer fails a check with probability
			// < 7e-6. With n = 300 the tolerance is ≤ 0.13, less than the
			// 0.167 by which equal shares (1/3 each) would miss 1/6 and
			// 1/2, so ignoring weights fails the test.
			const conns, requests = 300, 3
			decapBefore := make([]uint64, len(x.Backends))
			if forwarding == "ipip" {
				for i := range x.Backends {
					decapBefore[i] = x.decapped(t, i)
				}
			}
			caps := x.mustCaptureBackends(t)
			r := mustRunClient(t, x.Client, vip, conns, requests)
			seen := caps.mustStopTuples(t, vip)

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

			// Capture: every client port's datagrams reached exactly one
			// backend, and each backend saw as many client ports as
			// connections it answered (each connection has its own
			// socket).
			ports := map[string]int{}
			for src, by := range seen {
				if len(by) != 1 {
					t.Errorf("datagrams from %s reached %d backends: %v", src, len(by), by)
				}
				for name := range by {
					ports[name]++
				}
			}
			if len(seen) != conns {
				t.Errorf("captures saw %d client ports sending to %s, want %d", len(seen), vip, conns)
			}
			for _, name := range x.names {
				if ports[name] != r.ConnBackends[name] {
					t.Errorf("%s received datagrams from %d client ports but answered %d connections", name, ports[name], r.ConnBackends[name])
				}
			}

			if forwarding != "ipip" {
				return
			}
			// Packet taps run after XDP, so the captures above saw the
			// inner packets; the decapsulators' counters show that each
			// of them arrived in a tunnel.
			for i, name := range x.names {
				received := 0
				for _, by := range seen {
					received += by[name]
				}
				if got := x.decapped(t, i) - decapBefore[i]; got < uint64(received) {
					t.Errorf("%s: decapsulated %d packets, but received %d datagrams for %s", name, got, received, vip)
				}
			}
		})
	}

	for _, vip := range vips {
		t.Run("a client that migrates to a new port keeps its backend over "+family(vip), func(t *testing.T) {
			c := mustDialH3(t, x.Client, vip)
			oldAddr := c.localAddr()
			caps := x.mustCaptureBackends(t)
			sockB := mustUDPSocket(t, x.Client, clientAddr(vip))
			trB := &quic.Transport{Conn: sockB}
			t.Cleanup(func() { _ = trB.Close() })
			// Close the connection while its transport still sends, so
			// the backend does not wait for it when it shuts down.
			defer c.conn.CloseWithError(0, "")
			newAddr := sockB.LocalAddr().(*net.UDPAddr).AddrPort()

			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			path, err := c.conn.AddPath(trB)
			if err != nil {
				t.Fatalf("add path: %v", err)
			}
			// PATH_CHALLENGE leaves the new port with a new connection
			// ID (RFC 9000 §9.5): only routing by that CID's server ID
			// brings it to the same backend.
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
			by := seen[newAddr]
			if len(by) != 1 || by[c.backend] == 0 {
				t.Errorf("datagrams from the new port %s reached %v, want only %s", newAddr, by, c.backend)
			}
			t.Logf("migrated from %s to %s; %d datagrams from the new port reached %s", oldAddr, newAddr, by[c.backend], c.backend)
		})
	}

	t.Run("a backend's new link-layer address reaches the maps through neighbour events", func(t *testing.T) {
		b := x.Backends[0]
		// The kernel learns a new MAC for a backend from ARP or NDP; a
		// replaced neighbour entry on the lb host is the same event.
		fake := net.HardwareAddr{0x02, 0x00, 0x5e, 0x00, 0x53, 0x01}
		for _, mac := range []net.HardwareAddr{fake, b.MAC} {
			if err := x.LB.AddNeighbor(b.IPv4, mac); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(10 * time.Second)
			for {
				var got []string
				for _, s := range mustStats(t, x.LB).Backends {
					if s.Address == b.IPv4 {
						got = append(got, s.MAC+s.NextHopMAC)
					}
				}
				if len(got) == 1 && got[0] == mac.String() {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("backend %s is sent to %v 10s after its neighbour entry became %s", b.IPv4, got, mac)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
		// Traffic reaches the backend again at its real address.
		mustRunClient(t, x.Client, x.vip4, 30, 1)
	})

	t.Run("a burst of garbage to the VIPs is counted and disturbs no connection", func(t *testing.T) {
		conns := x.mustConnsToEveryBackendOf(t, vips)
		loop := startRequestLoop(conns)
		defer loop.stop()
		loop.mustWaitRequests(t, 2)
		// Settled: with --dataplane userspace Go decides, and counts a
		// moment later (slow_path_reasons).
		before := mustSettledStats(t, x)

		var sent garbageCounts
		for _, vip := range vips {
			sent.add(mustSendGarbage(t, x.Client, vip, 10_000))
		}
		loop.mustWaitRequests(t, 3)
		after := mustSettledStats(t, x)
		ok, failures := loop.stop()

		delta := func(reason string) uint64 { return after.Reason(reason) - before.Reason(reason) }
		var verdicts uint64
		for r := range after.Reasons {
			if r == "tx" || strings.HasPrefix(r, "pass_") || strings.HasPrefix(r, "drop_") {
				verdicts += delta(r)
			}
		}
		t.Logf("sent %d garbage datagrams (%d not QUIC, %d with a long-header DCID over 20 octets); verdicts +%d, drop_not_quic_strict +%d, cid_too_long +%d, tx +%d; %d requests ok meanwhile",
			sent.total, sent.notQUIC, sent.tooLongCID, verdicts, delta("drop_not_quic_strict"), delta("cid_too_long"), delta("tx"), ok)
		if verdicts < uint64(sent.total) {
			t.Errorf("verdict counters rose by %d, want at least the %d garbage datagrams", verdicts, sent.total)
		}
		if got := delta("drop_not_quic_strict"); got < uint64(sent.notQUIC) {
			t.Errorf("drop_not_quic_strict rose by %d, want at least %d (datagrams that are not QUIC, VIP strict)", got, sent.notQUIC)
		}
		if got := delta("cid_too_long"); got < uint64(sent.tooLongCID) {
			t.Errorf("cid_too_long rose by %d, want at least %d", got, sent.tooLongCID)
		}
		if len(failures) > 0 {
			t.Errorf("%d requests on open connections failed during the burst: %v", len(failures), failures)
		}
	})

	t.Run("restarting spooky attach drops no connection and adopts the pinned link and maps", func(t *testing.T) {
		conns := x.mustConnsToEveryBackendOf(t, vips)
		loop := startRequestLoop(conns)
		defer loop.stop()
		loop.mustWaitRequests(t, 2)
		flowsBefore := pinnedFlows(t, x.spooky.cmd.Process.Pid)
		statsBefore := mustStats(t, x.LB)

		if err := x.spooky.stop(); err != nil {
			t.Fatal(err)
		}
		// No spooky process at all: the pinned link keeps forwarding.
		loop.mustWaitRequests(t, 2)
		x.restartSpooky(t)
		x.spooky.mustWaitLog(t, `msg="adopted pinned xdp link"`, 1)
		loop.mustWaitRequests(t, 3)
		flowsAfter := pinnedFlows(t, x.spooky.cmd.Process.Pid)
		statsAfter := mustStats(t, x.LB)
		ok, failures := loop.stop()

		if len(failures) > 0 {
			t.Errorf("%d requests failed across the restart: %v", len(failures), failures)
		}
		lost := 0
		for k, b := range flowsBefore {
			if got, kept := flowsAfter[k]; !kept || got != b {
				lost++
			}
		}
		if lost > 0 {
			t.Errorf("%d of %d flows were lost or moved across the restart", lost, len(flowsBefore))
		}
		// Counters live in the pinned maps: a fresh map would start at 0.
		pb, pa := backendPackets(statsBefore), backendPackets(statsAfter)
		for addr, n := range pb {
			if pa[addr] < n {
				t.Errorf("backend %s: %d packets counted after the restart, %d before: the maps were not adopted", addr, pa[addr], n)
			}
		}
		t.Logf("%d requests ok across the restart; %d flows before, %d after", ok, len(flowsBefore), len(flowsAfter))
	})

	t.Run("spooky stats prints per-backend packet counts", func(t *testing.T) {
		out, errOut, code := runSpooky(t, x.LB, "stats", x.LB.Iface)
		if code != 0 {
			t.Fatalf("spooky stats: exit %d: %s", code, errOut)
		}

		// Backend rows: NAME INDEX ADDRESS STATE PACKETS BYTES; VIP rows:
		// SERVICE VIP MODE PACKETS ...
		rows := map[string][]string{}
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) >= 6 {
				rows[f[1]] = f
				rows[f[2]] = f
			}
		}
		for _, h := range x.Backends {
			for _, a := range h.Addrs() {
				f := rows[a.String()]
				if f == nil {
					t.Errorf("no row for backend %s in:\n%s", a, out)
					continue
				}
				if n, err := strconv.ParseUint(f[4], 10, 64); f[3] != "healthy" || err != nil || n == 0 {
					t.Errorf("row for backend %s = %q, want healthy with packets > 0", a, f)
				}
				if !strings.HasSuffix(f[0], "/"+h.Name) {
					t.Errorf("row for backend %s is named %q, want service/%s", a, f[0], h.Name)
				}
			}
		}
		for _, vip := range vips {
			if f := rows[vip.String()]; f == nil || f[3] == "0" || !strings.HasPrefix(f[0], "web") {
				t.Errorf("row for VIP %s = %q, want its service name and packets > 0; output:\n%s", vip, f, out)
			}
		}
		if !strings.Contains(out, "drop_not_quic_strict") {
			t.Errorf("no reason rows in:\n%s", out)
		}
	})

	t.Run("a reload that removes a backend keeps the other backends' connections", func(t *testing.T) {
		const removed = 1
		name := x.names[removed]
		conns := map[netip.AddrPort]map[string]*h3Conn{}
		for _, vip := range vips {
			conns[vip] = x.mustConnsToEveryBackend(t, vip)
		}
		// The removed backend's own connections are closed first, while
		// their CONNECTION_CLOSE can still reach it: after the reload
		// nothing does, and the backend would wait out its shutdown grace.
		for _, byName := range conns {
			_ = byName[name].conn.CloseWithError(0, "")
		}
		x.writeConfig(t, []int{0, 2})
		if err := x.spooky.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		gone := x.Backends[removed].Addrs()
		// A cleared slot has no address left, so stats show the removed
		// backend as one "removed" slot per VIP family and no longer
		// under its addresses.
		mustPoll(t, "stats show "+name+" removed", func() bool {
			removedSlots := 0
			for _, b := range mustStats(t, x.LB).Backends {
				if slices.Contains(gone, b.Address) {
					return false
				}
				if b.State == "removed" {
					removedSlots++
				}
			}
			return removedSlots == len(gone)
		})
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		for vip, byName := range conns {
			for b, c := range byName {
				if b == name {
					continue
				}
				for i := range 3 {
					got, err := c.get(ctx)
					if err != nil || got != b {
						t.Errorf("request %d to %s on a connection to %s after the reload: %q, %v", i, vip, b, got, err)
					}
				}
			}
			r := mustRunClient(t, x.Client, vip, 40, 1)
			if r.Failed != 0 || r.ConnBackends[name] != 0 {
				t.Errorf("new connections to %s after the reload: %d failed, %d reached the removed %s (%v)", vip, r.Failed, r.ConnBackends[name], name, r.ConnBackends)
			}
		}
	})

	if forwarding == "ipip" {
		t.Run("spooky decap detach removes the decapsulator and decap attach puts it back", func(t *testing.T) {
			h := x.Backends[0]
			mustXDPAttached(t, h, true)
			out, errOut, code := runSpooky(t, h, "decap", "attach", h.Iface)
			if code != 0 || !strings.Contains(out, "decapsulating on eth0") || !strings.Contains(out, h.IPv4.String()) || !strings.Contains(out, netns.VIPv4.String()) {
				t.Errorf("decap attach again (refresh) = exit %d %q %q, want 0 naming %s and %s", code, out, errOut, h.IPv4, netns.VIPv4)
			}
			out, errOut, code = runSpooky(t, h, "decap", "detach", h.Iface)
			if code != 0 || !strings.Contains(out, "detached xdp program") || !strings.Contains(out, "from eth0") {
				t.Fatalf("decap detach = exit %d %q %q", code, out, errOut)
			}
			mustXDPAttached(t, h, false)
			_, errOut, code = runSpooky(t, h, "decap", "detach", h.Iface)
			if code != 1 || !strings.Contains(errOut, "nothing attached") {
				t.Errorf("second decap detach = exit %d %q, want 1 and \"nothing attached\"", code, errOut)
			}
			if out, errOut, code = runSpooky(t, h, "decap", "attach", h.Iface); code != 0 {
				t.Fatalf("decap attach = exit %d %q %q", code, out, errOut)
			}
			mustXDPAttached(t, h, true)
			r := mustRunClient(t, x.Client, x.vip4, 60, 1)
			if r.Failed != 0 || r.ConnBackends[h.Name] == 0 {
				t.Errorf("after decap re-attach: %d failed, %d of 60 connections on %s", r.Failed, r.ConnBackends[h.Name], h.Name)
			}
		})
	}

	t.Run("spooky detach removes the program and stats then says nothing attached", func(t *testing.T) {
		if err := x.spooky.stop(); err != nil {
			t.Fatal(err)
		}
		mustXDPAttached(t, x.LB, true)
		out, errOut, code := runSpooky(t, x.LB, "detach", x.LB.Iface)
		if code != 0 || !strings.Contains(out, "detached xdp program") || !strings.Contains(out, "from eth0") {
			t.Fatalf("spooky detach = exit %d %q %q", code, out, errOut)
		}
		mustXDPAttached(t, x.LB, false)
		_, errOut, code = runSpooky(t, x.LB, "stats", x.LB.Iface)
		if code != 1 || !strings.Contains(errOut, "nothing attached") {
			t.Errorf("spooky stats after detach = exit %d %q, want 1 and \"nothing attached\"", code, errOut)
		}
	})
}

func TestXDPAttachReportsErrorsClearly(t *testing.T) {
	lab := netns.New(t, netns.Config{Backends: 1, LB: netns.HostOptions{MountNS: true}})
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	mustWrite(t, good, fmt.Sprintf("services:\n  - name: web\n    address: %s\n    port: 443\n    backends:\n      - {name: b1, address: %s}\n", netns.VIPv4, lab.Backends[0].IPv4))
	// Line 6, column 41 is the value of weight.
	mustWrite(t, bad, fmt.Sprintf("services:\n  - name: web\n    address: %s\n    port: 443\n    backends:\n      - {name: b1, address: %s, weight: 0}\n", netns.VIPv4, lab.Backends[0].IPv4))

	tests := []struct {
		name string
		args []string
		want []string // in stderr
	}{
		{"attach to a missing interface names it",
			[]string{"attach", "-c", good, "nosuch0"}, []string{`"nosuch0"`, "no such interface"}},
		{"attach without a bpf filesystem says how to mount one",
			[]string{"attach", "-c", good, "--pin-root", filepath.Join(dir, "pins"), "eth0"}, []string{"not on a bpf filesystem", "mount -t bpf"}},
		{"attach with an invalid config names file, line and column",
			[]string{"attach", "-c", bad, "eth0"}, []string{bad + ":6:", "weight"}},
		{"stats with nothing attached says so",
			[]string{"stats", "eth0"}, []string{"nothing attached"}},
		{"detach with nothing attached says so",
			[]string{"detach", "eth0"}, []string{"nothing attached"}},
		{"decap attach to a missing interface names it",
			[]string{"decap", "attach", "nosuch0"}, []string{`"nosuch0"`, "no such interface"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := runSpooky(t, lab.LB, tt.args...)
			if code != 1 {
				t.Errorf("exit %d, want 1; stdout %q stderr %q", code, out, errOut)
			}
			for _, w := range tt.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr %q does not contain %q", errOut, w)
				}
			}
		})
	}
	mustXDPAttached(t, lab.LB, false)
}

func family(vip netip.AddrPort) string {
	if vip.Addr().Is6() {
		return "IPv6"
	}
	return "IPv4"
}

func mustWrite(tb testing.TB, path, s string) {
	tb.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		tb.Fatal(err)
	}
}

// restartSpooky starts `spooky attach` again; the process belongs to the
// lab's test, not to the subtest that restarts it.
func (x *xdpLab) restartSpooky(t *testing.T) {
	t.Helper()
	x.spooky = mustStartSpooky(x.tb, x.LB, x.cfgPath, x.opts.attach...)
}

// mustPoll waits up to 20 s for cond.
func mustPoll(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// mustXDPAttached checks whether h's eth0 has an XDP program.
func mustXDPAttached(tb testing.TB, h *netns.Host, want bool) {
	tb.Helper()
	l, err := h.Link()
	if err != nil {
		tb.Fatal(err)
	}
	got := l.Attrs().Xdp != nil && l.Attrs().Xdp.Attached
	if got != want {
		tb.Fatalf("xdp attached to %s of %s = %v, want %v", h.Iface, h, got, want)
	}
}

// garbageCounts counts garbage datagrams by what XDP must make of them.
type garbageCounts struct {
	total int
	// notQUIC have no fixed bit or are too short for the invariant
	// header: a strict VIP drops them (drop_not_quic_strict).
	notQUIC int
	// tooLongCID have a long header whose DCID length is over 20: QUIC
	// by the invariants (RFC 8999 §5.1), not routable by CID.
	tooLongCID int
}

func (g *garbageCounts) add(o garbageCounts) {
	g.total += o.total
	g.notQUIC += o.notQUIC
	g.tooLongCID += o.tooLongCID
}

// mustSendGarbage sends n datagrams to vip from the client host, cycling
// through: empty; one octet; random without the fixed bit; random short
// header with the fixed bit; long header whose DCID length points past the
// end (≤ 20) or is over 20.
func mustSendGarbage(tb testing.TB, h *netns.Host, vip netip.AddrPort, n int) garbageCounts {
	tb.Helper()
	var conn *net.UDPConn
	if err := h.Do(func() error {
		var err error
		conn, err = net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(vip))
		return err
	}); err != nil {
		tb.Fatal(err)
	}
	defer conn.Close()
	rng := rand.New(rand.NewPCG(1, uint64(vip.Addr().BitLen())))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	var c garbageCounts
	for i := range n {
		var p []byte
		switch i % 5 {
		case 0:
			c.notQUIC++
		case 1:
			p = random(1)
			c.notQUIC++
		case 2:
			p = random(20 + rng.IntN(1180))
			p[0] &^= 0x40
			c.notQUIC++
		case 3:
			p = random(21 + rng.IntN(1180))
			p[0] = p[0]&0x3f | 0x40
		case 4:
			if i/5%2 == 0 {
				dcidLen := 1 + rng.IntN(20)
				p = random(6 + rng.IntN(dcidLen))
				p[5] = byte(dcidLen)
				c.notQUIC++
			} else {
				p = random(6 + rng.IntN(40))
				p[5] = byte(21 + rng.IntN(235))
				c.tooLongCID++
			}
			p[0] |= 0xc0
			p[1], p[2], p[3], p[4] = 0, 0, 0, 1
		}
		if _, err := conn.Write(p); err != nil {
			tb.Fatalf("send garbage %d to %s: %v", i, vip, err)
		}
		c.total++
	}
	return c
}

func TestXDPAttachWithoutPrivilegeSaysWhatIsMissing(t *testing.T) {
	lab := netns.New(t, netns.Config{Backends: 1})
	// A binary and a file the unprivileged user can read: the failure
	// must be about privilege, not about reading them.
	dir, err := os.MkdirTemp("", "spooky-unpriv-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	cfg := filepath.Join(dir, "spooky.yaml")
	mustWrite(t, cfg, fmt.Sprintf("services:\n  - name: web\n    address: %s\n    port: 443\n    backends:\n      - {name: b1, address: %s}\n", netns.VIPv4, lab.Backends[0].IPv4))
	bin, err := os.ReadFile(mustBuild(t, "spooky"))
	if err != nil {
		t.Fatal(err)
	}
	spooky := filepath.Join(dir, "spooky")
	mustWrite(t, spooky, string(bin))
	for _, p := range []string{dir, cfg, spooky} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// nsenter enters the lab host as root, then drops to nobody (65534)
	// before running spooky.
	pins := filepath.Join("/sys/fs/bpf", filepath.Base(dir))
	t.Cleanup(func() { os.RemoveAll(pins) })
	cmd := exec.Command("nsenter", "--net="+lab.LB.Path(), "--setuid", "65534", "--setgid", "65534", "--",
		spooky, "attach", "-c", cfg, "--pin-root", pins, "eth0")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("spooky attach as nobody: %v, want exit 1; output:\n%s", err, out)
	}
	if !strings.Contains(string(out), "not permitted (needs root, or CAP_BPF and CAP_NET_ADMIN)") {
		t.Fatalf("output does not say which privilege is missing:\n%s", out)
	}
	mustXDPAttached(t, lab.LB, false)
	// A pin root left behind, owned by nobody, would make root's attach
	// refuse it later.
	if _, err := os.Lstat(pins); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pin root %s after the failed attach: %v, want it taken back", pins, err)
	}

	// Root's pin root is refused as root's, with the fix being privilege.
	rootPins, err := os.MkdirTemp("/sys/fs/bpf", "spooky-root-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(rootPins) })
	cmd = exec.Command("nsenter", "--net="+lab.LB.Path(), "--setuid", "65534", "--setgid", "65534", "--",
		spooky, "detach", "--pin-root", rootPins, "eth0")
	out, err = cmd.CombinedOutput()
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("spooky detach as nobody: %v, want exit 1; output:\n%s", err, out)
	}
	if want := "pin root " + rootPins + " is owned by root, not uid 65534 that spooky runs as; run it as root"; !strings.Contains(string(out), want) {
		t.Errorf("output does not say %q:\n%s", want, out)
	}
}
