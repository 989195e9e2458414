package netns

import (
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
)

// AddHost adds a host on the lab's bridge, as [New] adds the client, the
// load-balancer host and the backends: a second load balancer, or a router
// in front of them. name must be unique in the lab; v4 and v6 get the
// segment's prefix lengths (/24, /64).
func (l *Lab) AddHost(name string, v4, v6 netip.Addr, opt HostOptions) (*Host, error) {
	return l.addHost(name, v4, v6, opt)
}

// AddHostBehind adds a host on a segment of its own: its eth0 is a veth
// straight to a new interface viaIface of host via, which is the host's
// way to the rest of the lab (a router, say). v4 and v6 are the new host's
// prefixes (address and length); viaV4 and viaV6 those of viaIface. The
// host's PeerName and PeerIndex are unset: it is no bridge port.
func (l *Lab) AddHostBehind(name string, via *Host, viaIface string, v4, v6, viaV4, viaV6 netip.Prefix) (*Host, error) {
	handle, err := l.newNamespace(name)
	if err != nil {
		return nil, err
	}
	h := &Host{Name: name, NS: l.Name + name, Iface: HostIface, IPv4: v4.Addr(), IPv6: v6.Addr(), lab: l, handle: handle}
	for _, k := range []string{"net.ipv6.conf.all.accept_dad", "net.ipv6.conf.default.accept_dad"} {
		if err := h.SetSysctl(k, "0"); err != nil {
			return nil, err
		}
	}
	veth := netlink.NewVeth(netlink.LinkAttrs{Name: viaIface, MTU: 1500})
	veth.PeerName = HostIface
	veth.PeerNamespace = netlink.NsFd(int(handle))
	err = via.Do(func() error {
		if err := netlink.LinkAdd(veth); err != nil {
			return fmt.Errorf("add veth %s in %s (peer %s in %s): %w", viaIface, via.NS, HostIface, h.NS, err)
		}
		l, err := netlink.LinkByName(viaIface)
		if err != nil {
			return fmt.Errorf("find %s: %w", viaIface, err)
		}
		for _, p := range []netip.Prefix{viaV4, viaV6} {
			if err := addAddr(l, p); err != nil {
				return err
			}
		}
		return linkUp(viaIface)
	})
	if err != nil {
		return nil, err
	}
	err = h.Do(func() error {
		if err := linkUp("lo"); err != nil {
			return err
		}
		eth, err := netlink.LinkByName(HostIface)
		if err != nil {
			return fmt.Errorf("find %s: %w", HostIface, err)
		}
		h.MAC = eth.Attrs().HardwareAddr
		for _, p := range []netip.Prefix{v4, v6} {
			if err := addAddr(eth, p); err != nil {
				return err
			}
		}
		return linkUp(HostIface)
	})
	if err != nil {
		return nil, err
	}
	if h.Index, err = h.ifindex(HostIface); err != nil {
		return nil, err
	}
	return h, nil
}

// SetLinkUp sets the host's eth0 up or down. Down, the host neither sends
// nor receives anything: as far as the others can tell, it has died
// without a word.
func (h *Host) SetLinkUp(up bool) error {
	return h.Do(func() error {
		l, err := netlink.LinkByName(h.Iface)
		if err != nil {
			return fmt.Errorf("find %s in %s: %w", h.Iface, h.NS, err)
		}
		set := netlink.LinkSetDown
		if up {
			set = netlink.LinkSetUp
		}
		if err := set(l); err != nil {
			return fmt.Errorf("set %s in %s up=%v: %w", h.Iface, h.NS, up, err)
		}
		return nil
	})
}
