package netns

import (
	"net"
	"net/netip"
	"testing"
)

func TestHostsAddedOnTheBridgeAndBehindARouter(t *testing.T) {
	lab := New(t, Config{Backends: 1})
	routerV4, routerV6 := netip.MustParseAddr("198.18.0.254"), netip.MustParseAddr("2001:db8::fe")
	router, err := lab.AddHost("router", routerV4, routerV6, HostOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out4, out6 := netip.MustParsePrefix("198.19.0.1/24"), netip.MustParsePrefix("2001:db8:1::1/64")
	via4, via6 := netip.MustParsePrefix("198.19.0.254/24"), netip.MustParsePrefix("2001:db8:1::fe/64")
	outside, err := lab.AddHostBehind("outside", router, "eth1", out4, out6, via4, via6)
	if err != nil {
		t.Fatal(err)
	}
	if outside.IPv4 != out4.Addr() || outside.IPv6 != out6.Addr() || outside.MAC == nil || outside.PeerName != "" {
		t.Errorf("outside host = %+v", outside)
	}

	t.Run("a host added on the bridge reaches the others", func(t *testing.T) {
		mustEcho(t, router, lab.Backends[0], lab.Backends[0].IPv4)
		mustEcho(t, lab.LB, router, routerV6)
	})

	t.Run("a host behind another reaches it, and through it, routed, the bridge", func(t *testing.T) {
		mustEcho(t, outside, router, via4.Addr())
		mustEcho(t, outside, router, via6.Addr())
		for _, kv := range [][2]string{{"net.ipv4.ip_forward", "1"}, {"net.ipv6.conf.all.forwarding", "1"}} {
			if err := router.SetSysctl(kv[0], kv[1]); err != nil {
				t.Fatal(err)
			}
		}
		b := lab.Backends[0]
		for _, r := range []struct {
			h   *Host
			dst netip.Prefix
			gw  netip.Addr
		}{
			{outside, netip.MustParsePrefix("198.18.0.0/24"), via4.Addr()},
			{b, out4.Masked(), routerV4},
		} {
			if err := r.h.AddRoute(r.dst, r.gw); err != nil {
				t.Fatal(err)
			}
		}
		mustEcho(t, outside, b, b.IPv4)
	})

	t.Run("a host's link goes down and, up again, carries traffic", func(t *testing.T) {
		b := lab.Backends[0]
		if err := b.SetLinkUp(false); err != nil {
			t.Fatal(err)
		}
		l, err := b.Link()
		if err != nil {
			t.Fatal(err)
		}
		if l.Attrs().Flags&net.FlagUp != 0 {
			t.Errorf("%s is still up", b.Iface)
		}
		if err := b.SetLinkUp(true); err != nil {
			t.Fatal(err)
		}
		mustEcho(t, router, b, b.IPv4)
	})
}
