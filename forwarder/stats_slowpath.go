package forwarder

import (
	"errors"
	"fmt"

	"github.com/spooky-lb/spooky/bpf"
)

// SlowPathStats are one VIP's counters of the slow path: what XDP handed
// to Go over AF_XDP (cid_cache misses of encrypted configs, or every
// datagram with --dataplane userspace), what it routed by the flow table
// and Maglev instead because of the limit, and what Go did.
type SlowPathStats struct {
	// Redirected datagrams went to Go (XDP's vip_stats.slow_path).
	Redirected uint64 `json:"redirected"`
	// Limited cid_cache misses were over the VIP's slow path limit and
	// routed in XDP by the flow table and Maglev (cid_slow_path_limited).
	Limited uint64 `json:"limited"`
	// What Go did with the redirected datagrams (slow_path_stats): sent
	// by a decrypted server ID (and cached the DCID), by its own CID
	// cache, by the flow table, by Maglev, or not at all (passed or
	// dropped as XDP would have, with nowhere to pass to).
	CID          uint64 `json:"by_cid"`
	CIDCache     uint64 `json:"by_cid_cache"`
	Flow         uint64 `json:"by_flow"`
	Maglev       uint64 `json:"by_maglev"`
	NotForwarded uint64 `json:"not_forwarded"`
	Bytes        uint64 `json:"bytes"`
	// CacheEntries is how many of cid_cache's entries are the VIP's.
	CacheEntries uint64 `json:"cid_cache_entries"`
	// HitRatio is cid_cache hits over lookups of the VIP's encrypted
	// DCIDs in XDP (hits, redirected misses and limited ones); 0 with
	// no lookups.
	HitRatio float64 `json:"cid_cache_hit_ratio"`
}

// readSlowPathStats fills the slow path counters of vips from the pinned
// slow_path_stats and cid_cache; pins of a build without them leave the
// counters zero.
func readSlowPathStats(root, iface string, vips []VIPStats) error {
	idx := map[uint32]int{}
	for i, v := range vips {
		idx[v.ID] = i
	}
	if m, err := OpenPinnedMap(root, iface, "slow_path_stats"); err == nil {
		defer m.Close()
		for i := range vips {
			var c bpf.SlowPathCounters
			if err := m.Lookup(vips[i].ID, &c); err != nil {
				return fmt.Errorf("read slow_path_stats[%d]: %w", vips[i].ID, err)
			}
			s := &vips[i].SlowPath
			s.CID, s.CIDCache, s.Flow, s.Maglev, s.NotForwarded, s.Bytes = c.Cid, c.CidCache, c.Flow, c.Maglev, c.Other, c.Bytes
		}
	} else if !errors.Is(err, ErrNothingAttached) {
		return err
	}
	if m, err := OpenPinnedMap(root, iface, "cid_cache"); err == nil {
		defer m.Close()
		var k bpf.CIDKey
		var be uint32
		it := m.Iterate()
		for it.Next(&k, &be) {
			if i, ok := idx[k.VipId]; ok {
				vips[i].SlowPath.CacheEntries++
			}
		}
		if err := it.Err(); err != nil {
			return fmt.Errorf("iterate cid_cache: %w", err)
		}
	} else if !errors.Is(err, ErrNothingAttached) {
		return err
	}
	for i := range vips {
		v := &vips[i]
		if n := v.CIDCache + v.SlowPath.Limited + v.SlowPath.Redirected; n > 0 {
			v.SlowPath.HitRatio = float64(v.CIDCache) / float64(n)
		}
	}
	return nil
}
