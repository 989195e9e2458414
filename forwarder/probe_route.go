package forwarder

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/spooky-lb/spooky/bpf"
)

// Kernel state of the probe steering (probe.go): per address family a
// policy rule, a placeholder neighbour and, in the interface's probe
// table, a route per VIP. All of it is found again from the interface
// index alone, so a process that never saw the daemon (spooky detach) can
// remove it.

// probeFamilies are the families steering is set up for, with their
// placeholder next hop.
var probeFamilies = []struct {
	family int
	hop    netip.Addr
}{
	{unix.AF_INET, ProbeNextHopIPv4},
	{unix.AF_INET6, ProbeNextHopIPv6},
}

// probeRule is the policy rule of one family for the interface ifindex.
func probeRule(family, ifindex int) *netlink.Rule {
	r := netlink.NewRule()
	r.Family = family
	r.Priority = ProbeRulePriority
	r.Mark = bpf.ProbeMarkBase
	mask := bpf.ProbeMarkMask
	r.Mask = &mask
	r.Table = ProbeTable(ifindex)
	return r
}

// probeRoute is the probe route of vip out of iface, with mtu if not 0.
func probeRoute(iface netlink.Link, vip netip.Addr, hop netip.Addr, mtu int) *netlink.Route {
	return &netlink.Route{
		LinkIndex: iface.Attrs().Index,
		Dst:       &net.IPNet{IP: vip.AsSlice(), Mask: net.CIDRMask(vip.BitLen(), vip.BitLen())},
		Gw:        hop.AsSlice(),
		// The placeholder is in no subnet of the interface.
		Flags:    int(netlink.FLAG_ONLINK),
		Table:    ProbeTable(iface.Attrs().Index),
		Protocol: unix.RTPROT_STATIC,
		MTU:      mtu,
		// A locked MTU is not raised by PMTU discovery; TCP sizes its
		// segments from it (RFC 1191 §6.3 does not apply inside the
		// host).
		MTULock: mtu != 0,
	}
}

// syncProbeRoutes makes the kernel hold what routes (VIP -> route MTU, 0
// for the interface's) needs and nothing more: for each family with a VIP
// the placeholder neighbour, the VIP routes and the rule, in that order,
// so a packet the rule matches finds its route and neighbour; for a
// family without VIPs none of it.
func syncProbeRoutes(iface netlink.Link, routes map[netip.Addr]int) error {
	ifindex := iface.Attrs().Index
	for _, f := range probeFamilies {
		want := map[netip.Addr]int{}
		for vip, mtu := range routes {
			if (vip.Is4() && f.family == unix.AF_INET) || (vip.Is6() && f.family == unix.AF_INET6) {
				want[vip] = mtu
			}
		}
		if len(want) == 0 {
			if err := removeProbeFamily(f.family, ifindex, f.hop); err != nil {
				return err
			}
			continue
		}
		if err := setProbeNeighbour(iface, f.family, f.hop); err != nil {
			return err
		}
		if err := syncProbeTable(iface, f.family, f.hop, want); err != nil {
			return err
		}
		if err := addProbeRule(f.family, ifindex); err != nil {
			return err
		}
	}
	return nil
}

// setProbeNeighbour makes hop's entry on iface permanent with iface's
// MAC, writing only if it is not so already: the daemon re-applies on
// neighbour events, and a write would make one more.
func setProbeNeighbour(iface netlink.Link, family int, hop netip.Addr) error {
	attrs := iface.Attrs()
	neighs, err := netlink.NeighList(attrs.Index, family)
	if err != nil {
		return fmt.Errorf("list neighbours of %s: %w", attrs.Name, err)
	}
	for _, n := range neighs {
		if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap() == hop &&
			n.State == netlink.NUD_PERMANENT && bytes.Equal(n.HardwareAddr, attrs.HardwareAddr) {
			return nil
		}
	}
	err = netlink.NeighSet(&netlink.Neigh{
		LinkIndex:    attrs.Index,
		Family:       family,
		State:        netlink.NUD_PERMANENT,
		IP:           hop.AsSlice(),
		HardwareAddr: attrs.HardwareAddr,
	})
	if err != nil {
		return fmt.Errorf("set probe next hop %s on %s: %w", hop, attrs.Name, err)
	}
	return nil
}

