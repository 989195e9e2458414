package forwarder

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"

	"github.com/spooky-lb/spooky/bpf"
)

// Detached says what a detach found and did.
type Detached struct {
	// Interface is the interface detached from.
	Interface string
	// Dir is its pin directory.
	Dir string
	// LinkPinned says an XDP link was pinned in Dir.
	LinkPinned bool
	// Program is the id of the pinned link's program; 0 if none.
	Program ebpf.ProgramID
	// WasAttached says netlink reported that program attached to
	// Interface before the detach. A pinned link can outlive its
	// attachment, e.g. when the interface was deleted.
	WasAttached bool
	// Removed lists the pins removed from Dir, by name.
	Removed []string
	// Kept lists what Dir holds that spooky does not pin there, left in
	// place; Dir stays if it is not empty.
	Kept []string
}

// String says what was detached and removed, one line each.
func (d *Detached) String() string {
	var b strings.Builder
	switch {
	case d.WasAttached:
		fmt.Fprintf(&b, "detached xdp program %d from %s\n", d.Program, d.Interface)
	case d.LinkPinned:
		fmt.Fprintf(&b, "the xdp link pinned for %s was not attached to it (a stale pin)\n", d.Interface)
	default:
		fmt.Fprintf(&b, "no xdp link was pinned for %s\n", d.Interface)
	}
	fmt.Fprintf(&b, "removed %s from %s: %s\n", count(len(d.Removed), "pin", "pins"), d.Dir, strings.Join(d.Removed, " "))
	if len(d.Kept) > 0 {
		fmt.Fprintf(&b, "left %s spooky did not pin in %s: %s\n", count(len(d.Kept), "entry", "entries"), d.Dir, strings.Join(d.Kept, " "))
	}
	return b.String()
}

func count(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// Detach takes the load balancer off iface and deletes its pins under root
// (DefaultPinRoot if empty), including the maps, and so the flows and
// counters. It removes only the files spooky pins, and only from iface's
// own pin directory.
func Detach(root, iface string) (*Detached, error) {
	maps, err := bpf.LBMapNames()
	if err != nil {
		return nil, err
	}
	return detach(root, "", iface, append(maps, idStorePin))
}

// DetachDecap takes the decapsulator off iface and deletes its pins.
func DetachDecap(root, iface string) (*Detached, error) {
	maps, err := bpf.DecapMapNames()
	if err != nil {
		return nil, err
	}
	return detach(root, decapDir, iface, maps)
}

// DetachPass takes the pass-through program off iface and deletes its pin.
func DetachPass(root, iface string) (*Detached, error) {
	return detach(root, passDir, iface, nil)
}

// detach takes the XDP link pinned in the pin directory of iface (under
// kind, if set) off iface, and removes it and the named map pins. If a
// program stays attached to iface, the error says so and wraps
// ErrStillAttached.
func detach(root, kind, iface string, maps []string) (*Detached, error) {
	if err := CheckInterfaceName(iface); err != nil {
		return nil, err
	}
	sub := []string{iface}
	if kind != "" {
		sub = []string{kind, iface}
	}
	dir, _, err := pinDir(root, false, sub...)
	before, haveIface := attachedProgram(iface)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nothingAttached(iface, filepath.Join(append([]string{rootOrDefault(root)}, sub...)...), before)
	}
	if err != nil {
		return nil, err
	}
	d := &Detached{Interface: iface, Dir: dir}
	pin := filepath.Join(dir, linkPin)
	switch l, err := link.LoadPinnedLink(pin, nil); {
	case err == nil:
		d.LinkPinned = true
		if info, err := l.Info(); err == nil {
			d.Program = info.Program
		}
		d.WasAttached = d.Program != 0 && before != nil && before.Attached && before.ProgId == uint32(d.Program)
		// Detaching the link takes the program off even while a running
		// daemon holds the link open; unpinning and closing alone would
		// leave it attached until that daemon exits.
		if err := l.Detach(); err != nil && !errors.Is(err, ebpf.ErrNotSupported) {
			l.Close()
			return nil, privilege(fmt.Errorf("detach xdp link of %s: %w", iface, err))
		}
		err := l.Unpin()
		l.Close()
		if err != nil {
			return nil, privilege(fmt.Errorf("unpin xdp link of %s: %w", iface, err))
		}
		d.Removed = append(d.Removed, linkPin)
	case !errors.Is(err, fs.ErrNotExist):
		return nil, privilege(fmt.Errorf("open pinned link %s: %w", pin, err))
	}
	for _, name := range maps {
		switch err := os.Remove(filepath.Join(dir, name)); {
		case err == nil:
			d.Removed = append(d.Removed, name)
		case !errors.Is(err, fs.ErrNotExist):
			return d, privilege(fmt.Errorf("remove pins of %s: %w", iface, err))
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return d, fmt.Errorf("list pin directory of %s: %w", iface, err)
	}
	for _, e := range entries {
		d.Kept = append(d.Kept, e.Name())
	}
	if len(d.Kept) == 0 {
		if err := os.Remove(dir); err != nil {
			return d, fmt.Errorf("remove pin directory of %s: %w", iface, err)
		}
	}
	if len(d.Removed) == 0 {
		return nil, nothingAttached(iface, dir, before)
	}
	if !haveIface {
		return d, nil
	}
	if after, _ := attachedProgram(iface); after != nil && after.Attached {
		if d.Program != 0 && after.ProgId == uint32(d.Program) {
			return d, fmt.Errorf("xdp program %d of %s: %w", after.ProgId, iface, ErrStillAttached)
		}
		return d, fmt.Errorf("xdp program %d of %s, not the one pinned in %s: %w (ip link set dev %s xdp off removes it)",
			after.ProgId, iface, dir, ErrStillAttached, iface)
	}
	return d, nil
}

// attachedProgram returns what netlink reports attached to iface (nil if
// nothing), and whether iface exists.
func attachedProgram(iface string) (*netlink.LinkXdp, bool) {
	l, err := netlink.LinkByName(iface)
	if err != nil {
		return nil, false
	}
	return l.Attrs().Xdp, true
}

// nothingAttached is the error of a detach that found no pins: it says
// so, and names a program that is attached to iface all the same.
func nothingAttached(iface, dir string, xdp *netlink.LinkXdp) error {
	if xdp != nil && xdp.Attached {
		return fmt.Errorf("%w to %s by these pins (none in %s); xdp program %d on it is not from them",
			ErrNothingAttached, iface, dir, xdp.ProgId)
	}
	return fmt.Errorf("%w to %s (no pins in %s)", ErrNothingAttached, iface, dir)
}
