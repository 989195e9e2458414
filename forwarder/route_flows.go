package forwarder

import (
	"encoding/binary"
	"math/bits"
	"sync"

	"github.com/spooky-lb/spooky/bpf"
)

// routeTables are the Router's flow table and CID cache, modelled on
// lb.c's maps:
//
//   - cache mirrors one CPU's flow_cache, the one flow table: a
//     direct-mapped array where Maglev decisions are recorded, a colliding
//     flow replacing the entry (lb.c "Caches"), with lb.c's slot function
//     (bpf.FlowCacheSlot), so that a corpus run on one CPU evolves both
//     alike;
//   - cids mirrors cid_cache, bounded like that LRU map: when it is full
//     an arbitrary entry makes room (the kernel evicts an old one; either
//     way the next packet of that connection misses).
type routeTables struct {
	mu      sync.Mutex
	cache   []flowCacheEntry // bpf.FlowCacheSize slots, allocated on first use
	cached  int              // valid entries in cache
	cids    map[bpf.CIDKey]uint32
	maxCIDs int
	// direct, when not nil, replaces cids: a direct-mapped table (a
	// colliding DCID replaces the entry), for the slow path, where a
	// lost entry costs one decryption (tens of ns) and a Go map's lookup
	// and eviction cost more than that (slowpath.go).
	direct []cidSlot
	seed   uint64
}

type cidSlot struct {
	key     bpf.CIDKey
	backend uint32
}

// directSlot returns k's slot in direct: a multiply-shift hash of the
// DCID's first octets (random-looking for encrypted CIDs), salted so that
// a sender cannot aim at one slot.
func (t *routeTables) directSlot(k *bpf.CIDKey) *cidSlot {
	x := binary.LittleEndian.Uint64(k.Cid[0:8]) ^ binary.LittleEndian.Uint64(k.Cid[8:16])<<1 ^
		uint64(binary.LittleEndian.Uint32(k.Cid[16:20])) ^ uint64(k.VipId)<<40 ^ uint64(k.Len)<<56
	x = (x ^ t.seed) * 0x9e3779b97f4a7c15
	return &t.direct[x>>(64-bits.TrailingZeros(uint(len(t.direct))))]
}

type flowCacheEntry struct {
	key     bpf.FlowKey
	backend uint32
	valid   bool // lb.c: state.last_seen_ns != 0
}

func (t *routeTables) init(maxCIDs int) {
	t.cids = map[bpf.CIDKey]uint32{}
	t.maxCIDs = maxCIDs
}

// lookupFlow mirrors the flow table step of route_flow_or_hash: the flow
// cache entry, if it holds k.
func (t *routeTables) lookupFlow(k bpf.FlowKey) (uint32, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.cache == nil {
		return 0, false
	}
	if e := &t.cache[bpf.FlowCacheSlot(k)]; e.valid && e.key == k {
		return e.backend, true
	}
	return 0, false
}

// recordFlow stores a flow in k's flow cache slot, replacing whatever held
// it: a Maglev decision, as lb.c records it, or a flow Go puts on every
// CPU with bpf.PutFlow.
func (t *routeTables) recordFlow(k bpf.FlowKey, backend uint32) {
	t.mu.Lock()
	if t.cache == nil {
		t.cache = make([]flowCacheEntry, bpf.FlowCacheSize)
	}
	e := &t.cache[bpf.FlowCacheSlot(k)]
	if !e.valid {
		t.cached++
	}
	*e = flowCacheEntry{key: k, backend: backend, valid: true}
	t.mu.Unlock()
}

func (t *routeTables) flowCount() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.cached
}

func (t *routeTables) getCID(k bpf.CIDKey) (uint32, bool) {
	t.mu.Lock()
	if t.direct != nil {
		e := t.directSlot(&k)
		v, ok := e.backend, e.key == k && k.Len != 0
		t.mu.Unlock()
		return v, ok
	}
	v, ok := t.cids[k]
	t.mu.Unlock()
	return v, ok
}

func (t *routeTables) putCID(k bpf.CIDKey, backend uint32) {
	t.mu.Lock()
	if t.direct != nil {
		*t.directSlot(&k) = cidSlot{key: k, backend: backend}
		t.mu.Unlock()
		return
	}
	if _, ok := t.cids[k]; !ok && len(t.cids) >= t.maxCIDs {
		for old := range t.cids {
			delete(t.cids, old)
			break
		}
	}
	t.cids[k] = backend
	t.mu.Unlock()
}

// forget drops the flows and cached CIDs that point at freed backends, as
// the Syncer does with bpf.DeleteFlows and in cid_cache.
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
	for k, v := range t.cids {
		if gone[v] {
			delete(t.cids, k)
		}
	}
	for i := range t.direct {
		if e := &t.direct[i]; e.key.Len != 0 && gone[e.backend] {
			*e = cidSlot{}
		}
	}
}