// syncProbeTable makes the family's routes in iface's probe table equal
// want.
func syncProbeTable(iface netlink.Link, family int, hop netip.Addr, want map[netip.Addr]int) error {
	table := ProbeTable(iface.Attrs().Index)
	have, err := probeTableRoutes(family, table)
	if err != nil {
		return err
	}
	for _, r := range have {
		vip, ok := routeDst(r)
		mtu, wanted := want[vip]
		if ok && wanted && r.LinkIndex == iface.Attrs().Index && r.Gw.Equal(hop.AsSlice()) && r.MTU == mtu {
			delete(want, vip) // already right
			continue
		}
		if err := netlink.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("remove probe route %s from table %d: %w", r.Dst, table, err)
		}
	}
	for vip, mtu := range want {
		if err := netlink.RouteReplace(probeRoute(iface, vip, hop, mtu)); err != nil {
			return fmt.Errorf("add probe route to %s via %s dev %s table %d: %w", vip, hop, iface.Attrs().Name, table, err)
		}
	}
	return nil
}

// addProbeRule adds the family's rule for ifindex unless it is there.
func addProbeRule(family, ifindex int) error {
	rules, err := probeRules(family, ifindex)
	if err != nil {
		return err
	}
	if len(rules) > 0 {
		return nil
	}
	if err := netlink.RuleAdd(probeRule(family, ifindex)); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add probe rule fwmark %#x/%#x lookup %d: %w", bpf.ProbeMarkBase, bpf.ProbeMarkMask, ProbeTable(ifindex), err)
	}
	return nil
}

// probeRules lists the family's probe rules that look up ifindex's table.
func probeRules(family, ifindex int) ([]netlink.Rule, error) {
	rules, err := netlink.RuleListFiltered(family, &netlink.Rule{Table: ProbeTable(ifindex)}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("list rules: %w", err)
	}
	return rules, nil
}

func probeTableRoutes(family, table int) ([]netlink.Route, error) {
	routes, err := netlink.RouteListFiltered(family, &netlink.Route{Table: table}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("list routes of table %d: %w", table, err)
	}
	return routes, nil
}

func routeDst(r netlink.Route) (netip.Addr, bool) {
	if r.Dst == nil {
		return netip.Addr{}, false
	}
	ones, bits := r.Dst.Mask.Size()
	ip, ok := netip.AddrFromSlice(r.Dst.IP)
	if !ok || ones != bits {
		return netip.Addr{}, false
	}
	return ip.Unmap(), true
}

// removeProbeFamily removes the family's rule, routes and placeholder
// neighbour for ifindex: the rule first, so that no packet is steered to
// a table being emptied.
func removeProbeFamily(family, ifindex int, hop netip.Addr) error {
	rules, err := probeRules(family, ifindex)
	if err != nil {
		return err
	}
	for _, r := range rules {
		if err := netlink.RuleDel(&r); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("remove probe rule of table %d: %w", r.Table, err)
		}
	}
	routes, err := probeTableRoutes(family, ProbeTable(ifindex))
	if err != nil {
		return err
	}
	for _, r := range routes {
		if err := netlink.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("remove probe route %s: %w", r.Dst, err)
		}
	}
	err = netlink.NeighDel(&netlink.Neigh{LinkIndex: ifindex, Family: family, IP: hop.AsSlice()})
	if err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("remove probe next hop %s: %w", hop, err)
	}
	return nil
}

// removeProbeSteering removes every family's probe state of ifindex.
func removeProbeSteering(ifindex int) error {
	var errs []error
	for _, f := range probeFamilies {
		errs = append(errs, removeProbeFamily(f.family, ifindex, f.hop))
	}
	return errors.Join(errs...)
}

// RemoveProbeSteering removes the probe rules, routes and placeholder
// neighbours of iface, and rules left by interfaces that no longer exist
// (their routes and neighbours went with them). It is for spooky detach;
// a daemon's Close removes its own. The tc program needs no removal: it
// is attached only while the daemon runs.
func RemoveProbeSteering(iface string) error {
	var errs []error
	if l, err := netlink.LinkByName(iface); err == nil {
		errs = append(errs, removeProbeSteering(l.Attrs().Index))
	}
	for _, f := range probeFamilies {
		rules, err := netlink.RuleList(f.family)
		if err != nil {
			errs = append(errs, fmt.Errorf("list rules: %w", err))
			continue
		}
		for _, r := range rules {
			ifindex := r.Table - ProbeTableBase
			if r.Priority != ProbeRulePriority || r.Mark != bpf.ProbeMarkBase || ifindex <= 0 {
				continue
			}
			if _, err := netlink.LinkByIndex(ifindex); err == nil {
				continue // another interface's, in use
			}
			if err := netlink.RuleDel(&r); err != nil && !errors.Is(err, unix.ENOENT) {
				errs = append(errs, fmt.Errorf("remove probe rule of table %d: %w", r.Table, err))
			}
		}
	}
	return privilege(errors.Join(errs...))
}
