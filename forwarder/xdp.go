package forwarder

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/spooky-lb/spooky/bpf"
	"github.com/spooky-lb/spooky/config"
	"github.com/spooky-lb/spooky/health"
)

// DefaultPinRoot is where spooky pins the maps and XDP link of each
// interface, in a directory named after it: a restarted daemon adopts
// them, so forwarding never stops and flows are kept.
const DefaultPinRoot = "/sys/fs/bpf/spooky"

// Errors a caller of Attach, Detach and their kin may branch on.
var (
	ErrNoInterface = errors.New("no such interface")
	ErrNoBPFFS     = errors.New("not on a bpf filesystem")
	ErrPrivilege   = errors.New("not permitted (needs root, or CAP_BPF and CAP_NET_ADMIN)")
	// ErrInterfaceName: the argument is not an interface name (see
	// CheckInterfaceName); nothing was touched.
	ErrInterfaceName = errors.New("invalid interface name")
	// ErrUnsafePinDir: the pin root or a directory in it is a symlink,
	// someone else's, or writable by others; nothing was touched.
	ErrUnsafePinDir = errors.New("pin directory not safe to use")
	// ErrNothingAttached: there are no pins to detach or read.
	ErrNothingAttached = errors.New("nothing attached")
	// ErrStillAttached: after a detach, netlink still reports an XDP
	// program on the interface.
	ErrStillAttached = errors.New("stays attached after detach")
)

// XDPMode selects how the program attaches.
type XDPMode string

// XDP attach modes.
const (
	// XDPNative runs in the driver: what production runs.
	XDPNative XDPMode = "native"
	// XDPGeneric runs after the kernel built an skb: works on every
	// driver, at a fraction of the speed.
	XDPGeneric XDPMode = "generic"
)

// AttachOptions configure Attach.
type AttachOptions struct {
	// Interface is the edge interface. Required.
	Interface string
	// Mode is native or generic. If empty, native.
	Mode XDPMode
	// PinRoot is a directory on a bpffs. If empty, DefaultPinRoot.
	PinRoot string
	// Logger receives changes and problems. If nil, slog.Default().
	Logger *slog.Logger
	// Health, if set, is the state the tables follow (see
	// Planner.SetHealth); the caller re-Applies after a change. If nil,
	// every backend whose next hop resolves is healthy.
	Health *health.Registry
	// Dataplane is xdp or userspace (xdp_slowpath.go). If empty, xdp.
	Dataplane Dataplane
	// CIDCacheSize sizes cid_cache (config slow_path.cid_cache_size). If
	// zero, bpf.DefaultCIDCacheSize.
	CIDCacheSize int
}

// XDP is the fast path attached to one interface: the loaded program and
// maps (pinned), the link, and the planner and syncer that keep the maps
// equal to the configuration.
type XDP struct {
	link    netlink.Link
	pinDir  string
	objs    *bpf.LBObjects
	xdpLink link.Link
	planner *Planner
	syncer  *Syncer
	log     *slog.Logger

	mu sync.Mutex // serialises Apply and ExpireFlows' read of timeouts
	// timeouts holds each VIP id's idle flow timeout, for ExpireFlows.
	timeouts map[uint32]time.Duration
	// ids keeps the planner's allocations across restarts; stored holds
	// what an earlier run left there until the first Apply seeds the
	// planner with it.
	ids                        *idStore
	storedVIPs, storedBackends map[idStoreValue]uint32
	seeded                     bool

	// probe steers health probes through the VIP (probe.go).
	probe probeState

	// dataplane and slow: the AF_XDP slow path (xdp_slowpath.go); slow
	// is nil when the interface has none.
	dataplane Dataplane
	slow      *SlowPath
}

// PinDir returns the pin directory of iface under root. It does not check
// iface; Attach, Detach and ReadStats do (CheckInterfaceName).
func PinDir(root, iface string) string {
	if root == "" {
		root = DefaultPinRoot
	}
	return filepath.Join(root, iface)
}

// linkPin is the file the XDP link is pinned at, inside the pin directory.
const linkPin = "link"

// Attach loads the XDP program with its maps pinned in the interface's pin
// directory and attaches it. If an earlier run left pins there, the maps
// are reused and the pinned link is switched to the new program in one
// step (XDP link update), so no packet is missed and every flow is kept.
// Nothing is routed until Apply.
func Attach(opts AttachOptions) (*XDP, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	if err := CheckInterfaceName(opts.Interface); err != nil {
		return nil, err
	}
	l, err := netlink.LinkByName(opts.Interface)
	if err != nil {
		return nil, fmt.Errorf("interface %q: %w", opts.Interface, ErrNoInterface)
	}
	dir, created, err := pinDir(opts.PinRoot, true, opts.Interface)
	if err != nil {
		removeCreated(created)
		return nil, err
	}
	x, err := attachIn(dir, l, opts, log)
	if err != nil {
		removeCreated(created)
		return nil, err
	}
	return x, nil
}

