package forwarder

import (
	"encoding/binary"
	"sync"

	"github.com/spooky-lb/spooky/bpf"
)

// routeTables are the Router's flow table and CID cache, modelled on
// lb.c's maps:
//
//   - cache mirrors one CPU's flow_cache: a direct-mapped array where
//     Maglev decisions are recorded, a colliding flow replacing the entry
//     (lb.c "Caches"), with lb.c's slot function, so that a corpus run
//     on one CPU evolves both alike;
//   - flows mirrors the flows map, which Go writes and XDP only reads;
//   - cids mirrors cid_cache.
//
// flows and cids are bounded like the LRU maps they mirror; when one is
// full an arbitrary entry makes room (the kernel evicts an old one; either
// way the next packet of that flow is hashed again).
type routeTables struct {
	mu       sync.Mutex
	cache    []flowCacheEntry // bpf.FlowCacheSize slots, allocated on first use
	cached   int              // valid entries in cache
	flows    map[bpf.FlowKey]uint32
	cids     map[bpf.CIDKey]uint32
	maxFlows int
	maxCIDs  int
}

type flowCacheEntry struct {
	key     bpf.FlowKey
	backend uint32
	valid   bool // lb.c: state.last_seen_ns != 0
}

func (t *routeTables) init(maxFlows, maxCIDs int) {
	t.flows = map[bpf.FlowKey]uint32{}
	t.cids = map[bpf.CIDKey]uint32{}
	t.maxFlows, t.maxCIDs = maxFlows, maxCIDs
}

// flowCacheSlot mirrors flow_cache_slot and cache_slot of lb.c: a
// multiplicative (Fibonacci) hash of the key's six little-endian words.
func flowCacheSlot(k *bpf.FlowKey) uint32 {
	le := binary.LittleEndian
	w4 := k.VipId
	w5 := uint32(k.SrcPort) | uint32(k.Pad)<<16
	x := (le.Uint32(k.Src[0:])^le.Uint32(k.Src[4:])^le.Uint32(k.Src[8:])^le.Uint32(k.Src[12:]))*0x85ebca6b ^
		w4*0xc2b2ae35 ^ w5
	return (x * 0x9e3779b1) >> (32 - flowCacheBits)
}

// flowCacheBits is FLOW_CACHE_BITS of spooky.h.
const flowCacheBits = 15

// The slot function assumes flow_cache has 1 << flowCacheBits slots.
var _ [bpf.FlowCacheSize - 1<<flowCacheBits]struct{}
var _ [1<<flowCacheBits - bpf.FlowCacheSize]struct{}

// lookupFlow mirrors the flow table step of route_flow_or_hash: the flow
// cache entry if it holds k, else the flows map.
func (t *routeTables) lookupFlow(k bpf.FlowKey) (uint32, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.cache != nil {
		if e := &t.cache[flowCacheSlot(&k)]; e.valid && e.key == k {
			return e.backend, true
		}
	}
	v, ok := t.flows[k]
	return v, ok
}

// recordFlow stores a Maglev decision in k's flow cache slot, replacing
// whatever held it.
func (t *routeTables) recordFlow(k bpf.FlowKey, backend uint32) {
	t.mu.Lock()
	if t.cache == nil {
		t.cache = make([]flowCacheEntry, bpf.FlowCacheSize)
	}
	e := &t.cache[flowCacheSlot(&k)]
	if !e.valid {
		t.cached++
	}
	*e = flowCacheEntry{key: k, backend: backend, valid: true}
	t.mu.Unlock()
}

// putFlow records a flow as Go does in the flows map.
func (t *routeTables) putFlow(k bpf.FlowKey, backend uint32) {
	t.mu.Lock()
	if _, ok := t.flows[k]; !ok && len(t.flows) >= t.maxFlows {
		for old := range t.flows {
			delete(t.flows, old)
			break
		}
	}
	t.flows[k] = backend
	t.mu.Unlock()
}

func (t *routeTables) flowCount() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.cached + len(t.flows)
}

func (t *routeTables) getCID(k bpf.CIDKey) (uint32, bool) {
	t.mu.Lock()
	v, ok := t.cids[k]
	t.mu.Unlock()
	return v, ok
}

func (t *routeTables) putCID(k bpf.CIDKey, backend uint32) {
	t.mu.Lock()
	if _, ok := t.cids[k]; !ok && len(t.cids) >= t.maxCIDs {
		for old := range t.cids {
			delete(t.cids, old)
			break
		}
	}
	t.cids[k] = backend
	t.mu.Unlock()
}

// forget drops the flows (cached and recorded) and cached CIDs that point
// at freed backends, as the Syncer does with bpf.DeleteFlows and in
// cid_cache.
func (t *routeTables) forget(freed []uint32) {
	if len(freed) == 0 {
		return
	}
	gone := make(map[uint32]bool, len(freed))
	for _, i := range freed {
		gone[i] = true
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := range t.cache {
		if e := &t.cache[i]; e.valid && gone[e.backend] {
			*e = flowCacheEntry{}
			t.cached--
		}
	}
	for k, v := range t.flows {
		if gone[v] {
			delete(t.flows, k)
		}
	}
	for k, v := range t.cids {
		if gone[v] {
			delete(t.cids, k)
		}
	}
}
