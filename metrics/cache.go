package metrics

import (
	"maps"
	"sync"
	"sync/atomic"
)

// childCache maps a label set (a comparable struct of strings) to the
// series made for it, so the hot path looks a map up instead of hashing
// label values through a *Vec and allocating their slice. Reads take no
// lock: the map is copied on write, and writes are rare because the label
// sets are bounded by the config.
type childCache[K comparable, V any] struct {
	mu       sync.Mutex // serialises writers
	m        atomic.Pointer[map[K]V]
	newChild func(K) V
}

func newChildCache[K comparable, V any](newChild func(K) V) *childCache[K, V] {
	c := &childCache[K, V]{newChild: newChild}
	c.m.Store(&map[K]V{})
	return c
}

// get returns k's series, making it on first use.
func (c *childCache[K, V]) get(k K) V {
	if v, ok := (*c.m.Load())[k]; ok {
		return v
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	old := *c.m.Load()
	if v, ok := old[k]; ok {
		return v
	}
	v := c.newChild(k)
	next := make(map[K]V, len(old)+1)
	maps.Copy(next, old)
	next[k] = v
	c.m.Store(&next)
	return v
}
