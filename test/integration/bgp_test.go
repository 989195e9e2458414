package integration

import (
	"net/netip"
	"slices"
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
			took := x.mustWaitBIRD(t, vip.Addr(), both...)
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

var _ = syscall.SIGTERM
