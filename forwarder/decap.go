package forwarder

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"

	"github.com/spooky-lb/spooky/bpf"
)

// decapDir holds the decapsulator's pin directories, one per interface.
const decapDir = "decap"

// DecapPinDir is where the decapsulator of iface is pinned under root. It
// does not check iface; AttachDecap and DetachDecap do.
func DecapPinDir(root, iface string) string {
	return filepath.Join(rootOrDefault(root), decapDir, iface)
}

// AttachDecap attaches the decapsulator (bpf/decap.c) to iface on a
// backend: it strips the outer IPv4/IPv6 header of tunnelled packets
// addressed to this host and passes the inner packet up, so backends need
// no kernel tunnel device. The program and maps are pinned, so it stays
// attached after the command exits; running it again re-reads the host's
// addresses and swaps the program in place. It returns the addresses it
// accepts tunnels for.
func AttachDecap(root, iface string, mode XDPMode, log *slog.Logger) ([]netip.Addr, error) {
	if log == nil {
		log = slog.Default()
	}
	if err := CheckInterfaceName(iface); err != nil {
		return nil, err
	}
	l, err := netlink.LinkByName(iface)
	if err != nil {
		return nil, fmt.Errorf("interface %q: %w", iface, ErrNoInterface)
	}
	dir, created, err := pinDir(root, true, decapDir, iface)
	if err != nil {
		removeCreated(created)
		return nil, err
	}
	local, err := attachDecapIn(dir, l, mode, log)
	if err != nil {
		removeCreated(created)
		return nil, err
	}
	return local, nil
}

// attachDecapIn is AttachDecap with its pins in dir.
func attachDecapIn(dir string, l netlink.Link, mode XDPMode, log *slog.Logger) ([]netip.Addr, error) {
	iface := l.Attrs().Name
	objs, err := bpf.LoadDecap(&bpf.LoadOptions{PinPath: dir})
	if err != nil {
		return nil, privilege(fmt.Errorf("load decap program: %w", err))
	}
	defer objs.Close()

	// Every local address: a tunnel may be addressed to any of them, and
	// addresses of other links (e.g. a service address on lo) count too.
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("list local addresses: %w", err)
	}
	var local []netip.Addr
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok || ip.IsLoopback() || ip.IsLinkLocalUnicast() {
			continue
		}
		ip = ip.Unmap()
		if err := objs.DecapAddrs.Put(bpf.NewDecapKey(ip), uint8(1)); err != nil {
			return nil, fmt.Errorf("write decap address %s: %w", ip, err)
		}
		local = append(local, ip)
	}

	pin := filepath.Join(dir, linkPin)
	if pl, err := link.LoadPinnedLink(pin, nil); err == nil {
		defer pl.Close()
		if err := pl.Update(objs.XdpDecap); err != nil {
			return nil, fmt.Errorf("replace decap program on %s: %w", iface, err)
		}
		return local, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("open pinned link %s: %w", pin, err)
	}
	flags := link.XDPDriverMode
	if mode == XDPGeneric {
		flags = link.XDPGenericMode
	}
	xl, err := link.AttachXDP(link.XDPOptions{Program: objs.XdpDecap, Interface: l.Attrs().Index, Flags: flags})
	if err != nil {
		return nil, privilege(fmt.Errorf("attach decap to %s: %w", iface, err))
	}
	defer xl.Close()
	if err := xl.Pin(pin); err != nil {
		return nil, fmt.Errorf("pin decap link of %s: %w", iface, err)
	}
	log.Info("attached decap", "interface", iface, "addresses", len(local))
	return local, nil
}
