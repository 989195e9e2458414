package bpf

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
)

// FlowKey is the key of a flow_cache entry: the client side of a flow to a
// VIP. SrcPort is in network order, as on the wire. In the map the VIP id
// takes 16 bits (ids are below MaxVIPs).
type FlowKey struct {
	Src     [16]byte
	VipId   uint32
	SrcPort uint16
}

// FlowState is the state of a flow_cache entry.
type FlowState struct {
	// Backend is the backend index the flow goes to.
	Backend uint32
	// LastSeenNs is the CLOCK_MONOTONIC_COARSE time in ns of the flow's
	// last packet, as XDP stamps it (at most every 64 ms). 0 marks an
	// empty slot.
	LastSeenNs uint64
}

// FlowCacheEntry is one CPU's flow_cache entry: a flow XDP decided by
// Maglev on that CPU, or Go put there.
type FlowCacheEntry struct {
	Key   FlowKey
	State FlowState
}

// FlowCacheSize is the number of flow_cache slots per CPU.
const FlowCacheSize = 1 << flowCacheBits

// flowCacheBits is FLOW_CACHE_BITS of include/spooky.h.
const flowCacheBits = 15

// FlowCacheSlot returns the flow_cache slot of k, as lb.c's
// flow_cache_slot computes it: a multiplicative (Fibonacci) hash of the
// key's five little-endian words. Every CPU keeps k, if at all, in this
// slot of its own table.
func FlowCacheSlot(k FlowKey) uint32 {
	le := binary.LittleEndian
	w4 := uint32(k.SrcPort) | uint32(uint16(k.VipId))<<16
	x := (le.Uint32(k.Src[0:])^le.Uint32(k.Src[4:])^le.Uint32(k.Src[8:])^le.Uint32(k.Src[12:]))*0x85ebca6b ^
		w4*0xc2b2ae35
	return (x * 0x9e3779b1) >> (32 - flowCacheBits)
}

// flowCacheIndex is the flow_cache index of slot in CPU cpu's table.
func flowCacheIndex(cpu int, slot uint32) uint32 {
	return uint32(cpu)<<flowCacheBits | slot
}

func toMapEntry(e FlowCacheEntry) lbFlowCacheEntry {
	return lbFlowCacheEntry{
		Key:        lbFlowKey{Src: e.Key.Src, SrcPort: e.Key.SrcPort, VipId: uint16(e.Key.VipId)},
		Backend:    e.State.Backend,
		LastSeenNs: e.State.LastSeenNs,
	}
}

func fromMapEntry(e lbFlowCacheEntry) FlowCacheEntry {
	return FlowCacheEntry{
		Key:   FlowKey{Src: e.Key.Src, VipId: uint32(e.Key.VipId), SrcPort: e.Key.SrcPort},
		State: FlowState{Backend: e.Backend, LastSeenNs: e.LastSeenNs},
	}
}

// flowCacheCPUs is the number of CPU tables flow_cache holds.
func flowCacheCPUs(m *ebpf.Map) int {
	return int(m.MaxEntries() / FlowCacheSize)
}

// ErrNoTimestamp is returned by PutFlow for a FlowState whose LastSeenNs
// is 0: XDP reads that as an empty flow_cache slot.
var ErrNoTimestamp = errors.New("flow state without a last-seen time")

// ErrNoSuchCPU is returned for a CPU that has no flow_cache table.
var ErrNoSuchCPU = errors.New("no flow table for that cpu")

// PutFlow records the flow k -> s on every CPU's flow_cache, replacing
// whatever flow each CPU held in k's slot (those are hashed again on their
// next packet, as after a collision). XDP then routes k's packets to
// s.Backend while it is usable, whichever CPU they arrive on.
// s.LastSeenNs is a CLOCK_MONOTONIC_COARSE time in ns, the clock XDP
// stamps flows with; it must not be 0.
func PutFlow(objs *LBObjects, k FlowKey, s FlowState) error {
	for cpu := range flowCacheCPUs(objs.FlowCache) {
		if err := PutFlowOnCPU(objs.FlowCache, cpu, k, s); err != nil {
			return err
		}
	}
	return nil
}

