package forwarder

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spooky-lb/spooky/bpf"
)

// Activity is what the XDP path knows of a backend's traffic: enough to
// tell when a drained backend has no more work. XDP keeps no connection
// state for CID-routed packets, so the packet counter is the only sign
// that an established connection is still talking to it.
type Activity struct {
	// Flows are flow-table entries (any CPU) that point at the backend
	// and saw a packet within the window asked for.
	Flows int
	// Packets is the backend's forwarded-packet counter, summed over CPUs.
	Packets uint64
}

// BackendActivity returns the activity of backend of service, counting
// flows seen within the last window, and false if the last Apply did not
// configure that backend.
func (x *XDP) BackendActivity(service, backend string, window time.Duration) (Activity, bool, error) {
	x.mu.Lock()
	index, ok := x.planner.backends.byKey[backendKey(service, backend)]
	x.mu.Unlock()
	if !ok {
		return Activity{}, false, nil
	}
	now, err := flowClock()
	if err != nil {
		return Activity{}, true, err
	}
	since := uint64(max(int64(now)-window.Nanoseconds(), 1))
	var a Activity
	err = bpf.ForEachCachedFlow(x.objs.FlowCache, func(_ int, _ uint32, e bpf.FlowCacheEntry) {
		if e.State.Backend == index && e.State.LastSeenNs >= since {
			a.Flows++
		}
	})
	if err != nil {
		return Activity{}, true, fmt.Errorf("read flow_cache: %w", err)
	}
	var per []bpf.BackendCounters
	if err := x.objs.BackendStats.Lookup(index, &per); err != nil {
		return Activity{}, true, fmt.Errorf("read backend_stats[%d]: %w", index, err)
	}
	for _, c := range per {
		a.Packets += c.Packets
	}
	return a, true, nil
}

// Drained returns the backends ("service/backend") that an earlier run
// left draining in the pinned maps. A drain is the operator's and holds
// until undrained, so a restarted daemon (an upgrade) takes it up again
// rather than send new connections to a backend being emptied. Only
// meaningful before the first Apply, which rewrites the flags.
func (x *XDP) Drained() ([]string, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	var out []string
	for name, index := range x.storedBackends {
		key := bytesString(name[:])
		if strings.HasPrefix(key, "sha256:") {
			continue // a name too long to store: not recoverable
		}
		var b bpf.Backend
		if err := x.objs.Backends.Lookup(index, &b); err != nil {
			return nil, fmt.Errorf("read backends[%d]: %w", index, err)
		}
		if b.Family != bpf.FamilyNone && b.Flags&bpf.BackendDraining != 0 {
			out = append(out, key)
		}
	}
	slices.Sort(out)
	return out, nil
}
