package netns

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// AddVIP prepares the host as a direct-server-return backend for vip: the
// address goes on lo (/32 or /128), and the sysctls make the host accept
// packets for it on eth0 without ever answering ARP for it, so only the load
// balancer draws the VIP's traffic:
//
//   - rp_filter=0: the VIP is not on the interface packets arrive on.
//   - arp_ignore=1: answer ARP only for addresses of the asking interface
//     (not for the VIP on lo).
//   - arp_announce=2: never source ARP requests from the VIP.
//
// IPv6 needs no such knobs: neighbour solicitations are answered only for
// addresses on the interface they arrive on (RFC 4861 §7.2.3). A server that
// should answer from the VIP must bind to it.
func (h *Host) AddVIP(vip netip.Addr) error {
	sysctls := [][2]string{
		{"net.ipv4.conf.all.rp_filter", "0"},
		{"net.ipv4.conf.default.rp_filter", "0"},
		{"net.ipv4.conf.lo.rp_filter", "0"},
		{"net.ipv4.conf." + h.Iface + ".rp_filter", "0"},
		{"net.ipv4.conf.all.arp_ignore", "1"},
		{"net.ipv4.conf." + h.Iface + ".arp_ignore", "1"},
		{"net.ipv4.conf.all.arp_announce", "2"},
		{"net.ipv4.conf." + h.Iface + ".arp_announce", "2"},
	}
	for _, s := range sysctls {
		if err := h.SetSysctl(s[0], s[1]); err != nil {
			return err
		}
	}
	return h.Do(func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return fmt.Errorf("find lo: %w", err)
		}
		return addAddr(lo, netip.PrefixFrom(vip, vip.BitLen()))
	})
}

// AddAddr adds p to the host's eth0 (without IPv6 duplicate address
// detection), e.g. a VIP on the load-balancer host.
func (h *Host) AddAddr(p netip.Prefix) error {
	return h.Do(func() error {
		l, err := netlink.LinkByName(h.Iface)
		if err != nil {
			return fmt.Errorf("find %s: %w", h.Iface, err)
		}
		return addAddr(l, p)
	})
}

// AddRoute routes dst via gw out of the host's eth0 (replacing any route to
// dst), e.g. the VIP via the load-balancer host on the client.
func (h *Host) AddRoute(dst netip.Prefix, gw netip.Addr) error {
	if dst.Addr().Is4() != gw.Is4() {
		return fmt.Errorf("route %s via %s: address families differ", dst, gw)
	}
	return h.Do(func() error {
		r := &netlink.Route{
			LinkIndex: h.Index,
			Dst:       &net.IPNet{IP: dst.Addr().AsSlice(), Mask: net.CIDRMask(dst.Bits(), dst.Addr().BitLen())},
			Gw:        gw.AsSlice(),
		}
		if err := netlink.RouteReplace(r); err != nil {
			return fmt.Errorf("route %s via %s in %s: %w", dst, gw, h.NS, err)
		}
		return nil
	})
}

// AddNeighbor installs a permanent neighbour entry ip → mac on the host's
// eth0, so no ARP or neighbour discovery is needed to reach ip.
func (h *Host) AddNeighbor(ip netip.Addr, mac net.HardwareAddr) error {
	family := netlink.FAMILY_V4
	if ip.Is6() {
		family = netlink.FAMILY_V6
	}
	return h.Do(func() error {
		err := netlink.NeighSet(&netlink.Neigh{
			LinkIndex:    h.Index,
			Family:       family,
			State:        netlink.NUD_PERMANENT,
			IP:           ip.AsSlice(),
			HardwareAddr: mac,
		})
		if err != nil {
			return fmt.Errorf("neighbour %s → %s in %s: %w", ip, mac, h.NS, err)
		}
		return nil
	})
}

// AddStaticFDB installs a static forwarding entry on the lab's bridge: frames
// to mac go out of the bridge port of host to. A bridge learns a MAC only
// from frames that host sends; a backend that never sends (a sink in a
// benchmark) would otherwise have every frame to it flooded to all ports.
func (l *Lab) AddStaticFDB(to *Host, mac net.HardwareAddr) error {
	return l.Bridge.Do(func() error {
		err := netlink.NeighSet(&netlink.Neigh{
			LinkIndex:    to.PeerIndex,
			Family:       unix.AF_BRIDGE,
			State:        netlink.NUD_NOARP, // "static" in bridge(8)
			Flags:        netlink.NTF_MASTER,
			HardwareAddr: mac,
		})
		if err != nil {
			return fmt.Errorf("fdb %s → %s: %w", mac, to.PeerName, err)
		}
		return nil
	})
}

// StaticNeighbors installs, for every pair of hosts, permanent neighbour
// entries for each other's IPv4 and IPv6 addresses, and a static FDB entry on
// the bridge for every host's MAC: no ARP, neighbour discovery, or flooding
// after that.
func (l *Lab) StaticNeighbors() error {
	var errs []error
	for _, h := range l.Hosts() {
		errs = append(errs, l.AddStaticFDB(h, h.MAC))
		for _, o := range l.Hosts() {
			if o == h {
				continue
			}
			for _, a := range o.Addrs() {
				errs = append(errs, h.AddNeighbor(a, o.MAC))
			}
		}
	}
	return errors.Join(errs...)
}
