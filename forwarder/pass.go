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

// passDir holds the pass-through program's pin directories, one per
// interface.
const passDir = "pass"

// PassPinDir is where the pass-through program of iface is pinned. It does
// not check iface; AttachPass and DetachPass do.
func PassPinDir(root, iface string) string {
	return filepath.Join(rootOrDefault(root), passDir, iface)
}

// AttachPass attaches a program that passes every packet (XDP_PASS) to
// iface in native mode and pins it. Linux veth delivers frames that the
// other end sent with XDP_TX only if this end runs an XDP program too
// (drivers/net/veth.c: without one the peer counts xdp_tx_errors), so the
// peer of a veth that spooky attaches to needs one. Attaching again is a
// no-op.
func AttachPass(root, iface string) error {
	if err := CheckInterfaceName(iface); err != nil {
		return err
	}
	l, err := netlink.LinkByName(iface)
	if err != nil {
		return fmt.Errorf("interface %q: %w", iface, ErrNoInterface)
	}
	dir, created, err := pinDir(root, true, passDir, iface)
	if err != nil {
		removeCreated(created)
		return err
	}
	if err := attachPassIn(dir, l); err != nil {
		removeCreated(created)
		return err
	}
	return nil
}

// attachPassIn is AttachPass with its pin in dir.
func attachPassIn(dir string, l netlink.Link) error {
	iface := l.Attrs().Name
	pin := filepath.Join(dir, linkPin)
	if pl, err := link.LoadPinnedLink(pin, nil); err == nil {
		return pl.Close()
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("open pinned link %s: %w", pin, err)
	}
	objs, err := bpf.LoadPass()
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
