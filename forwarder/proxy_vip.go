package forwarder

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ErrVIPNotLocal: a proxy VIP is not an address this host accepts, and
// spooky could not make it one.
var ErrVIPNotLocal = errors.New("vip is not a local address")

// vipRoute is a local route spooky added so that the host accepts a VIP's
// datagrams (ip route add local VIP dev lo table local).
type vipRoute struct {
	route *netlink.Route
	refs  int
}

// isLocal reports whether the host delivers datagrams to a locally: an
// address on any interface (lo included, where operators put VIPs) or a
// local route, which is what the kernel's own lookup says (RTN_LOCAL).
func isLocal(a netip.Addr) (bool, error) {
	routes, err := netlink.RouteGet(a.AsSlice())
	if err != nil {
		// No route at all (an unreachable network): not local.
		if errors.Is(err, unix.ENETUNREACH) || errors.Is(err, unix.EHOSTUNREACH) {
			return false, nil
		}
		return false, fmt.Errorf("route lookup of %s: %w", a, err)
	}
	for _, r := range routes {
		if r.Type == unix.RTN_LOCAL {
			return true, nil
		}
	}
	return false, nil
}

// addLocalRoute makes vip local with a host route of type local on lo in
// table local, the kind the kernel adds for an address on an interface
// (ip-route(8) "local"). It does not touch an address that already is.
func addLocalRoute(vip netip.Addr) (*netlink.Route, error) {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return nil, fmt.Errorf("find lo: %w", err)
	}
	r := &netlink.Route{
		LinkIndex: lo.Attrs().Index,
		Dst:       &net.IPNet{IP: vip.AsSlice(), Mask: net.CIDRMask(vip.BitLen(), vip.BitLen())},
		Type:      unix.RTN_LOCAL,
		Table:     unix.RT_TABLE_LOCAL,
		Scope:     netlink.SCOPE_HOST,
		Protocol:  unix.RTPROT_STATIC,
	}
	if err := netlink.RouteAdd(r); err != nil {
		return nil, err
	}
	return r, nil
}

// holdVIP makes vip local for a service, counting holders so that two
// services on one address (different ports) share the route. It adds
// nothing when the host already accepts vip.
func (p *Proxy) holdVIP(vip netip.Addr) (added bool, err error) {
	if r := p.vipRoutes[vip]; r != nil {
		r.refs++
		return true, nil
	}
	local, err := isLocal(vip)
	if err != nil {
		return false, fmt.Errorf("%w: %w", ErrVIPNotLocal, err)
	}
	if local {
		return false, nil
	}
	r, err := addLocalRoute(vip)
	if err != nil {
		return false, fmt.Errorf("%w: %s is not an address of this host and adding a local route failed (%w); "+
			"put it on lo (ip addr add %s dev lo) or add the route (ip route add local %s dev lo table local)",
			ErrVIPNotLocal, vip, err, netip.PrefixFrom(vip, vip.BitLen()), netip.PrefixFrom(vip, vip.BitLen()))
	}
	p.log.Info("added a local route so the host accepts the vip's datagrams", "vip", vip)
	p.vipRoutes[vip] = &vipRoute{route: r, refs: 1}
	return true, nil
}

// releaseVIP drops a service's hold on vip, removing the route spooky
// added once no service uses it.
func (p *Proxy) releaseVIP(vip netip.Addr) {
	r := p.vipRoutes[vip]
	if r == nil {
		return
	}
	if r.refs--; r.refs > 0 {
		return
	}
	delete(p.vipRoutes, vip)
	if err := netlink.RouteDel(r.route); err != nil && !errors.Is(err, unix.ESRCH) {
		p.log.Warn("remove the vip's local route", "vip", vip, "err", err)
		return
	}
	p.log.Info("removed the vip's local route", "vip", vip)
}
