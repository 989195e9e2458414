package forwarder

import (
	"fmt"
	"slices"
)

// ids hands out small integer identifiers (VIP ids, backend indexes) to
// named things and keeps them across reloads, so a reload that leaves a
// backend in place leaves its index, its counters and the flows that point
// at it untouched. A fresh allocator assigns ids in the order names are
// first seen, so the same config gives the same ids after a restart too.
type ids struct {
	limit uint32
	byKey map[string]uint32
}

func newIDs(limit uint32) *ids {
	return &ids{limit: limit, byKey: map[string]uint32{}}
}

// assign returns the id for each key, keeping the ids of keys seen before
// and giving new keys the lowest free ids. Ids of keys no longer present are
// returned as freed, in increasing order. A freed id goes to a new key only
// when no other id is left: the syncer writes new entries before it removes
// stale ones, so an id reused at once would briefly serve both. On error
// nothing changes.
func (a *ids) assign(keys []string) (got map[string]uint32, freed []uint32, err error) {
	want := make(map[string]bool, len(keys))
	for _, k := range keys {
		want[k] = true
	}
	if uint32(len(want)) > a.limit {
		return nil, nil, fmt.Errorf("%d entries, at most %d fit", len(want), a.limit)
	}
	taken := map[uint32]bool{}
	got = make(map[string]uint32, len(want))
	for k, id := range a.byKey {
		if want[k] {
			got[k] = id
		} else {
			freed = append(freed, id)
		}
		taken[id] = true
	}
	slices.Sort(freed)
	spare := freed // freed ids not yet handed out again
	next := uint32(0)
	for _, k := range keys {
		if _, ok := got[k]; ok {
			continue
		}
		for next < a.limit && taken[next] {
			next++
		}
		if next < a.limit {
			got[k] = next
			taken[next] = true
			continue
		}
		got[k], spare = spare[0], spare[1:]
	}
	a.byKey = got
	return got, freed, nil
}

func (a *ids) clone() *ids {
	c := newIDs(a.limit)
	for k, v := range a.byKey {
		c.byKey[k] = v
	}
	return c
}
