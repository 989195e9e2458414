package forwarder

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/spooky-lb/spooky/test/netns"
)

func TestCheckInterfaceName(t *testing.T) {
	tests := []struct {
		name    string
		iface   string
		problem string // in the error; "" if the name is valid
	}{
		{"a plain name is valid", "eth0", ""},
		{"a name with a dash is valid", "veth-lb1", ""},
		{"a 15-byte name is valid", "abcdefghijklmno", ""},
		{"three dots are a valid name", "...", ""},
		{"an empty name is refused", "", "it is empty"},
		{"a 16-byte name is refused", "abcdefghijklmnop", "it is 16 bytes long, the kernel allows at most 15"},
		{"dot is refused", ".", `"." and ".." name directories`},
		{"dot-dot is refused", "..", `"." and ".." name directories`},
		{"a slash is refused", "a/b", `it contains '/'`},
		{"a path out of the pin root is refused", "../../tmp/x", `it contains '/'`},
		{"a long path is refused for its length", "../../../../tmp/x", "it is 17 bytes long"},
		{"a trailing slash is refused", "eth0/", `it contains '/'`},
		{"a colon (alias) is refused", "eth0:1", `it contains ':'`},
		{"a space is refused", "eth 0", `it contains ' '`},
		{"a tab is refused", "eth\t0", `it contains '\t'`},
		{"a newline is refused", "eth0\n", `it contains '\n'`},
		{"a NUL is refused", "eth\x000", `it contains '\x00'`},
		{"the kernel's Latin-1 space is refused", "eth\xa00", `it contains '\u00a0'`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckInterfaceName(tt.iface)
			if tt.problem == "" {
				if err != nil {
					t.Fatalf("CheckInterfaceName(%q) = %v, want nil", tt.iface, err)
				}
				return
			}
			if !errors.Is(err, ErrInterfaceName) {
				t.Fatalf("CheckInterfaceName(%q) = %v, want ErrInterfaceName", tt.iface, err)
			}
			for _, want := range []string{"invalid interface name", tt.problem} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
		})
	}
}

// pinOp is one operation that takes a pin root and an interface name.
type pinOp struct {
	name string
	run  func(root, iface string) error
}

// pinOps are every operation that finds or makes pins.
func pinOps() []pinOp {
	return []pinOp{
		{"attach", func(root, iface string) error {
			x, err := Attach(AttachOptions{Interface: iface, PinRoot: root, Logger: quiet()})
			if err == nil {
				x.Close()
			}
			return err
		}},
		{"detach", func(root, iface string) error { _, err := Detach(root, iface); return err }},
		{"stats", func(root, iface string) error { _, err := ReadStats(root, iface); return err }},
		{"decap attach", func(root, iface string) error { _, err := AttachDecap(root, iface, XDPNative, quiet()); return err }},
		{"decap detach", func(root, iface string) error { _, err := DetachDecap(root, iface); return err }},
		{"xdp-pass attach", func(root, iface string) error { return AttachPass(root, iface) }},
		{"xdp-pass detach", func(root, iface string) error { _, err := DetachPass(root, iface); return err }},
	}
}

func TestPinDirectoriesSpookyDoesNotOwnAreRefused(t *testing.T) {
	lab := netns.New(t, netns.Config{Backends: 1})
	iface := lab.LB.Iface
	const nobody = 65534
	tests := []struct {
		name string
		// setup makes the pin root, or something in it, unsafe.
		setup func(tb testing.TB, root string)
		want  string // in every operation's error; %s is the root
	}{
		{"a pin root owned by another uid is refused by every command",
			func(tb testing.TB, root string) {
				mustMkdir(tb, root, 0o700)
				mustChown(tb, root, nobody)
			}, "pin root %s is owned by uid 65534; remove it or chown it to root"},
		{"a pin root writable by its group is refused by every command",
			func(tb testing.TB, root string) {
				mustMkdir(tb, root, 0o700)
				mustChmod(tb, root, 0o770)
			}, "pin root %s is writable by group or others (mode 0770); remove it or chmod it 0700"},
		{"a pin root writable by everyone is refused by every command",
			func(tb testing.TB, root string) {
				mustMkdir(tb, root, 0o700)
				mustChmod(tb, root, 0o777)
			}, "pin root %s is writable by group or others (mode 0777)"},
		{"a pin root that is a symlink is refused by every command",
			func(tb testing.TB, root string) {
				real := root + "-real"
				mustMkdir(tb, real, 0o700)
				if err := os.Symlink(real, root); err != nil {
					tb.Fatal(err)
				}
			}, "pin root %s is a symlink"},
		{"interface directories owned by another uid are refused by every command",
			func(tb testing.TB, root string) {
				mustMkdir(tb, root, 0o700)
				for _, d := range []string{iface, "decap", "decap/" + iface, "pass", "pass/" + iface} {
					mustMkdir(tb, filepath.Join(root, d), 0o700)
				}
				for _, d := range []string{iface, "decap/" + iface, "pass/" + iface} {
					mustChown(tb, filepath.Join(root, d), nobody)
				}
			}, "pin directory %s/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := filepath.Join(mustBPFFSDir(t), "spooky")
			tt.setup(t, root)
			before := mustTree(t, filepath.Dir(root))
			want := strings.ReplaceAll(tt.want, "%s", root)
			for _, op := range pinOps() {
				err := lab.LB.Do(func() error { return op.run(root, iface) })
				if !errors.Is(err, ErrUnsafePinDir) || !strings.Contains(err.Error(), want) {
					t.Errorf("%s = %v, want ErrUnsafePinDir saying %q", op.name, err, want)
				}
			}
			if after := mustTree(t, filepath.Dir(root)); after != before {
				t.Errorf("the commands changed the pin root:\nbefore:\n%s\nafter:\n%s", before, after)
			}
			if id := mustXDPProgram(t, lab.LB, iface); id != 0 {
				t.Errorf("xdp program %d attached to %s; want none", id, iface)
			}
		})
	}
}

