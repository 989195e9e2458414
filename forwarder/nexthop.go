package forwarder

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ErrNoNeighbour reports that the kernel could not resolve a next hop's link
// address in time (no ARP/NDP answer).
var ErrNoNeighbour = errors.New("next hop did not resolve")

// NextHop is where the XDP program sends a packet for a backend: the Ethernet
// address to write as destination and whether the backend is on-link.
type NextHop struct {
	// Gateway is the router between the edge interface and the backend, or the
	// zero Addr when the backend is on-link.
	Gateway netip.Addr
	// MAC is the link-layer address of the backend (on-link) or gateway.
	MAC net.HardwareAddr
}

// Resolver looks up next hops on one interface with netlink route and
// neighbour lookups, the same tables the kernel forwards with.
type Resolver struct {
	// Link is the edge interface XDP is attached to.
	Link netlink.Link
	// Timeout bounds one resolution. If zero, 3 s (the kernel's default ARP
	// retransmit is 1 s with 3 probes, see ip-neighbour(8)).
	Timeout time.Duration
}

// Resolve returns the next hop for addr. It fails if addr is not routed out of
// r.Link, or if its link-layer address does not resolve before the timeout; in
// that case it asks the kernel to resolve it (NTF_USE), which sends ARP or NDP.
func (r *Resolver) Resolve(ctx context.Context, addr netip.Addr) (NextHop, error) {
	attrs := r.Link.Attrs()
	routes, err := netlink.RouteGet(addr.AsSlice())
	if err != nil {
		return NextHop{}, fmt.Errorf("route to %s: %w", addr, err)
	}
	if len(routes) == 0 {
		return NextHop{}, fmt.Errorf("route to %s: no route", addr)
	}
	route := routes[0]
	if route.LinkIndex != attrs.Index {
		return NextHop{}, fmt.Errorf("route to %s: leaves through ifindex %d, not %s (ifindex %d)",
			addr, route.LinkIndex, attrs.Name, attrs.Index)
	}
	var hop NextHop
	target := addr
	if route.Gw != nil {
		gw, ok := netip.AddrFromSlice(route.Gw)
		if !ok {
			return NextHop{}, fmt.Errorf("route to %s: bad gateway %v", addr, route.Gw)
		}
		hop.Gateway = gw.Unmap()
		target = hop.Gateway
	}

	timeout := r.Timeout
	if timeout == 0 {
		timeout = 3 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	asked := false
	for {
		mac, err := r.lookup(target)
		if err != nil {
			return NextHop{}, err
		}
		if mac != nil {
			hop.MAC = mac
			return hop, nil
		}
		if !asked {
			// NTF_USE makes the kernel start resolution as if a packet
			// needed the entry (net/core/neighbour.c, neigh_add).
			err := netlink.NeighSet(&netlink.Neigh{
				LinkIndex: attrs.Index,
				Family:    family(target),
				IP:        target.AsSlice(),
				Flags:     netlink.NTF_USE,
			})
			if err != nil {
				return NextHop{}, fmt.Errorf("resolve %s on %s: %w", target, attrs.Name, err)
			}
			asked = true
		}
		select {
		case <-ctx.Done():
			return NextHop{}, fmt.Errorf("resolve %s on %s: %w", target, attrs.Name, ErrNoNeighbour)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// usableStates are neighbour states whose link address may be used: the
// kernel itself sends with STALE, DELAY and PROBE entries while it revalidates.
const usableStates = netlink.NUD_REACHABLE | netlink.NUD_STALE | netlink.NUD_DELAY |
	netlink.NUD_PROBE | netlink.NUD_PERMANENT | netlink.NUD_NOARP

// lookup returns the link address of target on r.Link, or nil if there is no
// usable entry yet.
func (r *Resolver) lookup(target netip.Addr) (net.HardwareAddr, error) {
	attrs := r.Link.Attrs()
	neighs, err := netlink.NeighList(attrs.Index, family(target))
	if err != nil {
		return nil, fmt.Errorf("list neighbours of %s: %w", attrs.Name, err)
	}
	for _, n := range neighs {
		ip, ok := netip.AddrFromSlice(n.IP)
		if !ok || ip.Unmap() != target {
			continue
		}
		if n.State&usableStates != 0 && len(n.HardwareAddr) == 6 {
			return n.HardwareAddr, nil
		}
	}
	return nil, nil
}

// WatchNeighbours calls changed whenever a neighbour entry on r.Link is
// added, changed or removed, until ctx ends. The caller re-resolves its next
// hops then; changes are rare, so a full re-resolve is simpler than matching.
func (r *Resolver) WatchNeighbours(ctx context.Context, changed func()) error {
	updates := make(chan netlink.NeighUpdate, 64)
	if err := netlink.NeighSubscribe(updates, ctx.Done()); err != nil {
		return fmt.Errorf("subscribe to neighbour updates: %w", err)
	}
	index := r.Link.Attrs().Index
	go func() {
		for u := range updates {
			if u.LinkIndex == index {
				changed()
			}
		}
	}()
	return nil
}

func family(a netip.Addr) int {
	if a.Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}
