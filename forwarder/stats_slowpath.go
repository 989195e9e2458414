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

// readSlowPathReasons returns slow_path_reasons by name, or nil for pins
// without it.
func readSlowPathReasons(root, iface string) (map[string]uint64, error) {
	m, err := OpenPinnedMap(root, iface, "slow_path_reasons")
	if errors.Is(err, ErrNothingAttached) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer m.Close()
	out := map[string]uint64{}
	for r := range bpf.NumReasons {
		var v uint64
		if err := m.Lookup(uint32(r), &v); err != nil {
			return nil, fmt.Errorf("read slow_path_reasons[%d]: %w", r, err)
		}
		out[bpf.Reason(r).String()] = v
	}
	return out, nil
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
		s := v.SlowPath
		v.Packets += s.CID + s.CIDCache + s.Flow + s.Maglev
		v.Bytes += s.Bytes
		if n := v.CIDCache + v.SlowPath.Limited + v.SlowPath.Redirected; n > 0 {
			v.SlowPath.HitRatio = float64(v.CIDCache) / float64(n)
		}
	}
	return nil
}

// readSlowPathBackends returns slow_path_backend_stats by backend index,
// or nil for pins without it.
func readSlowPathBackends(root, iface string) []bpf.BackendCounters {
	m, err := OpenPinnedMap(root, iface, "slow_path_backend_stats")
	if err != nil {
		return nil
	}
	defer m.Close()
	out := make([]bpf.BackendCounters, bpf.MaxBackends)
	for i := range out {
		if err := m.Lookup(uint32(i), &out[i]); err != nil {
			return nil
		}
	}
	return out
}