func TestAttachMakesPinDirectoriesOnlyItsUIDCanWrite(t *testing.T) {
	lab := netns.New(t, netns.Config{Backends: 1})
	iface := lab.LB.Iface
	for _, op := range pinOps() {
		if !strings.HasSuffix(op.name, "attach") {
			continue
		}
		t.Run(op.name+" makes the pin root and its directories mode 0700", func(t *testing.T) {
			root := filepath.Join(mustBPFFSDir(t), "spooky")
			if err := lab.LB.Do(func() error { return op.run(root, iface) }); err != nil {
				t.Fatal(err)
			}
			dirs := map[string][]string{
				"attach":          {root, filepath.Join(root, iface)},
				"decap attach":    {root, filepath.Join(root, "decap"), filepath.Join(root, "decap", iface)},
				"xdp-pass attach": {root, filepath.Join(root, "pass"), filepath.Join(root, "pass", iface)},
			}[op.name]
			for _, d := range dirs {
				fi := mustLstat(t, d)
				if st := fi.Sys().(*syscall.Stat_t); fi.Mode() != fs.ModeDir|0o700 || int(st.Uid) != os.Geteuid() {
					t.Errorf("%s: mode %v uid %d, want drwx------ uid %d", d, fi.Mode(), st.Uid, os.Geteuid())
				}
			}
			detachOp := strings.TrimSuffix(op.name, "attach") + "detach"
			for _, o := range pinOps() {
				if o.name == detachOp {
					if err := lab.LB.Do(func() error { return o.run(root, iface) }); err != nil {
						t.Fatalf("%s: %v", o.name, err)
					}
				}
			}
		})
	}
}

// mustTree lists dir and every entry under it with its mode and owner,
// one a line, or says dir is missing.
func mustTree(tb testing.TB, dir string) string {
	tb.Helper()
	var b strings.Builder
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if p == dir && errors.Is(err, fs.ErrNotExist) {
			fmt.Fprintf(&b, "%s missing\n", p)
			return nil
		}
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s %v uid %d\n", p, fi.Mode(), fi.Sys().(*syscall.Stat_t).Uid)
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return b.String()
}

func mustMkdir(tb testing.TB, dir string, mode fs.FileMode) {
	tb.Helper()
	if err := os.Mkdir(dir, mode); err != nil {
		tb.Fatal(err)
	}
}

func mustChown(tb testing.TB, path string, uid int) {
	tb.Helper()
	if err := os.Chown(path, uid, uid); err != nil {
		tb.Fatal(err)
	}
}

func mustChmod(tb testing.TB, path string, mode fs.FileMode) {
	tb.Helper()
	if err := os.Chmod(path, mode); err != nil {
		tb.Fatal(err)
	}
}

func mustLstat(tb testing.TB, path string) fs.FileInfo {
	tb.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		tb.Fatal(err)
	}
	return fi
}

// mustXDPProgram returns the id of the XDP program attached to iface of
// host h, 0 if none.
func mustXDPProgram(tb testing.TB, h *netns.Host, iface string) uint32 {
	tb.Helper()
	var id uint32
	err := h.Do(func() error {
		l, err := netlink.LinkByName(iface)
		if err != nil {
			return fmt.Errorf("interface %s of %s: %w", iface, h, err)
		}
		if xdp := l.Attrs().Xdp; xdp != nil && xdp.Attached {
			id = xdp.ProgId
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return id
}
