package forwarder

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"github.com/cilium/ebpf"

	"github.com/spooky-lb/spooky/bpf"
)

// Syncer writes Desired states into the XDP program's maps with as little
// churn as it can: entries that already hold the desired value are not
// written, and a VIP's new Maglev table is written into the inactive slot
// and switched to with one update of the VIP entry, so no packet ever sees
// half a table.
type Syncer struct {
	objs *bpf.LBObjects
	log  *slog.Logger
	// tables holds the table last written for each VIP id, to skip
	// rewriting an unchanged one. Empty after a restart, so the first
	// Apply rewrites every table once (into the inactive slot).
	tables map[uint32][]uint32
}

// NewSyncer returns a Syncer for the maps in objs, which may have been
// adopted from pins of an earlier run. If log is nil, slog.Default() is used.
func NewSyncer(objs *bpf.LBObjects, log *slog.Logger) *Syncer {
	if log == nil {
		log = slog.Default()
	}
	return &Syncer{objs: objs, log: log, tables: map[uint32][]uint32{}}
}

// SetLB writes the load balancer's own MAC and encapsulation sources.
func (s *Syncer) SetLB(c bpf.LBConfig) error {
	if err := s.objs.Config.Put(uint32(0), c); err != nil {
		return fmt.Errorf("write config map: %w", err)
	}
	return nil
}

// Apply makes the maps hold d. Additions come before the switch of each
// VIP to its new table, and removals after it, so that every table a
// packet can see points at backends and server IDs that exist.
func (s *Syncer) Apply(d *Desired) error {
	for index, want := range d.Backends {
		if err := putIfChanged(s.objs.Backends, index, want); err != nil {
			return fmt.Errorf("backend %d: %w", index, err)
		}
	}
	for key, index := range d.ServerIDs {
		if err := putIfChanged(s.objs.ServerIds, key, index); err != nil {
			return fmt.Errorf("server id of vip %d: %w", key.VipId, err)
		}
	}
	for key, vip := range d.VIPs {
		if err := s.applyVIP(key, vip); err != nil {
			return fmt.Errorf("vip %q: %w", vip.Service, err)
		}
	}
	// XDP keeps per-CPU copies of vips and server_ids until told they are
	// stale: once after the switches, so no CPU keeps using an old table,
	// and once after the removals.
	if err := bpf.InvalidateCaches(s.objs); err != nil {
		return err
	}
	if err := s.removeStale(d); err != nil {
		return err
	}
	return bpf.InvalidateCaches(s.objs)
}

func (s *Syncer) applyVIP(key bpf.VIPKey, vip DesiredVIP) error {
	info := vip.Info
	var current bpf.VIPInfo
	exists := true
	if err := s.objs.Vips.Lookup(key, &current); errors.Is(err, ebpf.ErrKeyNotExist) {
		exists = false
	} else if err != nil {
		return fmt.Errorf("read vip: %w", err)
	}
	// A VIP that kept its key but got another id (removed and re-added
	// in one reload) has nothing in its slots yet.
	sameID := exists && current.Id == info.Id
	cached, haveCached := s.tables[info.Id]
	switch {
	case vip.Table == nil:
		info.MaglevSlot = 0
	case sameID && haveCached && slices.Equal(cached, vip.Table):
		info.MaglevSlot = current.MaglevSlot
	default:
		slot := uint32(0)
		if sameID {
			slot = 1 - current.MaglevSlot&1
		}
		if err := s.writeTable(info.Id, slot, vip.Table); err != nil {
			return err
		}
		info.MaglevSlot = slot
	}
	if err := putIfChanged(s.objs.Vips, key, info); err != nil {
		return err
	}
	if vip.Table == nil {
		delete(s.tables, info.Id)
	} else {
		s.tables[info.Id] = vip.Table
	}
	return nil
}

