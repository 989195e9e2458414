package netns

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NamePrefix starts the name of every namespace a lab creates. The full name is
// NamePrefix + "<pid>-<lab number>-<host>", e.g. "spk-4242-1-lb".
const NamePrefix = "spk-"

// Addresses of the fixed plan. Backend i (from 0) has BackendIPv4(i) and
// BackendIPv6(i).
var (
	ClientIPv4 = netip.MustParseAddr("198.18.0.1")
	ClientIPv6 = netip.MustParseAddr("2001:db8::1")
	LBIPv4     = netip.MustParseAddr("198.18.0.2")
	LBIPv6     = netip.MustParseAddr("2001:db8::2")
	// VIPv4 and VIPv6 are the virtual addresses tests give the load balancer
	// (and, for direct server return, the backends' lo). A lab assigns them
	// nowhere by itself.
	VIPv4 = netip.MustParseAddr("198.18.0.10")
	VIPv6 = netip.MustParseAddr("2001:db8::a")
	// LB2IPv4 and LB2IPv6 are the addresses of the second load-balancer
	// host (Config.SecondLB).
	LB2IPv4 = netip.MustParseAddr("198.18.0.3")
	LB2IPv6 = netip.MustParseAddr("2001:db8::3")
)

// Prefix lengths of the lab's one segment.
const (
	PrefixLenIPv4 = 24
	PrefixLenIPv6 = 64
)

// BackendIPv4 is the IPv4 address of backend i (from 0): 198.18.0.(11+i).
func BackendIPv4(i int) netip.Addr { return netip.AddrFrom4([4]byte{198, 18, 0, byte(11 + i)}) }

// BackendIPv6 is the IPv6 address of backend i (from 0): 2001:db8::(0xb+i).
func BackendIPv6(i int) netip.Addr {
	a := ClientIPv6.As16()
	a[15] = byte(11 + i)
	return netip.AddrFrom16(a)
}

// maxBackends keeps backend addresses below the .255 broadcast and distinct.
const maxBackends = 200

// Config describes a lab. The zero value is a client, a load-balancer host
// and three backends with default host options.
type Config struct {
	// Backends is the number of backend hosts. If zero, 3.
	Backends int
	// Client, LB and Backend are the options of the client, of the
	// load-balancer host and of every backend.
	Client, LB, Backend HostOptions
	// SecondLB adds a second load-balancer host, "lb2", with LB's
	// options: another host the client's route to a VIP can move to.
	SecondLB bool
}

// HostOptions are the per-host knobs the XDP tests need. The zero value is a
// plain host: MTU 1500, one queue pair, offloads on, no XDP, no mount
// namespace of its own.
type HostOptions struct {
	// MTU of both ends of the host's veth. If zero, 1500.
	MTU int
	// Queues is the number of TX and of RX queues of both ends of the veth
	// (several let several generator threads send without fighting over one
	// queue). If zero, 1.
	Queues int
	// TxChecksumOff turns TX checksum offload off on the host's veth, as
	// `ethtool -K eth0 tx off` does: native XDP loses the skb's
	// partial-checksum state, so a sender with offload on would send UDP with
	// an unfinished checksum that the receiver drops.
	TxChecksumOff bool
	// PeerXDP attaches a no-op XDP_PASS program to the bridge-side peer of
	// the host's veth: native XDP_TX on a veth only delivers if the peer has
	// an XDP program.
	PeerXDP bool
	// MountNS gives the host a mount namespace of its own, held by a process
	// for the lab's lifetime, with a /sys of the host's network namespace and
	// a bpffs on /sys/fs/bpf. Every process started with [Host.Command] shares
	// it, so bpffs pins made by one are seen by the next (`ip netns exec`
	// would give each command a fresh /sys and lose them).
	MountNS bool
}

// Lab is a set of hosts on one bridge. Its fields are set by [New] and must
// not be changed.
type Lab struct {
	// Name is the namespace name prefix of this lab, "spk-<pid>-<n>-".
	Name string
	// Client, LB and Backends are the hosts of the plan.
	Client, LB *Host
	Backends   []*Host
	// LB2 is the second load-balancer host, if Config.SecondLB.
	LB2 *Host
	// Bridge is the namespace holding the bridge "br0" and the host-side
	// peers of every host's veth. Its address fields are unset.
	Bridge *Host

	tb testing.TB

	mu        sync.Mutex
	cmds      []*exec.Cmd
	xdpLinks  []link.Link
	nsNames   []string // in creation order
	handles   []netns.NsHandle
	torn      bool
	holderFns []func()
}

var labSeq atomic.Uint32

// BridgeName is the name of the bridge inside the lab's bridge namespace.
const BridgeName = "br0"

// HostIface is the name of every host's veth inside its namespace.
const HostIface = "eth0"

