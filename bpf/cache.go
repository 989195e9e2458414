package bpf

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
)

// FlowCacheEntry is the per-CPU value of the flow_cache map: a flow XDP
// decided by Maglev on that CPU (see include/spooky.h).
type FlowCacheEntry = lbFlowCacheEntry

// FlowCacheSize is the number of flow_cache slots per CPU.
const FlowCacheSize = 1 << 15

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

// DeleteFlows deletes the flows for which match returns true from both
// flow tables: flows (written by Go) and every CPU's flow_cache (written by
// XDP). It returns how many entries it deleted. Call it, for instance, for
// the flows of freed backend indexes, so that a backend that later takes
// an index does not inherit them.
func DeleteFlows(objs *LBObjects, match func(FlowKey, FlowState) bool) (int, error) {
	var (
		k     FlowKey
		s     FlowState
		stale []FlowKey
	)
	it := objs.Flows.Iterate()
	for it.Next(&k, &s) {
		if match(k, s) {
			stale = append(stale, k)
		}
	}
	if err := it.Err(); err != nil {
		return 0, fmt.Errorf("iterate flows: %w", err)
	}
	n := 0
	for _, k := range stale {
		err := objs.Flows.Delete(k)
		if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return n, fmt.Errorf("delete flow: %w", err)
		}
		n++
	}

	var (
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