func (s *Syncer) writeTable(vipID, slot uint32, table []uint32) error {
	inner, err := bpf.NewMaglevTable(table)
	if err != nil {
		return err
	}
	// The outer map holds its own reference; our fd can go.
	defer inner.Close()
	if err := s.objs.Maglev.Put(bpf.MaglevSlot(vipID, slot), inner); err != nil {
		return fmt.Errorf("store maglev table in slot %d: %w", slot, err)
	}
	return nil
}

// removeStale deletes what d does not hold: VIPs, their tables, server
// IDs, and the slots, flows and cached CIDs of freed backends.
func (s *Syncer) removeStale(d *Desired) error {
	liveIDs := map[uint32]bool{}
	for _, v := range d.VIPs {
		liveIDs[v.Info.Id] = true
	}
	var key bpf.VIPKey
	var info bpf.VIPInfo
	var staleVIPs []bpf.VIPKey
	for it := s.objs.Vips.Iterate(); it.Next(&key, &info); {
		if _, ok := d.VIPs[key]; !ok {
			staleVIPs = append(staleVIPs, key)
			if !liveIDs[info.Id] {
				defer s.clearTables(info.Id)
			}
		}
	}
	if err := deleteKeys(s.objs.Vips, staleVIPs); err != nil {
		return fmt.Errorf("remove vips: %w", err)
	}

	var sid bpf.ServerIDKey
	var index uint32
	var staleSIDs []bpf.ServerIDKey
	for it := s.objs.ServerIds.Iterate(); it.Next(&sid, &index); {
		if _, ok := d.ServerIDs[sid]; !ok {
			staleSIDs = append(staleSIDs, sid)
		}
	}
	if err := deleteKeys(s.objs.ServerIds, staleSIDs); err != nil {
		return fmt.Errorf("remove server ids: %w", err)
	}

	if len(d.Freed) == 0 {
		return nil
	}
	freed := map[uint32]bool{}
	for _, i := range d.Freed {
		freed[i] = true
		if _, reused := d.Backends[i]; !reused {
			if err := s.objs.Backends.Put(i, bpf.Backend{}); err != nil {
				return fmt.Errorf("clear backend %d: %w", i, err)
			}
		}
	}
	// Flows and cached CIDs of a freed index belong to the backend that
	// left; a backend that takes the index later must not inherit them.
	// DeleteFlows clears the entries on every CPU's flow_cache.
	if _, err := bpf.DeleteFlows(s.objs, func(_ bpf.FlowKey, fs bpf.FlowState) bool { return freed[fs.Backend] }); err != nil {
		return fmt.Errorf("remove flows of freed backends: %w", err)
	}
	var ck bpf.CIDKey
	var staleCIDs []bpf.CIDKey
	for it := s.objs.CidCache.Iterate(); it.Next(&ck, &index); {
		if freed[index] {
			staleCIDs = append(staleCIDs, ck)
		}
	}
	if err := deleteKeys(s.objs.CidCache, staleCIDs); err != nil {
		return fmt.Errorf("remove cached cids of freed backends: %w", err)
	}
	return nil
}

func (s *Syncer) clearTables(vipID uint32) {
	delete(s.tables, vipID)
	for slot := uint32(0); slot < 2; slot++ {
		err := s.objs.Maglev.Delete(bpf.MaglevSlot(vipID, slot))
		if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			s.log.Warn("remove maglev table", "vip_id", vipID, "slot", slot, "err", err)
		}
	}
}

// putIfChanged writes value under key unless the map already holds it.
func putIfChanged[K comparable, V comparable](m *ebpf.Map, key K, value V) error {
	var current V
	if err := m.Lookup(key, &current); err == nil && current == value {
		return nil
	} else if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("read %s: %w", m, err)
	}
	if err := m.Put(key, value); err != nil {
		return fmt.Errorf("write %s: %w", m, err)
	}
	return nil
}

// deleteKeys deletes keys, tolerating ones that went away meanwhile (LRU
// eviction).
func deleteKeys[K any](m *ebpf.Map, keys []K) error {
	for _, k := range keys {
		if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return err
		}
	}
	return nil
}