// ErrNotRoot is what [Check] returns when the process lacks the privileges a
// lab needs.
var ErrNotRoot = errors.New("netns lab needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN to create namespaces, veths and bridges)")

// Check says whether this process can build a lab.
func Check() error {
	if os.Geteuid() != 0 {
		return ErrNotRoot
	}
	return nil
}

// SkipUnlessPrivileged skips tb with a clear message when a lab cannot be
// built here (not root) or when -short asks for unit tests only.
func SkipUnlessPrivileged(tb testing.TB) {
	tb.Helper()
	if testing.Short() {
		tb.Skip("skipping netns lab test in -short mode")
	}
	if err := Check(); err != nil {
		tb.Skipf("skipping: %v; run the tests as root (sudo go test ...)", err)
	}
}

// New builds a lab and registers its teardown with tb.Cleanup. It skips tb
// when not root or in -short mode, removes the leftovers of crashed earlier
// runs first, and fails tb on any error.
func New(tb testing.TB, cfg Config) *Lab {
	tb.Helper()
	SkipUnlessPrivileged(tb)
	if cfg.Backends == 0 {
		cfg.Backends = 3
	}
	if cfg.Backends < 0 || cfg.Backends > maxBackends {
		tb.Fatalf("netns lab: %d backends: want 1 to %d", cfg.Backends, maxBackends)
	}
	if err := RemoveLeftovers(); err != nil {
		tb.Logf("netns lab: remove leftovers of earlier runs: %v", err)
	}
	l := &Lab{
		Name: fmt.Sprintf("%s%d-%d-", NamePrefix, os.Getpid(), labSeq.Add(1)),
		tb:   tb,
	}
	tb.Cleanup(func() {
		if err := l.Close(); err != nil {
			tb.Errorf("netns lab: teardown: %v", err)
		}
	})
	if err := l.build(cfg); err != nil {
		tb.Fatalf("netns lab: %v", err)
	}
	return l
}

// Hosts lists the client, the load-balancer host and the backends.
func (l *Lab) Hosts() []*Host {
	hosts := []*Host{l.Client, l.LB}
	if l.LB2 != nil {
		hosts = append(hosts, l.LB2)
	}
	return append(hosts, l.Backends...)
}

func (l *Lab) build(cfg Config) error {
	br, err := l.newNamespace("br")
	if err != nil {
		return err
	}
	l.Bridge = &Host{Name: "br", NS: l.Name + "br", Iface: BridgeName, lab: l, handle: br}
	// Bridge ports need no IPv6 of their own; turning it off spares them
	// link-local addresses, DAD and router solicitations.
	for _, k := range []string{"net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.default.disable_ipv6"} {
		if err := l.Bridge.SetSysctl(k, "1"); err != nil {
			return err
		}
	}
	off := false
	bridge := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: BridgeName}, MulticastSnooping: &off}
	err = l.Bridge.Do(func() error {
		if err := netlink.LinkAdd(bridge); err != nil {
			return fmt.Errorf("add bridge %s: %w", BridgeName, err)
		}
		if err := linkUp("lo"); err != nil {
			return err
		}
		return linkUp(BridgeName)
	})
	if err != nil {
		return err
	}
	if l.Bridge.Index, err = l.Bridge.ifindex(BridgeName); err != nil {
		return err
	}

	if l.Client, err = l.addHost("client", ClientIPv4, ClientIPv6, cfg.Client); err != nil {
		return err
	}
	if l.LB, err = l.addHost("lb", LBIPv4, LBIPv6, cfg.LB); err != nil {
		return err
	}
	if cfg.SecondLB {
		if l.LB2, err = l.addHost("lb2", LB2IPv4, LB2IPv6, cfg.LB); err != nil {
			return err
		}
	}
	for i := range cfg.Backends {
		h, err := l.addHost(fmt.Sprintf("backend%d", i+1), BackendIPv4(i), BackendIPv6(i), cfg.Backend)
		if err != nil {
			return err
		}
		l.Backends = append(l.Backends, h)
	}
	return nil
}

// newNamespace creates the named network namespace l.Name+suffix and returns
// a handle to it. The creating thread is left to die rather than restored, so
// no goroutine ever runs in it by accident.
func (l *Lab) newNamespace(suffix string) (netns.NsHandle, error) {
	name := l.Name + suffix
	type result struct {
		h   netns.NsHandle
		err error
	}
	res := make(chan result, 1)
	go func() {
		lockThreadToDie()
		h, err := netns.NewNamed(name)
		res <- result{h, err}
	}()
	r := <-res
	if r.err != nil {
		return 0, fmt.Errorf("create network namespace %s: %w", name, r.err)
	}
	l.mu.Lock()
	l.nsNames = append(l.nsNames, name)
	l.handles = append(l.handles, r.h)
	l.mu.Unlock()
	return r.h, nil
}