// attachIn is Attach with its pins in dir.
func attachIn(dir string, l netlink.Link, opts AttachOptions, log *slog.Logger) (*XDP, error) {
	iface := l.Attrs().Name
	mode, reg := opts.Mode, opts.Health
	switch opts.Dataplane {
	case "", DataplaneXDP, DataplaneUserspace:
	default:
		return nil, fmt.Errorf("dataplane %q: want xdp or userspace", opts.Dataplane)
	}
	objs, err := bpf.LoadLB(&bpf.LoadOptions{PinPath: dir, CIDCacheSize: uint32(opts.CIDCacheSize)})
	if errors.Is(err, ebpf.ErrMapIncompatible) {
		// A map pinned by a build with another layout cannot be
		// adopted; only a fresh start (which drops flows) can go on.
		return nil, fmt.Errorf("load xdp program: maps pinned in %s have another layout (an older spooky?); "+
			"run 'spooky detach %s' and attach again (established flows are dropped): %w", dir, iface, err)
	}
	if err != nil {
		return nil, privilege(fmt.Errorf("load xdp program: %w", err))
	}
	store, err := openIDStore(dir)
	if err != nil {
		objs.Close()
		return nil, privilege(err)
	}
	x := &XDP{
		link:      l,
		pinDir:    dir,
		objs:      objs,
		planner:   NewPlanner(&Resolver{Link: l}, log),
		syncer:    NewSyncer(objs, log),
		log:       log,
		ids:       store,
		dataplane: opts.Dataplane,
	}
	if x.dataplane == "" {
		x.dataplane = DataplaneXDP
	}
	x.planner.SetHealth(reg)
	if x.storedVIPs, x.storedBackends, err = store.load(); err != nil {
		x.Close()
		return nil, err
	}
	if err := x.attachProgram(mode); err != nil {
		x.Close()
		return nil, err
	}
	if err := x.startSlowPath(); err != nil {
		x.Close()
		return nil, err
	}
	if err := x.setLBConfig(); err != nil {
		x.Close()
		return nil, err
	}
	x.probe.start(x.objs, x.link, log)
	return x, nil
}

func (x *XDP) attachProgram(mode XDPMode) error {
	name := x.link.Attrs().Name
	pin := filepath.Join(x.pinDir, linkPin)
	if l, err := link.LoadPinnedLink(pin, nil); err == nil {
		if err := l.Update(x.objs.XdpLb); err != nil {
			l.Close()
			return fmt.Errorf("replace xdp program on %s: %w", name, err)
		}
		x.xdpLink = l
		x.log.Info("adopted pinned xdp link", "interface", name, "pin", pin)
		return nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("open pinned link %s: %w", pin, err)
	}
	var flags link.XDPAttachFlags
	switch mode {
	case XDPNative, "":
		flags = link.XDPDriverMode
	case XDPGeneric:
		flags = link.XDPGenericMode
	default:
		return fmt.Errorf("xdp mode %q: want native or generic", mode)
	}
	l, err := link.AttachXDP(link.XDPOptions{
		Program:   x.objs.XdpLb,
		Interface: x.link.Attrs().Index,
		Flags:     flags,
	})
	if err != nil {
		return privilege(fmt.Errorf("attach xdp to %s (%s mode): %w", name, mode, err))
	}
	// An XDP link dies with its last fd unless pinned (lab-facts); the
	// pin is what lets the daemon restart without a gap.
	if err := l.Pin(pin); err != nil {
		l.Close()
		return fmt.Errorf("pin xdp link of %s: %w", name, err)
	}
	x.xdpLink = l
	x.log.Info("attached xdp", "interface", name, "mode", mode, "pin", pin)
	return nil
}

// setLBConfig writes the interface's MAC and first global address of each
// family: the source MAC of forwarded frames and the outer source of ipip.
func (x *XDP) setLBConfig() error {
	var addr4, addr6 netip.Addr
	addrs, err := netlink.AddrList(x.link, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("list addresses of %s: %w", x.link.Attrs().Name, err)
	}
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok || !ip.IsGlobalUnicast() {
			continue
		}
		ip = ip.Unmap()
		if ip.Is4() && !addr4.IsValid() {
			addr4 = ip
		} else if ip.Is6() && !addr6.IsValid() {
			addr6 = ip
		}
	}
	c, err := bpf.NewLBConfig(x.link.Attrs().HardwareAddr, addr4, addr6)
	if err != nil {
		return err
	}
	if x.slow != nil {
		x.slow.SetLB(c)
	}
	return x.syncer.SetLB(c)
}

