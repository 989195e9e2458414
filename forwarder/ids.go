package forwarder

import "fmt"

// ids hands out small integer identifiers (VIP ids, backend indexes) to
// named things and keeps them across reloads, so a reload that leaves a
// backend in place leaves its index, its counters and the flows that point
// at it untouched. A fresh allocator assigns ids in the order names are
// first seen, so the same config gives the same ids after a restart too.
type ids struct {
	limit uint32
	byKey map[string]uint32
	used  map[uint32]bool
}

func newIDs(limit uint32) *ids {
	return &ids{limit: limit, byKey: map[string]uint32{}, used: map[uint32]bool{}}
}

// assign returns the id for each key, keeping the ids of keys seen before
// and giving new keys the lowest free ids. Ids of keys no longer present are
// returned as freed. On error nothing changes.
func (a *ids) assign(keys []string) (got map[string]uint32, freed []uint32, err error) {
	want := make(map[string]bool, len(keys))
	for _, k := range keys {
		want[k] = true
	}
	if uint32(len(want)) > a.limit {
		return nil, nil, fmt.Errorf("%d entries, at most %d fit", len(want), a.limit)
	}
	used := map[uint32]bool{}
	got = make(map[string]uint32, len(want))
	for k, id := range a.byKey {
		if want[k] {
			got[k] = id
			used[id] = true
		} else {
			freed = append(freed, id)
		}
	}
	next := uint32(0)
	for _, k := range keys {
		if _, ok := got[k]; ok {
			continue
		}
		for used[next] {
			next++
		}
		got[k] = next
		used[next] = true
	}
	a.byKey, a.used = got, used
	return got, freed, nil
}

func (a *ids) clone() *ids {
	c := newIDs(a.limit)
	for k, v := range a.byKey {
		c.byKey[k] = v
		c.used[v] = true
	}
	return c
}
