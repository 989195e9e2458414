package forwarder

import (
	"fmt"
	"time"

	"github.com/spooky-lb/spooky/bpf"
	"github.com/spooky-lb/spooky/cid"
	"github.com/spooky-lb/spooky/config"
	"github.com/spooky-lb/spooky/xsk"
)

// Dataplane says where the packet tier's decisions are made.
type Dataplane string

// Dataplanes.
const (
	// DataplaneXDP decides in XDP and hands only encrypted-CID cache
	// misses to Go (the slow path).
	DataplaneXDP Dataplane = "xdp"
	// DataplaneUserspace hands every datagram of the l4 VIPs to Go over
	// AF_XDP: the same decision, made by forwarder.Router, for debugging
	// and as the reference XDP is checked against. Slower: every frame is
	// copied to and from the UMEM and costs a share of a system call.
	DataplaneUserspace Dataplane = "userspace"
)

// slowPathSocket sizes each queue's socket: 2048-octet frames hold an
// Ethernet MTU of 1500 with the 256 octets of headroom where an outer
// header is written; 4096 frames (8 MB) keep the fill ring full while TX
// frames are in flight.
var slowPathSocket = xsk.Options{Mode: xsk.ModeCopy, Frames: 4096, FrameSize: 2048, RingSize: 2048}

// userspaceSocket sizes them for --dataplane userspace, where every
// datagram passes through them: rings four times as deep (32 MB of
// frames per queue) absorb the bursts a descheduled worker lets build up.
var userspaceSocket = xsk.Options{Mode: xsk.ModeCopy, Frames: 16384, FrameSize: 2048, RingSize: 8192}

// startSlowPath opens the AF_XDP sockets of the interface. Without them
// (no AF_XDP, no privilege) the xdp dataplane still runs, hashing
// encrypted misses; the userspace dataplane cannot.
func (x *XDP) startSlowPath() error {
	so := &slowPathSocket
	if x.dataplane == DataplaneUserspace {
		so = &userspaceSocket
	}
	sp, err := StartSlowPath(x.objs, SlowPathOptions{
		Ifindex: x.link.Attrs().Index,
		Queues:  x.link.Attrs().NumRxQueues,
		Socket:  so,
		Logger:  x.log,
	})
	if err != nil {
		if x.dataplane == DataplaneUserspace {
			return privilege(fmt.Errorf("userspace dataplane: %w", err))
		}
		x.log.Warn("no slow path: encrypted connection IDs that miss cid_cache are hashed", "err", err)
		return nil
	}
	x.slow = sp
	x.log.Info("slow path listening", "interface", x.link.Attrs().Name, "queues", sp.Queues(), "dataplane", x.dataplane)
	return nil
}

// planSlowPath marks the VIPs whose datagrams XDP hands to Go: every l4
// VIP under the userspace dataplane, else those with an encrypted CID
// config. It returns the decoders of the VIPs with CID configs, by VIP id.
func (x *XDP) planSlowPath(cfg *config.Config, d *Desired) (map[uint32]*cid.Decoder, error) {
	byName := map[string]*config.ServiceConfig{}
	for i := range cfg.Services {
		byName[cfg.Services[i].Name] = &cfg.Services[i]
	}
	decoders := map[uint32]*cid.Decoder{}
	for k, v := range d.VIPs {
		if v.Info.Mode != bpf.ModeL4 {
			continue
		}
		s := byName[v.Service]
		if s == nil || len(s.CID) == 0 {
			if x.dataplane == DataplaneUserspace && x.slow != nil {
				v.Info.Flags |= bpf.VIPUserspace
				d.VIPs[k] = v
			}
			continue
		}
		cfgs, err := s.CIDConfigs()
		if err != nil {
			return nil, fmt.Errorf("service %q: %w", s.Name, err)
		}
		dec, err := cid.NewDecoder(cfgs...)
		if err != nil {
			return nil, fmt.Errorf("service %q: %w", s.Name, err)
		}
		decoders[v.Info.Id] = dec
		if x.slow == nil {
			continue
		}
		if x.dataplane == DataplaneUserspace {
			v.Info.Flags |= bpf.VIPUserspace
		}
		for _, c := range cfgs {
			if c.Encrypted() {
				v.Info.Flags |= bpf.VIPSlowPath
			}
		}
		d.VIPs[k] = v
	}
	return decoders, nil
}

// writeSlowPathLimits writes each VIP's slow path limit (config
// slow_path.rate and burst, per CPU) before the VIPs that use it.
func (x *XDP) writeSlowPathLimits(cfg *config.Config, d *Desired) error {
	sp := cfg.SlowPath
	if n := x.objs.CidCache.MaxEntries(); sp.CIDCacheSize > 0 && uint32(sp.CIDCacheSize) != n {
		// The map is pinned with its size: only a fresh start resizes it.
		x.log.Warn("slow_path.cid_cache_size changes at the next attach after spooky detach",
			"configured", sp.CIDCacheSize, "in_use", n)
	}
	lim := bpf.SlowPathLimit{}
	if sp.Rate > 0 {
		lim.IntervalNs = uint64(time.Second) / uint64(sp.Rate)
		lim.IntervalNs = max(lim.IntervalNs, 1)
		lim.BurstNs = uint64(sp.Burst) * lim.IntervalNs
	}
	for _, v := range d.VIPs {
		if err := putIfChanged(x.objs.SlowPathLimits, v.Info.Id, lim); err != nil {
			return fmt.Errorf("slow path limit of vip %q: %w", v.Service, err)
		}
	}
	return nil
}

// SlowPath returns the slow path, or nil when the interface has none.
func (x *XDP) SlowPath() *SlowPath { return x.slow }
