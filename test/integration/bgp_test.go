package integration

import (
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestBGPSpreadsVIPsOverTwoSpookyHostsBehindARouter runs the BGP lab
// (bgp_helpers_test.go): BIRD 2 in a router namespace learns the VIPs
// from two spooky hosts and spreads flows over them with ECMP. The
// subtests share one lab and run in order; each leaves both hosts
// announcing both VIPs.
func TestBGPSpreadsVIPsOverTwoSpookyHostsBehindARouter(t *testing.T) {
	x := mustBGPLab(t)
	vips := []netip.AddrPort{x.vip4, x.vip6}
	both := []string{"lb1", "lb2"}

	t.Run("both hosts' announcements reach BIRD and the router's kernel route has both as next hops", func(t *testing.T) {
		for _, vip := range vips {
			took := x.mustWaitAnnounced(t, vip.Addr(), both...)
			t.Logf("%s: BIRD holds routes from both hosts %s after the lab started", vip.Addr(), took.Round(time.Millisecond))
			want := x.lbAddrs(vip.Addr(), 0, 1)
			pollUntil(t, "the kernel route to "+vip.Addr().String()+" has two next hops", 10*time.Second, func() bool {
				return slices.Equal(x.kernelNextHops(t, vip.Addr()), want)
			})
		}
		for i := range x.lbs {
			st := x.mustStatus(t, i).BGP
			if st == nil || len(st.Peers) != 2 {
				t.Fatalf("%s: spooky status has BGP %+v, want two peers", lbName(i), st)
			}
			for _, p := range st.Peers {
				if p.State != "established" || p.HoldTimeSeconds != int(bgpHoldTime/time.Second) {
					t.Errorf("%s: peer %s is %s with hold time %ds, want established with %s", lbName(i), p.Address, p.State, p.HoldTimeSeconds, bgpHoldTime)
				}
			}
			var prefixes []string
			for _, r := range st.Routes {
				prefixes = append(prefixes, r.Prefix.String())
				if r.Prefix.Addr() == x.vip4.Addr() && !slices.Equal(r.Communities, []string{"65001:100"}) {
					t.Errorf("%s: route %s carries communities %v, want 65001:100", lbName(i), r.Prefix, r.Communities)
				}
			}
			if want := []string{"198.18.0.10/32", "2001:db8::a/128"}; !slices.Equal(prefixes, want) {
				t.Errorf("%s: spooky status announces %v, want %v", lbName(i), prefixes, want)
			}
		}
	})

	for _, vip := range vips {
		t.Run("new connections from many client ports spread over both hosts over "+family(vip), func(t *testing.T) {
			x.mustSpread(t, vip)
		})
	}

	t.Run("SIGTERM withdraws a host's routes before it stops forwarding and its held connections continue through the other host", func(t *testing.T) {
		conns := x.mustHeldConns(t, 12, vips...)
		loop := startPacedLoop(conns, 100*time.Millisecond, 10*time.Second)
		defer loop.stop()
		loop.mustWaitRequests(t, 3, 20*time.Second)
		x.mustCarryBoth(t, loop)

		lb1 := x.spooky[0]
		sigterm := time.Now()
		if err := lb1.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		for _, vip := range vips {
			x.mustWaitBIRD(t, vip.Addr(), "lb2")
			select {
			case <-lb1.exited:
				t.Fatalf("lb1's spooky exited before BIRD saw %s withdrawn; log:\n%s", vip.Addr(), lb1.log)
			default:
			}
		}
		t.Logf("BIRD saw lb1's routes withdrawn %s after SIGTERM, with lb1 still forwarding (withdraw_grace %s)",
			time.Since(sigterm).Round(time.Millisecond), bgpWithdrawGrace)
		for _, vip := range vips {
			x.mustWaitAnnounced(t, vip.Addr(), "lb2")
		}
		select {
		case <-lb1.exited:
		case <-time.After(bgpWithdrawGrace + 10*time.Second):
			t.Fatalf("lb1's spooky did not exit after SIGTERM; log:\n%s", lb1.log)
		}
		if lb1.waitErr != nil {
			t.Fatalf("lb1's spooky exited with %v after SIGTERM; log:\n%s", lb1.waitErr, lb1.log)
		}
		t.Logf("lb1's spooky exited %s after SIGTERM", time.Since(sigterm).Round(time.Millisecond))
		// The XDP program outlives the process (pinned); detach it, so
		// that lb1 forwards nothing at all, as a host taken down would.
		if out, errOut, code := runSpooky(t, x.lbs[0], "detach", x.lbs[0].Iface); code != 0 {
			t.Fatalf("spooky detach on lb1: exit %d: %s%s", code, out, errOut)
		}
		loop.mustWaitRequests(t, 10, 20*time.Second)
		ok, failures, _ := loop.stop()
		if len(failures) != 0 {
			t.Errorf("%d held requests failed across lb1's shutdown: %v", len(failures), failures)
		}
		t.Logf("%d held connections made %d requests, %d failed", len(conns), ok, len(failures))

		t.Run("new connections all go to the survivor", func(t *testing.T) {
			for _, vip := range vips {
				before := x.vipPackets(t, 1, vip)
				// lb1 forwards nothing now: a connection sent there
				// would fail.
				r := mustRunClient(t, x.client, vip, 30, 2)
				if r.Failed != 0 {
					t.Errorf("%d of %d requests to %s failed with lb1 down: %v", r.Failed, r.Requests, vip, r.Errors)
				}
				if x.vipPackets(t, 1, vip) == before {
					t.Errorf("lb2 forwarded nothing to %s", vip)
				}
			}
		})

		t.Run("started again, the host announces and takes new flows", func(t *testing.T) {
			x.startSpooky(t, 0)
			start := time.Now()
			for _, vip := range vips {
				x.mustWaitAnnounced(t, vip.Addr(), both...)
			}
			t.Logf("BIRD holds lb1's routes again %s after it started", time.Since(start).Round(time.Millisecond))
			x.mustSpread(t, x.vip4)
		})
	})

	t.Run("a host whose backends of a VIP are all drained withdraws that VIP and the other host carries it", func(t *testing.T) {
		for _, b := range x.Backends {
			x.mustSpooky(t, 0, "drain", "web4/"+b.Name)
		}
		x.mustWaitAnnounced(t, x.vip4.Addr(), "lb2")
		if got := x.birdRoutes(t, x.vip6.Addr()); !slices.Equal(got, both) {
			t.Errorf("BIRD's routes to %s come from %v, want both hosts still", x.vip6.Addr(), got)
		}
		before := x.counters(t, x.vip4)
		r := mustRunClient(t, x.client, x.vip4, 30, 2)
		after := x.counters(t, x.vip4)
		if r.Failed != 0 {
			t.Errorf("%d of %d requests failed: %v", r.Failed, r.Requests, r.Errors)
		}
		if after[0] != before[0] || after[1] == before[1] {
			t.Errorf("packets to %s: lb1 %d → %d, lb2 %d → %d; want only lb2 to carry them", x.vip4, before[0], after[0], before[1], after[1])
		}
		for _, b := range x.Backends {
			x.mustSpooky(t, 0, "undrain", "web4/"+b.Name)
		}
		x.mustWaitAnnounced(t, x.vip4.Addr(), both...)

		t.Run("drain --all withdraws every route of the host and undrain --all announces them again", func(t *testing.T) {
			x.mustSpooky(t, 0, "drain", "--all")
			for _, vip := range vips {
				x.mustWaitAnnounced(t, vip.Addr(), "lb2")
			}
			if st := x.mustStatus(t, 0).BGP; !st.Withdrawn || len(st.Routes) != 0 {
				t.Errorf("after drain --all, lb1's status has withdrawn %v and routes %v", st.Withdrawn, st.Routes)
			}
			x.mustSpooky(t, 0, "undrain", "--all")
			for _, vip := range vips {
				x.mustWaitAnnounced(t, vip.Addr(), both...)
			}
		})
	})

	t.Run("a host whose health checks find every backend of a VIP down withdraws that VIP and the other host carries it", func(t *testing.T) {
		x.writeConfig(t, 0, bgpConfigOptions{failingCheck: true})
		x.mustSpooky(t, 0, "reload")
		took := x.mustWaitAnnounced(t, x.vip4.Addr(), "lb2")
		t.Logf("lb1 withdrew %s %s after the reload that made its checks fail (interval 200ms, fall 2)", x.vip4.Addr(), took.Round(time.Millisecond))
		for _, b := range x.mustStatus(t, 0).Services[0].Backends {
			if b.State != "unhealthy" {
				t.Errorf("lb1 sees web4/%s %s, want unhealthy", b.Name, b.State)
			}
		}
		if got := x.birdRoutes(t, x.vip6.Addr()); !slices.Equal(got, both) {
			t.Errorf("BIRD's routes to %s come from %v, want both hosts still", x.vip6.Addr(), got)
		}
		before := x.counters(t, x.vip4)
		r := mustRunClient(t, x.client, x.vip4, 30, 2)
		after := x.counters(t, x.vip4)
		if r.Failed != 0 {
			t.Errorf("%d of %d requests failed: %v", r.Failed, r.Requests, r.Errors)
		}
		if after[0] != before[0] || after[1] == before[1] {
			t.Errorf("packets to %s: lb1 %d → %d, lb2 %d → %d; want only lb2 to carry them", x.vip4, before[0], after[0], before[1], after[1])
		}
		x.writeConfig(t, 0, bgpConfigOptions{})
		x.mustSpooky(t, 0, "reload")
		x.mustWaitAnnounced(t, x.vip4.Addr(), both...)
	})

	t.Run("kill -9 of a spooky process closes its sessions at once and its pinned XDP path forwards meanwhile", func(t *testing.T) {
		conns := x.mustHeldConns(t, 12, vips...)
		loop := startPacedLoop(conns, 100*time.Millisecond, 10*time.Second)
		defer loop.stop()
		loop.mustWaitRequests(t, 3, 20*time.Second)
		kill := time.Now()
		if err := x.spooky[1].cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		for _, vip := range vips {
			x.mustWaitBIRD(t, vip.Addr(), "lb1")
		}
		t.Logf("BIRD dropped lb2's routes %s after kill -9 (the kernel closed the sessions)", time.Since(kill).Round(time.Millisecond))
		loop.mustWaitRequests(t, 5, 20*time.Second)
		if _, failures, _ := loop.stop(); len(failures) != 0 {
			t.Errorf("%d held requests failed: %v", len(failures), failures)
		}
		x.startSpooky(t, 1)
		for _, vip := range vips {
			x.mustWaitAnnounced(t, vip.Addr(), both...)
		}
	})

	t.Run("a host that dies without a word is dropped within the hold time and its held connections recover through the other", func(t *testing.T) {
		conns := x.mustHeldConns(t, 12, vips...)
		// Requests stall while the router still sends to the dead
		// host; QUIC retransmits, so they complete once it stops.
		loop := startPacedLoop(conns, 100*time.Millisecond, 20*time.Second)
		defer loop.stop()
		loop.mustWaitRequests(t, 3, 20*time.Second)
		x.mustCarryBoth(t, loop)
		// IPv6 drops a link's addresses when it goes down unless told
		// to keep them; the host must come back as it was.
		if err := x.lbs[1].SetSysctl("net.ipv6.conf.eth0.keep_addr_on_down", "1"); err != nil {
			t.Fatal(err)
		}
		// When a port goes down the bridge forgets the MACs behind it
		// and floods frames to them, and a veth, unlike a NIC, has no
		// MAC filter: lb1's XDP program would forward lb2's flows at
		// once. A static entry sends them into the dead port instead,
		// as a switch's ports do to a NIC that filters by MAC.
		if err := x.AddStaticFDB(x.lbs[1], x.lbs[1].MAC); err != nil {
			t.Fatal(err)
		}
		loop.resetLongest()
		// The link goes first, so the kernel's FIN on kill -9 never
		// reaches BIRD: only the hold timer tells it.
		death := time.Now()
		if err := x.lbs[1].SetLinkUp(false); err != nil {
			t.Fatal(err)
		}
		if err := x.spooky[1].cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		for _, vip := range vips {
			x.mustWaitBIRD(t, vip.Addr(), "lb1")
		}
		dropped := time.Since(death)
		loop.mustWaitRequests(t, 3, 30*time.Second)
		ok, failures, longest := loop.stop()
		if len(failures) != 0 {
			t.Errorf("%d held requests failed: %v", len(failures), failures)
		}
		t.Logf("BIRD dropped lb2's routes %s after it died (hold time %s); the held connections' longest wait between two answers was %s; %d requests, %d failed",
			dropped.Round(time.Millisecond), bgpHoldTime, longest.Round(time.Millisecond), ok, len(failures))
		if err := x.lbs[1].SetLinkUp(true); err != nil {
			t.Fatal(err)
		}
		x.startSpooky(t, 1)
		for _, vip := range vips {
			x.mustWaitAnnounced(t, vip.Addr(), both...)
		}
	})

	t.Run("a reload that adds a VIP announces it, a bad one changes nothing, and one that removes it withdraws it", func(t *testing.T) {
		x.writeConfig(t, 0, bgpConfigOptions{extraVIP: true})
		x.mustSpooky(t, 0, "reload")
		x.mustWaitBIRD(t, extraVIP, "lb1")

		x.writeConfig(t, 0, bgpConfigOptions{extraVIP: true, holdTime: "1s"})
		out, errOut, code := runSpooky(t, x.lbs[0], "reload", "--admin", x.adminSock(0))
		if code == 0 || !strings.Contains(errOut, "hold_time: 1s is out of range") {
			t.Errorf("a reload with hold_time 1s: exit %d, stdout %q, stderr %q; want it refused naming hold_time", code, out, errOut)
		}
		if st := x.mustStatus(t, 0); st.Config.LastReload == nil || st.Config.LastReload.OK {
			t.Errorf("lb1's last reload is %+v, want a rejected one", st.Config.LastReload)
		}
		if got := x.birdRoutes(t, extraVIP); !slices.Equal(got, []string{"lb1"}) {
			t.Errorf("after a rejected reload BIRD's routes to %s come from %v, want lb1 still", extraVIP, got)
		}

		x.writeConfig(t, 0, bgpConfigOptions{})
		x.mustSpooky(t, 0, "reload")
		x.mustWaitBIRD(t, extraVIP)
		for _, vip := range vips {
			if got := x.birdRoutes(t, vip.Addr()); !slices.Equal(got, both) {
				t.Errorf("after the reloads BIRD's routes to %s come from %v, want both hosts", vip.Addr(), got)
			}
		}
	})
}

// mustSpread runs many new connections to vip and checks that both hosts
// carried some: the router hashes each 4-tuple to one of two equal next
// hops, so each host's share of 60 connections is Binomial(60, 1/2); one
// below 15% happens with probability under 1e-7.
func (x *bgpLab) mustSpread(t *testing.T, vip netip.AddrPort) {
	t.Helper()
	before := x.counters(t, vip)
	r := mustRunClient(t, x.client, vip, 60, 2)
	if r.Failed != 0 || r.OK != 120 {
		t.Errorf("%d of %d requests failed: %v", r.Failed, r.Requests, r.Errors)
	}
	after := x.counters(t, vip)
	d := [2]uint64{after[0] - before[0], after[1] - before[1]}
	total := d[0] + d[1]
	for i := range d {
		share := float64(d[i]) / float64(total)
		t.Logf("%s forwarded %d of %d packets to %s (%.2f)", lbName(i), d[i], total, vip, share)
		if share < 0.15 {
			t.Errorf("%s forwarded a share of %.2f of the packets of 60 new connections, want both hosts to carry some", lbName(i), share)
		}
	}
}
