package forwarder

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"

	"github.com/spooky-lb/spooky/bpf"
)

// PassPinDir is where the pass-through program of iface is pinned.
func PassPinDir(root, iface string) string {
	return filepath.Join(rootOrDefault(root), "pass", iface)
}

// AttachPass attaches a program that passes every packet (XDP_PASS) to
// iface in native mode and pins it. Linux veth delivers frames that the
// other end sent with XDP_TX only if this end runs an XDP program too
// (drivers/net/veth.c: without one the peer counts xdp_tx_errors), so the
// peer of a veth that spooky attaches to needs one. Attaching again is a
// no-op.
func AttachPass(root, iface string) error {
	l, err := netlink.LinkByName(iface)
	if err != nil {
		return fmt.Errorf("interface %q: %w", iface, ErrNoInterface)
	}
	if err := checkBPFFS(rootOrDefault(root)); err != nil {
		return err
	}
	dir := PassPinDir(root, iface)
	pin := filepath.Join(dir, linkPin)
	if pl, err := link.LoadPinnedLink(pin, nil); err == nil {
		return pl.Close()
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("open pinned link %s: %w", pin, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return privilege(fmt.Errorf("create pin directory: %w", err))
	}
	objs, err := bpf.LoadBaseline()
	if err != nil {
		return privilege(err)
	}
	defer objs.Close()
	xl, err := link.AttachXDP(link.XDPOptions{Program: objs.XdpPass, Interface: l.Attrs().Index, Flags: link.XDPDriverMode})
	if err != nil {
		return privilege(fmt.Errorf("attach pass program to %s: %w", iface, err))
	}
	defer xl.Close()
	if err := xl.Pin(pin); err != nil {
		return fmt.Errorf("pin pass link of %s: %w", iface, err)
	}
	return nil
}

// DetachPass removes the pass-through program from iface.
func DetachPass(root, iface string) error {
	return detachDir(PassPinDir(root, iface), iface)
}
