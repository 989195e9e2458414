package bpf

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
)

// FlowCacheEntry is the per-CPU value of the flow_cache map: a flow XDP
// decided by Maglev on that CPU (see include/spooky.h).
type FlowCacheEntry = lbFlowCacheEntry

// FlowCacheSize is the number of flow_cache slots per CPU.
const FlowCacheSize = 1 << flowCacheBits

// flowCacheBits is FLOW_CACHE_BITS of include/spooky.h.
const flowCacheBits = 15

// FlowCacheSlot returns the flow_cache slot of k, as lb.c's
// flow_cache_slot computes it: a multiplicative (Fibonacci) hash of the
// key's six little-endian words. Every CPU keeps k, if at all, in this
// slot of its own array.
func FlowCacheSlot(k FlowKey) uint32 {
	le := binary.LittleEndian
	w4 := k.VipId
	w5 := uint32(k.SrcPort) | uint32(k.Pad)<<16
	x := (le.Uint32(k.Src[0:])^le.Uint32(k.Src[4:])^le.Uint32(k.Src[8:])^le.Uint32(k.Src[12:]))*0x85ebca6b ^
		w4*0xc2b2ae35 ^ w5
	return (x * 0x9e3779b1) >> (32 - flowCacheBits)
}

// ErrNoTimestamp is returned by PutFlow for a FlowState whose LastSeenNs
// is 0: XDP reads that as an empty flow_cache slot.
var ErrNoTimestamp = errors.New("flow state without a last-seen time")

// PutFlow records the flow k -> s on every CPU's flow_cache, replacing
// whatever flow each CPU held in k's slot (those are hashed again on their
// next packet, as after a collision). XDP then routes k's packets to
// s.Backend while it is usable, whichever CPU they arrive on.
// s.LastSeenNs is a CLOCK_MONOTONIC_COARSE time in ns, the clock XDP
// stamps flows with; it must not be 0.
func PutFlow(objs *LBObjects, k FlowKey, s FlowState) error {
	if s.LastSeenNs == 0 {
		return fmt.Errorf("put flow of vip %d: %w", k.VipId, ErrNoTimestamp)
	}
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		return fmt.Errorf("put flow: count cpus: %w", err)
	}
	perCPU := make([]FlowCacheEntry, cpus)
	for i := range perCPU {
		perCPU[i] = FlowCacheEntry{Key: k, State: s}
	}
	slot := FlowCacheSlot(k)
	if err := objs.FlowCache.Put(slot, perCPU); err != nil {
		return fmt.Errorf("put flow into flow_cache slot %d: %w", slot, err)
	}
	return nil
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
	var (
		n      int
		slot   uint32
		perCPU []FlowCacheEntry
	)
	ci := objs.FlowCache.Iterate()
	for ci.Next(&slot, &perCPU) {
		hit := false
		for i := range perCPU {
			e := &perCPU[i]
			if e.State.LastSeenNs != 0 && match(e.Key, e.State) {
				*e = FlowCacheEntry{}
				hit = true
				n++
			}
		}
		if hit {
			// Writing a slot back writes every CPU's entry: one that
			// XDP replaced since the read is lost, and its flow is
			// hashed again, as after a collision.
			if err := objs.FlowCache.Put(slot, perCPU); err != nil {
				return n, fmt.Errorf("clear flow_cache slot %d: %w", slot, err)
			}
		}
	}
	if err := ci.Err(); err != nil {
		return n, fmt.Errorf("iterate flow_cache: %w", err)
	}
	return n, nil
}
