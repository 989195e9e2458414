package netns

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Host is one network namespace of a lab with one veth (Iface) whose other end
// (PeerName) is a port of the lab's bridge. Its fields are set by [New] and
// must not be changed.
type Host struct {
	// Name is the host's role: "client", "lb", "backend1", ... ("br" for
	// the bridge namespace).
	Name string
	// NS is the network namespace's name, under /run/netns.
	NS string
	// Iface and Index name the host's veth inside its namespace ("eth0").
	Iface string
	Index int
	// MAC is the hardware address of Iface: 02:00:c6:12:<v6 last>:<v4 last>.
	MAC net.HardwareAddr
	// IPv4 and IPv6 are Iface's addresses (/24 and /64).
	IPv4, IPv6 netip.Addr
	// PeerName and PeerIndex name the bridge-side end of the veth, inside
	// the lab's bridge namespace.
	PeerName  string
	PeerIndex int

	lab    *Lab
	handle netns.NsHandle
	// holderPID is the process holding the host's mount namespace, if any.
	holderPID int
}

// Path is the namespace's bind mount, for `nsenter --net=PATH`.
func (h *Host) Path() string { return filepath.Join("/run/netns", h.NS) }

// Addrs returns the host's IPv4 and IPv6 addresses.
func (h *Host) Addrs() []netip.Addr { return []netip.Addr{h.IPv4, h.IPv6} }

// String returns the host's role name.
func (h *Host) String() string { return h.Name }

// Do runs fn on an OS thread inside the host's network namespace. Sockets fn
// opens stay in the namespace after Do returns and may be used from any
// goroutine; goroutines fn starts do not run in the namespace. The thread is
// locked in a fresh goroutine and switched back afterwards; if switching back
// fails the thread is left locked so the runtime ends it rather than reuse it
// in the wrong namespace (as cilium/ebpf's testutils do). A panic in fn is
// re-raised in the caller.
func (h *Host) Do(fn func() error) error {
	type result struct {
		err    error
		panicV any
		panics bool
	}
	res := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			res <- result{err: fmt.Errorf("get current network namespace: %w", err)}
			return
		}
		defer orig.Close()
		if err := netns.Set(h.handle); err != nil {
			runtime.UnlockOSThread()
			res <- result{err: fmt.Errorf("enter network namespace %s: %w", h.NS, err)}
			return
		}
		var r result
		func() {
			defer func() {
				if p := recover(); p != nil {
					r = result{panicV: p, panics: true}
				}
			}()
			r.err = fn()
		}()
		if err := netns.Set(orig); err != nil {
			// Leave the thread locked: it exits with this goroutine.
			if !r.panics {
				r.err = fmt.Errorf("leave network namespace %s: %w (fn: %v)", h.NS, err, r.err)
			}
			res <- r
			return
		}
		runtime.UnlockOSThread()
		res <- r
	}()
	r := <-res
	if r.panics {
		panic(r.panicV)
	}
	return r.err
}

// lockThreadToDie locks the calling goroutine to its thread for good: the
// runtime ends the thread when the goroutine returns. For goroutines that
// change the thread's namespaces and never restore them.
func lockThreadToDie() { runtime.LockOSThread() }

// SetSysctl writes value to the sysctl key (dotted, e.g.
// "net.ipv4.conf.all.rp_filter") inside the host's namespace: /proc/sys/net
// resolves against the writing thread's network namespace.
func (h *Host) SetSysctl(key, value string) error {
	return h.Do(func() error {
		p := filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/"))
		if err := os.WriteFile(p, []byte(value), 0); err != nil {
			return fmt.Errorf("sysctl %s=%s in %s: %w", key, value, h.NS, err)
		}
		return nil
	})
}

// Sysctl reads the sysctl key inside the host's namespace.
func (h *Host) Sysctl(key string) (string, error) {
	var v string
	err := h.Do(func() error {
		p := filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/"))
		b, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("sysctl %s in %s: %w", key, h.NS, err)
		}
		v = strings.TrimSpace(string(b))
		return nil
	})
	return v, err
}

// Link returns the netlink view of the host's veth (MTU, queues, XDP state).
func (h *Host) Link() (netlink.Link, error) { return h.linkIn(h, h.Iface) }

// PeerLink returns the netlink view of the bridge-side end of the host's veth.
func (h *Host) PeerLink() (netlink.Link, error) { return h.linkIn(h.lab.Bridge, h.PeerName) }

func (h *Host) linkIn(where *Host, name string) (netlink.Link, error) {
	var l netlink.Link
	err := where.Do(func() error {
		var err error
		l, err = netlink.LinkByName(name)
		if err != nil {
			return fmt.Errorf("find %s in %s: %w", name, where.NS, err)
		}
		return nil
	})
	return l, err
}

func (h *Host) ifindex(name string) (int, error) {
	l, err := h.linkIn(h, name)
	if err != nil {
		return 0, err
	}
	return l.Attrs().Index, nil
}

// SetMTU sets the MTU of both ends of the host's veth.
func (h *Host) SetMTU(mtu int) error {
	set := func(where *Host, name string) error {
		return where.Do(func() error {
			l, err := netlink.LinkByName(name)
			if err != nil {
				return fmt.Errorf("find %s in %s: %w", name, where.NS, err)
			}
			if err := netlink.LinkSetMTU(l, mtu); err != nil {
				return fmt.Errorf("set mtu %d on %s in %s: %w", mtu, name, where.NS, err)
			}
			return nil
		})
	}
	if err := set(h.lab.Bridge, h.PeerName); err != nil {
		return err
	}
	return set(h, h.Iface)
}

// linkUp sets the named link up; the caller is inside the namespace.
func linkUp(name string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return fmt.Errorf("find %s: %w", name, err)
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return fmt.Errorf("set %s up: %w", name, err)
	}
	return nil
}

// addAddr adds p to l without duplicate address detection, so an IPv6
// address is usable at once rather than tentative for a second or more
// (RFC 4862 §5.4).
func addAddr(l netlink.Link, p netip.Prefix) error {
	a := &netlink.Addr{IPNet: &net.IPNet{
		IP:   p.Addr().AsSlice(),
		Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen()),
	}}
	if p.Addr().Is6() {
		a.Flags = unix.IFA_F_NODAD
	}
	if err := netlink.AddrReplace(l, a); err != nil {
		return fmt.Errorf("add %s to %s: %w", p, l.Attrs().Name, err)
	}
	return nil
}