// PutFlowOnCPU records the flow k -> s in CPU cpu's table of the
// flow_cache map m (LBObjects.FlowCache, or the pinned map), replacing
// whatever flow it held in k's slot.
func PutFlowOnCPU(m *ebpf.Map, cpu int, k FlowKey, s FlowState) error {
	if s.LastSeenNs == 0 {
		return fmt.Errorf("put flow of vip %d: %w", k.VipId, ErrNoTimestamp)
	}
	if k.VipId >= MaxVIPs {
		return fmt.Errorf("put flow of vip %d: %w: vip id past %d", k.VipId, ErrInvalidKey, MaxVIPs-1)
	}
	if cpu < 0 || cpu >= flowCacheCPUs(m) {
		return fmt.Errorf("put flow of vip %d on cpu %d: %w", k.VipId, cpu, ErrNoSuchCPU)
	}
	slot := FlowCacheSlot(k)
	if err := m.Put(flowCacheIndex(cpu, slot), toMapEntry(FlowCacheEntry{Key: k, State: s})); err != nil {
		return fmt.Errorf("put flow into cpu %d flow_cache slot %d: %w", cpu, slot, err)
	}
	return nil
}

// FlowCacheSlotEntries returns every CPU's entry of slot in the
// flow_cache map m (LBObjects.FlowCache, or the pinned map), indexed by
// CPU. Empty entries are zero.
func FlowCacheSlotEntries(m *ebpf.Map, slot uint32) ([]FlowCacheEntry, error) {
	out := make([]FlowCacheEntry, flowCacheCPUs(m))
	for cpu := range out {
		var e lbFlowCacheEntry
		if err := m.Lookup(flowCacheIndex(cpu, slot), &e); err != nil {
			return nil, fmt.Errorf("read cpu %d flow_cache slot %d: %w", cpu, slot, err)
		}
		out[cpu] = fromMapEntry(e)
	}
	return out, nil
}

// flowBatch is how many flow_cache entries one batch lookup reads.
const flowBatch = 4096

// ForEachCachedFlow calls fn for every used entry of the flow_cache map m
// (LBObjects.FlowCache, or the pinned map), with its CPU and slot. It
// reads the map in batches, not an entry per system call.
func ForEachCachedFlow(m *ebpf.Map, fn func(cpu int, slot uint32, e FlowCacheEntry)) error {
	var (
		cursor ebpf.MapBatchCursor
		keys   = make([]uint32, flowBatch)
		vals   = make([]lbFlowCacheEntry, flowBatch)
	)
	for {
		n, err := m.BatchLookup(&cursor, keys, vals, nil)
		for i := range n {
			if vals[i].LastSeenNs != 0 {
				fn(int(keys[i]>>flowCacheBits), keys[i]&(FlowCacheSize-1), fromMapEntry(vals[i]))
			}
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read flow_cache: %w", err)
		}
	}
}

// InvalidateCaches makes every CPU's copies of vips and server_ids stale,
// so the next packet on each reads the maps again. Call it after writing
// (putting or deleting) entries of vips or server_ids, e.g. once at the
// end of a sync: until the call, XDP may keep using the old entries.
//
// The first call also turns the caches on. A program whose maps are
// written without ever calling it looks up vips and server_ids for every
// packet, which is correct but slower (about 45 ns per lookup).
func InvalidateCaches(objs *LBObjects) error {
	var gen uint64
	if err := objs.CacheGen.Lookup(uint32(0), &gen); err != nil {
		return fmt.Errorf("read cache generation: %w", err)
	}
	gen++
	if gen == 0 { // 0 would turn the caches off; skip it on wrap-around
		gen = 1
	}
	if err := objs.CacheGen.Put(uint32(0), gen); err != nil {
		return fmt.Errorf("bump cache generation: %w", err)
	}
	return nil
}

// DeleteFlows deletes the flows for which match returns true from the
// flow table, every CPU's flow_cache, and returns how many entries it
// deleted. match sees only used entries. Call it for the flows of freed
// backend indexes, so that a backend that later takes an index does not
// inherit them, and for idle flows.
func DeleteFlows(objs *LBObjects, match func(FlowKey, FlowState) bool) (int, error) {
	var hits []uint32
	err := ForEachCachedFlow(objs.FlowCache, func(cpu int, slot uint32, e FlowCacheEntry) {
		if match(e.Key, e.State) {
			hits = append(hits, flowCacheIndex(cpu, slot))
		}
	})
	if err != nil {
		return 0, err
	}
	// Clearing an entry XDP replaced since the read loses that flow,
	// which is hashed again on its next packet, as after a collision.
	if len(hits) > 0 {
		zeros := make([]lbFlowCacheEntry, len(hits))
		if _, err := objs.FlowCache.BatchUpdate(hits, zeros, nil); err != nil {
			return 0, fmt.Errorf("clear %d flow_cache entries: %w", len(hits), err)
		}
	}
	return len(hits), nil
}