func (l *Lab) addHost(name string, v4, v6 netip.Addr, opt HostOptions) (*Host, error) {
	if opt.MTU == 0 {
		opt.MTU = 1500
	}
	if opt.Queues == 0 {
		opt.Queues = 1
	}
	if opt.MTU < 1280 || opt.MTU > 65535 {
		return nil, fmt.Errorf("host %s: mtu %d: want 1280 to 65535 (IPv6 needs 1280)", name, opt.MTU)
	}
	if opt.Queues < 1 || opt.Queues > 64 {
		return nil, fmt.Errorf("host %s: %d queues: want 1 to 64", name, opt.Queues)
	}
	handle, err := l.newNamespace(name)
	if err != nil {
		return nil, err
	}
	h := &Host{
		Name: name, NS: l.Name + name, Iface: HostIface,
		PeerName: "v-" + name,
		IPv4:     v4, IPv6: v6,
		MAC: net.HardwareAddr{0x02, 0x00, 0xc6, 0x12, v6.As16()[15], v4.As4()[3]},
		lab: l, handle: handle,
	}
	// Addresses are added with IFA_F_NODAD, and DAD is off for whatever
	// else the kernel configures (link-local), so IPv6 is usable at once.
	for _, k := range []string{"net.ipv6.conf.all.accept_dad", "net.ipv6.conf.default.accept_dad"} {
		if err := h.SetSysctl(k, "0"); err != nil {
			return nil, err
		}
	}
	// The veth is made from the bridge namespace with its host end created
	// straight inside the host's namespace.
	veth := netlink.NewVeth(netlink.LinkAttrs{
		Name: h.PeerName, MTU: opt.MTU,
		NumTxQueues: opt.Queues, NumRxQueues: opt.Queues,
	})
	veth.PeerName = HostIface
	veth.PeerHardwareAddr = h.MAC
	veth.PeerNamespace = netlink.NsFd(int(handle))
	err = l.Bridge.Do(func() error {
		if err := netlink.LinkAdd(veth); err != nil {
			return fmt.Errorf("add veth %s (peer %s in %s): %w", h.PeerName, HostIface, h.NS, err)
		}
		peer, err := netlink.LinkByName(h.PeerName)
		if err != nil {
			return fmt.Errorf("find %s: %w", h.PeerName, err)
		}
		if err := netlink.LinkSetMasterByIndex(peer, l.Bridge.Index); err != nil {
			return fmt.Errorf("add %s to %s: %w", h.PeerName, BridgeName, err)
		}
		return linkUp(h.PeerName)
	})
	if err != nil {
		return nil, err
	}
	if h.PeerIndex, err = l.Bridge.ifindex(h.PeerName); err != nil {
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
		for _, p := range []netip.Prefix{netip.PrefixFrom(v4, PrefixLenIPv4), netip.PrefixFrom(v6, PrefixLenIPv6)} {
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
	if opt.TxChecksumOff {
		if err := h.SetTxChecksum(false); err != nil {
			return nil, err
		}
	}
	if opt.PeerXDP {
		if err := h.AttachPeerXDPPass(); err != nil {
			return nil, err
		}
	}
	if opt.MountNS {
		if err := h.startMountHolder(); err != nil {
			return nil, err
		}
	}
	return h, nil
}

// Close kills every process started in the lab, detaches the XDP programs it
// attached and deletes its namespaces (which destroys their links). It is
// registered with tb.Cleanup by [New]; calling it again does nothing.
func (l *Lab) Close() error {
	l.mu.Lock()
	if l.torn {
		l.mu.Unlock()
		return nil
	}
	l.torn = true
	cmds, links, names, handles, holders := l.cmds, l.xdpLinks, l.nsNames, l.handles, l.holderFns
	l.mu.Unlock()

	var errs []error
	for _, c := range cmds {
		if c.Process != nil {
			// os.Process signals through a pidfd: safe even if the
			// process was already waited for and its PID reused.
			_ = c.Process.Kill()
		}
	}
	for _, f := range holders {
		f()
	}
	// Anything else still inside a lab namespace (children of tracked
	// processes, processes entered by hand) dies too.
	if err := killNamespaceProcesses(names); err != nil {
		errs = append(errs, err)
	}
	for _, lk := range links {
		if err := lk.Close(); err != nil {
			errs = append(errs, fmt.Errorf("detach xdp: %w", err))
		}
	}
	for _, h := range handles {
		_ = h.Close()
	}
	for i := len(names) - 1; i >= 0; i-- {
		if err := netns.DeleteNamed(names[i]); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EINVAL) {
			errs = append(errs, fmt.Errorf("delete namespace %s: %w", names[i], err))
		}
	}
	return errors.Join(errs...)
}

func (l *Lab) track(c *exec.Cmd) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cmds = append(l.cmds, c)
}
