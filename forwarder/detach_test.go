package forwarder

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"

	"github.com/spooky-lb/spooky/bpf"
	"github.com/spooky-lb/spooky/test/netns"
)

func TestDetachWithHostileArgumentsRemovesNothing(t *testing.T) {
	lab := netns.New(t, netns.Config{Backends: 1})
	root := mustBPFFSDir(t)
	// Every kind of pin directory is in use: the load balancer's, the
	// decapsulator's and the pass program's (of other hosts, which all
	// name their interface eth0).
	mustAttachAndClose(t, lab.LB, root, lab.LB.Iface)
	if err := lab.Backends[0].Do(func() error { _, err := AttachDecap(root, netns.HostIface, XDPNative, quiet()); return err }); err != nil {
		t.Fatal(err)
	}
	if err := lab.Client.Do(func() error { return AttachPass(root, netns.HostIface) }); err != nil {
		t.Fatal(err)
	}
	programs := map[*netns.Host]uint32{}
	for _, h := range []*netns.Host{lab.LB, lab.Backends[0], lab.Client} {
		if programs[h] = mustXDPProgram(t, h, h.Iface); programs[h] == 0 {
			t.Fatalf("nothing attached to %s of %s", h.Iface, h)
		}
	}
	// Sentinels outside the pin root, holding files named like spooky's
	// pins: one on bpffs beside the root, one on another filesystem.
	sibling := mustBPFFSDir(t)
	mustPinMap(t, filepath.Join(sibling, "vips"))
	outside := filepath.Join(t.TempDir(), "sentinel")
	mustMkdir(t, outside, 0o700)
	for _, name := range []string{"link", "vips"} {
		if err := os.WriteFile(filepath.Join(outside, name), []byte("keep\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	relOutside, err := filepath.Rel(root, outside)
	if err != nil {
		t.Fatal(err)
	}
	trees := func() string { return mustTree(t, root) + mustTree(t, sibling) + mustTree(t, outside) }
	before := trees()

	hostile := []string{".", "..", "", "../" + filepath.Base(sibling), relOutside, outside, "eth0/..", "./eth0", "eth0/", "eth0\n"}
	for _, op := range pinOps() {
		if !strings.HasSuffix(op.name, "detach") && op.name != "stats" {
			continue
		}
		for _, arg := range hostile {
			t.Run(fmt.Sprintf("%s %q is refused", op.name, arg), func(t *testing.T) {
				err := lab.LB.Do(func() error { return op.run(root, arg) })
				if !errors.Is(err, ErrInterfaceName) {
					t.Errorf("err = %v, want ErrInterfaceName", err)
				}
			})
		}
	}
	if after := trees(); after != before {
		t.Errorf("hostile detaches changed files:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	for h, id := range programs {
		if got := mustXDPProgram(t, h, h.Iface); got != id {
			t.Errorf("xdp program on %s of %s = %d, want %d still attached", h.Iface, h, got, id)
		}
	}

	t.Run("detach of the interface removes its pins and nothing else", func(t *testing.T) {
		if err := lab.LB.Do(func() error { _, err := Detach(root, lab.LB.Iface); return err }); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Lstat(PinDir(root, lab.LB.Iface)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("pin directory of %s: %v, want it gone", lab.LB.Iface, err)
		}
		want := strings.Join(slices.DeleteFunc(strings.SplitAfter(before, "\n"), func(line string) bool {
			return strings.HasPrefix(line, PinDir(root, lab.LB.Iface)+" ") || strings.HasPrefix(line, PinDir(root, lab.LB.Iface)+"/")
		}), "")
		if after := trees(); after != want {
			t.Errorf("files after detach:\n%s\nwant:\n%s", after, want)
		}
		for h, id := range programs {
			if h == lab.LB {
				id = 0
			}
			if got := mustXDPProgram(t, h, h.Iface); got != id {
				t.Errorf("xdp program on %s of %s = %d, want %d", h.Iface, h, got, id)
			}
		}
	})
}

// detachKind is one of spooky's XDP programs, attached and detached by
// commands of its own.
type detachKind struct {
	name   string
	attach func(root, iface string) error
	detach func(root, iface string) (*Detached, error)
	dir    func(root, iface string) string
	// pins are the files the attach makes.
	pins []string
}

func detachKinds(tb testing.TB) []detachKind {
	tb.Helper()
	lbMaps, err := bpf.LBMapNames()
	if err != nil {
		tb.Fatal(err)
	}
	decapMaps, err := bpf.DecapMapNames()
	if err != nil {
		tb.Fatal(err)
	}
	return []detachKind{
		{"load balancer", func(root, iface string) error {
			x, err := Attach(AttachOptions{Interface: iface, PinRoot: root, Logger: quiet()})
			if err == nil {
				x.Close()
			}
			return err
		}, Detach, PinDir, append([]string{"link", "spooky_ids"}, lbMaps...)},
		{"decapsulator", func(root, iface string) error {
			_, err := AttachDecap(root, iface, XDPNative, quiet())
			return err
		}, DetachDecap, DecapPinDir, append([]string{"link"}, decapMaps...)},
		{"pass program", AttachPass, DetachPass, PassPinDir, []string{"link"}},
	}
}

func TestDetachReportsWhatItRemoved(t *testing.T) {
	lab := netns.New(t, netns.Config{Backends: 1})
	h := lab.LB
	for _, k := range detachKinds(t) {
		root := mustBPFFSDir(t)
		dir := k.dir(root, h.Iface)
		t.Run("detach of the "+k.name+" takes it off and removes every pin it made", func(t *testing.T) {
			if err := h.Do(func() error { return k.attach(root, h.Iface) }); err != nil {
				t.Fatal(err)
			}
			if got := mustDirNames(t, dir); !equalSets(got, k.pins) {
				t.Fatalf("attach pinned %v, want %v", got, k.pins)
			}
			id := mustXDPProgram(t, h, h.Iface)
			var d *Detached
			err := h.Do(func() (err error) { d, err = k.detach(root, h.Iface); return err })
			if err != nil {
				t.Fatal(err)
			}
			if !d.LinkPinned || !d.WasAttached || uint32(d.Program) != id || !equalSets(d.Removed, k.pins) || len(d.Kept) != 0 {
				t.Errorf("report %+v, want the link of program %d pinned and attached, %v removed, nothing kept", d, id, k.pins)
			}
			if !strings.Contains(d.String(), fmt.Sprintf("detached xdp program %d from %s\n", id, h.Iface)) {
				t.Errorf("report says %q", d)
			}
			if got := mustXDPProgram(t, h, h.Iface); got != 0 {
				t.Errorf("xdp program %d still attached", got)
			}
			if _, err := os.Lstat(dir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("pin directory %s: %v, want it gone", dir, err)
			}
			mustLstat(t, root)
		})
		t.Run("a second detach of the "+k.name+" says nothing is attached", func(t *testing.T) {
			err := h.Do(func() error { _, err := k.detach(root, h.Iface); return err })
			if !errors.Is(err, ErrNothingAttached) || !strings.Contains(err.Error(), "nothing attached to "+h.Iface) {
				t.Errorf("err = %v, want ErrNothingAttached naming %s", err, h.Iface)
			}
		})
	}

	t.Run("detach while the daemon holds the link takes the program off", func(t *testing.T) {
		root := mustBPFFSDir(t)
		x := mustAttach(t, h, root, h.Iface)
		var d *Detached
		if err := h.Do(func() (err error) { d, err = Detach(root, h.Iface); return err }); err != nil {
			t.Fatal(err)
		}
		if !d.WasAttached {
			t.Errorf("report %+v, want the program reported attached", d)
		}
		if got := mustXDPProgram(t, h, h.Iface); got != 0 {
			t.Errorf("xdp program %d still attached while the daemon holds its link", got)
		}
		if err := x.Close(); err != nil {
			t.Errorf("daemon close after detach: %v", err)
		}
	})

	t.Run("detach says the program stays attached when its link is not pinned", func(t *testing.T) {
		root := mustBPFFSDir(t)
		x := mustAttach(t, h, root, h.Iface)
		defer x.Close()
		id := mustXDPProgram(t, h, h.Iface)
		if err := os.Remove(filepath.Join(PinDir(root, h.Iface), "link")); err != nil {
			t.Fatal(err)
		}
		var d *Detached
		err := h.Do(func() (err error) { d, err = Detach(root, h.Iface); return err })
		want := fmt.Sprintf("xdp program %d of %s, not the one pinned in %s: stays attached after detach", id, h.Iface, PinDir(root, h.Iface))
		if !errors.Is(err, ErrStillAttached) || !strings.Contains(err.Error(), want) {
			t.Fatalf("err = %v, want ErrStillAttached saying %q", err, want)
		}
		if d == nil || d.LinkPinned || d.WasAttached || len(d.Removed) == 0 {
			t.Errorf("report %+v, want no link, the maps removed", d)
		}
		if got := mustXDPProgram(t, h, h.Iface); got != id {
			t.Errorf("xdp program = %d, want %d still attached", got, id)
		}
	})

	t.Run("detach leaves pins it did not make in place", func(t *testing.T) {
		root := mustBPFFSDir(t)
		mustAttachAndClose(t, h, root, h.Iface)
		dir := PinDir(root, h.Iface)
		mustPinMap(t, filepath.Join(dir, "foreign"))
		var d *Detached
		if err := h.Do(func() (err error) { d, err = Detach(root, h.Iface); return err }); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(d.Kept, []string{"foreign"}) || !strings.Contains(d.String(), "left 1 entry spooky did not pin in "+dir+": foreign\n") {
			t.Errorf("report %+v says %q, want foreign kept", d, d)
		}
		if got := mustDirNames(t, dir); !slices.Equal(got, []string{"foreign"}) {
			t.Errorf("pin directory holds %v, want only foreign", got)
		}
	})

	t.Run("detach reports a stale link pin as not attached", func(t *testing.T) {
		root := mustBPFFSDir(t)
		const stale = "stale0"
		err := h.Do(func() error {
			return netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: stale}, PeerName: "stale1"})
		})
		if err != nil {
			t.Fatal(err)
		}
		err = h.Do(func() error {
			x, err := Attach(AttachOptions{Interface: stale, Mode: XDPGeneric, PinRoot: root, Logger: quiet()})
			if err != nil {
				return err
			}
			x.Close()
			// Deleting the interface detaches the link but leaves it
			// pinned.
			l, err := netlink.LinkByName(stale)
			if err != nil {
				return err
			}
			return netlink.LinkDel(l)
		})
		if err != nil {
			t.Fatal(err)
		}
		var d *Detached
		if err := h.Do(func() (err error) { d, err = Detach(root, stale); return err }); err != nil {
			t.Fatal(err)
		}
		if !d.LinkPinned || d.WasAttached || !slices.Contains(d.Removed, "link") {
			t.Errorf("report %+v, want a pinned link that was not attached, removed", d)
		}
		if !strings.Contains(d.String(), "the xdp link pinned for stale0 was not attached to it") {
			t.Errorf("report says %q", d)
		}
	})
}

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// mustAttach attaches the load balancer to iface of host h, pinned under
// root; the caller closes it.
func mustAttach(tb testing.TB, h *netns.Host, root, iface string) *XDP {
	tb.Helper()
	var x *XDP
	err := h.Do(func() (err error) {
		x, err = Attach(AttachOptions{Interface: iface, PinRoot: root, Logger: quiet()})
		return err
	})
	if err != nil {
		tb.Fatalf("attach to %s of %s: %v", iface, h, err)
	}
	return x
}

// mustAttachAndClose attaches the load balancer and closes it, as a daemon
// that exited leaves it: attached through the pinned link.
func mustAttachAndClose(tb testing.TB, h *netns.Host, root, iface string) {
	tb.Helper()
	if err := mustAttach(tb, h, root, iface).Close(); err != nil {
		tb.Fatal(err)
	}
}

// mustPinMap pins a small map at path.
func mustPinMap(tb testing.TB, path string) {
	tb.Helper()
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	if err != nil {
		tb.Fatal(err)
	}
	defer m.Close()
	if err := m.Pin(path); err != nil {
		tb.Fatal(err)
	}
}

// mustDirNames lists the names in dir, sorted.
func mustDirNames(tb testing.TB, dir string) []string {
	tb.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		tb.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func equalSets(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