// Apply programs the maps for cfg. On error the maps may hold part of the
// new state but never a half-written table; the caller may Apply the
// previous config again. Backends that cannot be reached are left out of
// the tables and logged; they do not fail the Apply.
func (x *XDP) Apply(ctx context.Context, cfg *config.Config) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if !x.seeded {
		if err := x.planner.seed(cfg, x.storedVIPs, x.storedBackends); err != nil {
			// Stale or foreign contents: plan from scratch; the
			// syncer then rewrites every entry.
			x.log.Warn("ignoring the stored VIP ids and backend indexes", "err", err)
		}
		x.seeded = true
	}
	d, err := x.planner.Plan(ctx, cfg)
	if err != nil {
		return err
	}
	for _, p := range d.Problems {
		x.log.Warn("backend left out of the tables", "err", p)
	}
	decoders, err := x.planSlowPath(cfg, d)
	if err != nil {
		return err
	}
	if err := x.writeSlowPathLimits(cfg, d); err != nil {
		return err
	}
	if x.slow != nil {
		// Before the VIPs are switched to redirect: Go must know them
		// when their first frame arrives.
		x.slow.Update(d, decoders)
	}
	if err := x.syncer.Apply(d); err != nil {
		return err
	}
	if err := x.ids.save(x.planner.vips, x.planner.backends); err != nil {
		return err
	}
	x.probe.apply(cfg, x.planner.backends)
	x.timeouts = map[uint32]time.Duration{}
	for _, v := range d.VIPs {
		x.timeouts[v.Info.Id] = v.FlowTimeout
	}
	x.log.Debug("applied config", "vips", len(d.VIPs), "backends", len(d.Backends), "server_ids", len(d.ServerIDs))
	return nil
}

// ExpireFlows deletes flow entries idle for longer than their VIP's
// flow_timeout from every CPU's flow_cache, and returns how many it
// deleted. An expired flow is hashed
// again on its next packet, which picks the same backend unless the
// backend set changed: the table only bridges a connection's first
// packets across such a change (QUIC-LB §4.2), so an idle entry is stale.
func (x *XDP) ExpireFlows() (int, error) {
	x.mu.Lock()
	timeouts := x.timeouts
	x.mu.Unlock()
	if timeouts == nil {
		return 0, nil // nothing applied yet: no VIP is known
	}
	now, err := flowClock()
	if err != nil {
		return 0, err
	}
	n, err := bpf.DeleteFlows(x.objs, func(k bpf.FlowKey, s bpf.FlowState) bool {
		timeout, ok := timeouts[k.VipId]
		if !ok {
			return true // the VIP is gone
		}
		return s.LastSeenNs < now && time.Duration(now-s.LastSeenNs) > timeout
	})
	if err != nil {
		return n, fmt.Errorf("expire flows: %w", err)
	}
	return n, nil
}

// flowClock reads the clock XDP stamps flows with: bpf_ktime_get_coarse_ns
// is CLOCK_MONOTONIC, coarse.
func flowClock() (uint64, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC_COARSE, &ts); err != nil {
		return 0, fmt.Errorf("read monotonic clock: %w", err)
	}
	return uint64(ts.Nano()), nil
}

// Resolver returns the next-hop resolver of the interface.
func (x *XDP) Resolver() *Resolver { return &Resolver{Link: x.link} }

// Close releases the daemon's handles and takes down the probe steering.
// The program stays attached and the maps stay pinned: packets keep
// flowing until Detach.
func (x *XDP) Close() error {
	errs := []error{x.probe.close()}
	if x.slow != nil {
		errs = append(errs, x.slow.Close())
	}
	if x.xdpLink != nil {
		errs = append(errs, x.xdpLink.Close())
	}
	if x.ids != nil {
		errs = append(errs, x.ids.close())
	}
	errs = append(errs, x.objs.Close())
	return errors.Join(errs...)
}

// OpenPinnedMap opens one of the maps pinned for iface, read-only.
func OpenPinnedMap(root, iface, name string) (*ebpf.Map, error) {
	if err := CheckInterfaceName(iface); err != nil {
		return nil, err
	}
	if name != filepath.Base(name) {
		return nil, fmt.Errorf("pinned map %q: not a file name", name)
	}
	dir, _, err := pinDir(root, false, iface)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w to %s (no pins in %s)", ErrNothingAttached, iface, PinDir(root, iface))
	}
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, name)
	m, err := ebpf.LoadPinnedMap(path, &ebpf.LoadPinOptions{ReadOnly: true})
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w to %s (no map pinned at %s)", ErrNothingAttached, iface, path)
	}
	if err != nil {
		return nil, privilege(fmt.Errorf("open %s: %w", path, err))
	}
	return m, nil
}

func rootOrDefault(root string) string {
	if root == "" {
		return DefaultPinRoot
	}
	return root
}

// checkBPFFS fails unless dir (or, if it does not exist yet, its parent)
// is on a bpf filesystem.
func checkBPFFS(dir string) error {
	for p := dir; ; p = filepath.Dir(p) {
		var st unix.Statfs_t
		err := unix.Statfs(p, &st)
		if err == nil {
			if st.Type != unix.BPF_FS_MAGIC {
				return fmt.Errorf("%s: %w (mount one: mount -t bpf bpf /sys/fs/bpf)", p, ErrNoBPFFS)
			}
			return nil
		}
		if !errors.Is(err, unix.ENOENT) || p == filepath.Dir(p) {
			return fmt.Errorf("%s: %w", p, err)
		}
	}
}

// privilege marks permission errors with ErrPrivilege so the CLI can say
// what is missing.
func privilege(err error) error {
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		return fmt.Errorf("%w: %w", ErrPrivilege, err)
	}
	return err
}
