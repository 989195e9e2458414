package forwarder

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"

	"github.com/spooky-lb/spooky/bpf"
	"github.com/spooky-lb/spooky/config"
)

// Health probes through the VIP.
//
// A DSR backend holds the VIP on lo and often serves nothing else, so a
// health check must reach it the way clients do: as a packet to the VIP
// that the load balancer's forwarding delivered. A checker on the load
// balancer host asks ProbeMark for the mark of one backend and sets it as
// SO_MARK on its socket before it connects to VIP:port. Then:
//
//  1. A policy rule per address family, "fwmark ProbeMarkBase/ProbeMarkMask
//     lookup ProbeTable(ifindex)" at ProbeRulePriority, sends marked
//     packets to a table of the edge interface's own.
//  2. That table routes each l2dsr/ipip VIP out of the edge interface via
//     a placeholder next hop (ProbeNextHopIPv4, ProbeNextHopIPv6), whose
//     permanent neighbour entry is the interface's own MAC: the kernel
//     builds the frame without asking ARP/NDP for the VIP, which no
//     backend answers (arp_ignore) or every backend does. Unmarked
//     traffic matches no rule and never uses the placeholder, so it
//     reaches the VIP (or not) exactly as before.
//  3. bpf/probe.c at tc egress (tcx) rewrites the frame for the backend
//     the mark names, from the XDP program's own backends map.
//
// The tcx link lives with the process that holds the XDP object (the
// daemon, which is what runs checks); rules, routes and the placeholder
// neighbours are removed by Close and by RemoveProbeSteering (spooky
// detach).

// ProbeRulePriority is the priority of the probe policy rules: after the
// local table's rule (0), before rules that route by source address or by
// other marks (Tailscale's from 5210, wg-quick's at 32764) and before main
// (32766).
const ProbeRulePriority = 91

// ProbeTableBase plus the edge interface's index is the interface's probe
// routing table. Far above the tables in common use (0-255 of rt_tables,
// Tailscale's 52, Cilium's 2004-2005, wg-quick's 51820), and one table per
// interface, so that two daemons on two interfaces never share routes.
const ProbeTableBase = 0x5b000000

// ProbeTable returns the probe routing table of the interface ifindex.
func ProbeTable(ifindex int) int { return ProbeTableBase + ifindex }

// Placeholder next hops of the probe routes: link-local (RFC 3927, RFC
// 4291 §2.5.6), never routed, and given a permanent neighbour entry on the
// edge interface with the interface's own MAC. A frame sent to that MAC
// goes nowhere if probe.c did not rewrite it: a switch does not send a
// frame back out of the port it came in on.
var (
	ProbeNextHopIPv4 = netip.MustParseAddr("169.254.91.91")
	ProbeNextHopIPv6 = netip.MustParseAddr("fe80::5b:5b")
)

// ErrProbesOff wraps the reason probes through the VIP cannot be steered
// (no CAP_NET_ADMIN, no tcx in the kernel, ...). ProbeMark then returns
// ok false for every backend, and checkers probe backend addresses.
var ErrProbesOff = errors.New("probes through the VIP are off")

// ProbeMark returns the SO_MARK that steers a socket's packets to the VIP
// of service to its backend named backend, for a service in mode l4 with
// forwarding l2dsr or ipip, as of the last Apply. ok is false for any
// other backend (proxy, l7, unknown) and while steering is off
// (ProbeErr).
func (x *XDP) ProbeMark(service, backend string) (mark uint32, ok bool) {
	marks := x.probe.marks.Load()
	if marks == nil {
		return 0, false
	}
	mark, ok = (*marks)[backendKey(service, backend)]
	return mark, ok
}

// ProbeErr says why probes through the VIP are off (wrapping
// ErrProbesOff), or returns nil while they work.
func (x *XDP) ProbeErr() error {
	x.probe.mu.Lock()
	defer x.probe.mu.Unlock()
	return x.probe.err
}

// probeState is the XDP object's probe steering.
type probeState struct {
	// marks maps "service/backend" to its mark; nil while steering is
	// off or before the first Apply.
	marks atomic.Pointer[map[string]uint32]

	mu      sync.Mutex // guards what follows
	err     error      // why steering is off; nil while on
	objs    *bpf.ProbeObjects
	tc      link.Link
	ifindex int
	log     *slog.Logger
}

// start loads probe.c with lb's maps and attaches it to the egress of
// iface. A failure leaves steering off with the reason in err and in the
// log: forwarding does not depend on it.
func (p *probeState) start(lb *bpf.LBObjects, iface netlink.Link, log *slog.Logger) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.log, p.ifindex = log, iface.Attrs().Index
	if err := p.attach(lb); err != nil {
		p.off(fmt.Errorf("%w on %s: %w", ErrProbesOff, iface.Attrs().Name, err))
		return
	}
	log.Info("probes through the VIP are on", "interface", iface.Attrs().Name,
		"mark", fmt.Sprintf("%#x/%#x", bpf.ProbeMarkBase, bpf.ProbeMarkMask), "table", ProbeTable(p.ifindex))
}

