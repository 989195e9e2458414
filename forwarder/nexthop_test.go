package forwarder

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/spooky-lb/spooky/test/netns"
)

func TestResolverFindsNextHopsWithNetlink(t *testing.T) {
	lab := netns.New(t, netns.Config{Backends: 2})
	lb, b0, b1 := lab.LB, lab.Backends[0], lab.Backends[1]
	routed := netip.MustParseAddr("198.19.0.5")
	if err := lb.AddRoute(netip.MustParsePrefix("198.19.0.0/24"), b1.IPv4); err != nil {
		t.Fatal(err)
	}

	resolve := func(addr netip.Addr, timeout time.Duration) (hop NextHop, err error) {
		t.Helper()
		if doErr := lb.Do(func() error {
			l, lerr := netlink.LinkByName(lb.Iface)
			if lerr != nil {
				return lerr
			}
			r := &Resolver{Link: l, Timeout: timeout}
			hop, err = r.Resolve(context.Background(), addr)
			return nil
		}); doErr != nil {
			t.Fatal(doErr)
		}
		return hop, err
	}

	t.Run("an on-link backend resolves to its own MAC by ARP and by neighbour discovery", func(t *testing.T) {
		for _, addr := range []netip.Addr{b0.IPv4, b0.IPv6} {
			hop, err := resolve(addr, 0)
			if err != nil {
				t.Fatalf("resolve %s: %v", addr, err)
			}
			if hop.Gateway.IsValid() || hop.MAC.String() != b0.MAC.String() {
				t.Fatalf("resolve %s = %+v, want on-link with MAC %s", addr, hop, b0.MAC)
			}
		}
	})

	t.Run("a routed address resolves to its gateway's MAC", func(t *testing.T) {
		hop, err := resolve(routed, 0)
		if err != nil {
			t.Fatal(err)
		}
		if hop.Gateway != b1.IPv4 || hop.MAC.String() != b1.MAC.String() {
			t.Fatalf("resolve %s = %+v, want gateway %s with MAC %s", routed, hop, b1.IPv4, b1.MAC)
		}
	})

	t.Run("an on-link address nobody answers for fails with ErrNoNeighbour", func(t *testing.T) {
		_, err := resolve(netip.MustParseAddr("198.18.0.99"), 300*time.Millisecond)
		if !errors.Is(err, ErrNoNeighbour) {
			t.Fatalf("err = %v, want ErrNoNeighbour", err)
		}
	})

	t.Run("an address with no route out of the interface is refused by name", func(t *testing.T) {
		_, err := resolve(netip.MustParseAddr("127.0.0.1"), 0)
		if err == nil || !strings.Contains(err.Error(), "not "+lb.Iface) {
			t.Fatalf("err = %v, want one saying it does not leave through %s", err, lb.Iface)
		}
	})

	t.Run("a neighbour change on the interface is reported to the watcher", func(t *testing.T) {
		changed := make(chan struct{}, 16)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		if err := lb.Do(func() error {
			l, err := netlink.LinkByName(lb.Iface)
			if err != nil {
				return err
			}
			return (&Resolver{Link: l}).WatchNeighbours(ctx, func() { changed <- struct{}{} })
		}); err != nil {
			t.Fatal(err)
		}
		if err := lb.AddNeighbor(netip.MustParseAddr("198.18.0.77"), b0.MAC); err != nil {
			t.Fatal(err)
		}
		select {
		case <-changed:
		case <-time.After(5 * time.Second):
			t.Fatal("no callback within 5s of a new neighbour entry")
		}
	})
}