func (p *probeState) attach(lb *bpf.LBObjects) error {
	objs, err := bpf.LoadProbe(lb)
	if err != nil {
		return privilege(err)
	}
	tc, err := link.AttachTCX(link.TCXOptions{
		Interface: p.ifindex,
		Program:   objs.TcProbe,
		Attach:    ebpf.AttachTCXEgress,
	})
	if errors.Is(err, ebpf.ErrNotSupported) {
		objs.Close()
		return fmt.Errorf("attach tc egress program: the kernel has no tcx (Linux 6.6 or later): %w", err)
	}
	if err != nil {
		objs.Close()
		return privilege(fmt.Errorf("attach tc egress program: %w", err))
	}
	p.objs, p.tc = objs, tc
	return nil
}

// off turns steering off for err, logs why, and drops the marks. The
// caller holds mu.
func (p *probeState) off(err error) {
	p.err = err
	p.marks.Store(nil)
	p.log.Warn("health checks fall back to backend addresses", "err", err)
}

// apply points the probe routes at cfg's l2dsr and ipip VIPs and
// publishes the marks of their backends, whose indexes are in backends.
func (p *probeState) apply(cfg *config.Config, backends *ids) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tc == nil {
		return // off; start said why
	}
	// Read afresh: the MTU and MAC may have changed since Attach.
	iface, err := netlink.LinkByIndex(p.ifindex)
	if err != nil {
		p.off(fmt.Errorf("%w: interface %d: %w", ErrProbesOff, p.ifindex, err))
		return
	}
	marks, routes := probePlan(cfg, backends, iface.Attrs().MTU)
	if err := syncProbeRoutes(iface, routes); err != nil {
		p.off(fmt.Errorf("%w on %s: %w", ErrProbesOff, iface.Attrs().Name, privilege(err)))
		return
	}
	if p.err != nil {
		p.log.Info("probes through the VIP are on again", "interface", iface.Attrs().Name)
		p.err = nil
	}
	p.marks.Store(&marks)
}

// probePlan returns the mark of every l2dsr and ipip backend and the
// probe route each of their VIP addresses needs: an ipip VIP's route
// leaves room for the largest outer header its backends get (20 octets
// for IPv4, 40 for IPv6), so a probe does not outgrow the MTU once
// encapsulated.
func probePlan(cfg *config.Config, backends *ids, mtu int) (map[string]uint32, map[netip.Addr]int) {
	marks := map[string]uint32{}
	routes := map[netip.Addr]int{}
	for _, s := range cfg.Services {
		if s.Mode != config.ModeL4 || (s.Forwarding != config.ForwardingL2DSR && s.Forwarding != config.ForwardingIPIP) {
			continue
		}
		vipMTU := 0 // the interface's
		for _, b := range s.Backends {
			index, ok := backends.byKey[backendKey(s.Name, b.Name)]
			if !ok {
				continue
			}
			mark := bpf.ProbeMarkBase | index
			if s.Forwarding == config.ForwardingIPIP {
				mark |= bpf.ProbeMarkIPIP
				overhead := 20
				if b.Address.Unmap().Is6() {
					overhead = 40
				}
				if vipMTU == 0 || mtu-overhead < vipMTU {
					vipMTU = mtu - overhead
				}
			}
			marks[backendKey(s.Name, b.Name)] = mark
		}
		vip := s.AddrPort().Addr().Unmap()
		if cur, seen := routes[vip]; !seen || cur == 0 || (vipMTU != 0 && vipMTU < cur) {
			routes[vip] = vipMTU
		}
	}
	return marks, routes
}

// close detaches the tc program and, unless another process's probe
// program is still attached to the interface (a daemon that took over),
// removes the rules, routes and neighbours.
func (p *probeState) close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.marks.Store(nil)
	if p.tc == nil {
		return nil
	}
	var errs []error
	errs = append(errs, p.tc.Close(), p.objs.Close())
	p.tc, p.objs = nil, nil
	// Unable to tell, remove: a successor puts them back on its next
	// Apply, while leftovers would outlive every daemon.
	if n, err := probePrograms(p.ifindex); err != nil {
		p.log.Warn("removing the probe rules and routes without knowing whether another daemon uses them", "err", err)
	} else if n > 0 {
		p.log.Info("another probe program steers on this interface; its rules and routes stay",
			"ifindex", p.ifindex, "programs", n)
		return errors.Join(errs...)
	}
	errs = append(errs, removeProbeSteering(p.ifindex))
	return errors.Join(errs...)
}

// probePrograms counts the probe programs attached to the egress of
// interface ifindex.
func probePrograms(ifindex int) (int, error) {
	res, err := link.QueryPrograms(link.QueryOptions{Target: ifindex, Attach: ebpf.AttachTCXEgress})
	if err != nil {
		return 0, fmt.Errorf("list tc egress programs of ifindex %d: %w", ifindex, err)
	}
	n := 0
	for _, ap := range res.Programs {
		prog, err := ebpf.NewProgramFromID(ap.ID)
		if err != nil {
			continue // gone meanwhile
		}
		info, err := prog.Info()
		prog.Close()
		if err == nil && info.Name == bpf.ProbeProgramName {
			n++
		}
	}
	return n, nil
}
