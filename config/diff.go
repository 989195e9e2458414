package config

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
)

// Changes is what a reload from one valid configuration to another changes.
// Services and pools are matched by name, backends by name and upstreams by
// address; lists keep the order of the file they come from.
type Changes struct {
	// Global lists the top-level sections that changed: log, admin, metrics.
	Global []string
	// ServicesAdded and ServicesRemoved name whole services.
	ServicesAdded, ServicesRemoved []string
	// ServicesChanged are services present in both with any difference.
	ServicesChanged []ServiceChange
	// PoolsAdded and PoolsRemoved name whole pools.
	PoolsAdded, PoolsRemoved []string
	// PoolsChanged are pools present in both with any difference.
	PoolsChanged []PoolChange
}

// ServiceChange is how one service differs.
type ServiceChange struct {
	Name string
	// Fields lists the changed settings by YAML key, backends excluded (they
	// are itemized below), e.g. ["maglev_size", "cid"].
	Fields []string
	// Backends added, removed and changed (address, weight, server ID…), by name.
	BackendsAdded, BackendsRemoved, BackendsChanged []string
}

// PoolChange is how one pool differs.
type PoolChange struct {
	Name string
	// Fields lists the changed settings by YAML key, upstreams excluded.
	Fields []string
	// Upstreams added, removed and changed (weight, limits), by address.
	UpstreamsAdded, UpstreamsRemoved, UpstreamsChanged []string
}

// Diff compares two configurations. Both should be valid (names unique).
func Diff(old, new *Config) Changes {
	var c Changes
	c.Global = changedFields(reflect.ValueOf(*old), reflect.ValueOf(*new), "services", "pools")

	c.ServicesAdded, c.ServicesRemoved = addedRemoved(old.Services, new.Services, serviceName)
	for _, ns := range new.Services {
		prev := find(old.Services, ns.Name, serviceName)
		if prev == nil {
			continue
		}
		sc := ServiceChange{Name: ns.Name, Fields: changedFields(reflect.ValueOf(*prev), reflect.ValueOf(ns), "backends")}
		sc.BackendsAdded, sc.BackendsRemoved = addedRemoved(prev.Backends, ns.Backends, backendName)
		sc.BackendsChanged = changedItems(prev.Backends, ns.Backends, backendName)
		if len(sc.Fields)+len(sc.BackendsAdded)+len(sc.BackendsRemoved)+len(sc.BackendsChanged) > 0 {
			c.ServicesChanged = append(c.ServicesChanged, sc)
		}
	}

	c.PoolsAdded, c.PoolsRemoved = addedRemoved(old.Pools, new.Pools, poolName)
	for _, np := range new.Pools {
		op := find(old.Pools, np.Name, poolName)
		if op == nil {
			continue
		}
		pc := PoolChange{Name: np.Name, Fields: changedFields(reflect.ValueOf(*op), reflect.ValueOf(np), "upstreams")}
		pc.UpstreamsAdded, pc.UpstreamsRemoved = addedRemoved(op.Upstreams, np.Upstreams, upstreamAddr)
		pc.UpstreamsChanged = changedItems(op.Upstreams, np.Upstreams, upstreamAddr)
		if len(pc.Fields)+len(pc.UpstreamsAdded)+len(pc.UpstreamsRemoved)+len(pc.UpstreamsChanged) > 0 {
			c.PoolsChanged = append(c.PoolsChanged, pc)
		}
	}
	return c
}

// Empty reports whether nothing changed.
func (c Changes) Empty() bool {
	return len(c.Global)+len(c.ServicesAdded)+len(c.ServicesRemoved)+len(c.ServicesChanged)+
		len(c.PoolsAdded)+len(c.PoolsRemoved)+len(c.PoolsChanged) == 0
}

// String summarizes the changes on one line for a log, e.g.
// `services +api -old ~web(maglev_size; backends +b4 -b1); pools ~static(policy)`.
func (c Changes) String() string {
	if c.Empty() {
		return "no changes"
	}
	var parts []string
	if len(c.Global) > 0 {
		parts = append(parts, strings.Join(c.Global, " "))
	}
	var svc []string
	svc = appendNames(svc, "+", c.ServicesAdded)
	svc = appendNames(svc, "-", c.ServicesRemoved)
	for _, s := range c.ServicesChanged {
		svc = append(svc, "~"+s.Name+detail(s.Fields, "backends", s.BackendsAdded, s.BackendsRemoved, s.BackendsChanged))
	}
	if len(svc) > 0 {
		parts = append(parts, "services "+strings.Join(svc, " "))
	}
	var pools []string
	pools = appendNames(pools, "+", c.PoolsAdded)
	pools = appendNames(pools, "-", c.PoolsRemoved)
	for _, p := range c.PoolsChanged {
		pools = append(pools, "~"+p.Name+detail(p.Fields, "upstreams", p.UpstreamsAdded, p.UpstreamsRemoved, p.UpstreamsChanged))
	}
	if len(pools) > 0 {
		parts = append(parts, "pools "+strings.Join(pools, " "))
	}
	return strings.Join(parts, "; ")
}

func appendNames(out []string, sign string, names []string) []string {
	for _, n := range names {
		out = append(out, sign+n)
	}
	return out
}

func detail(fields []string, items string, added, removed, changed []string) string {
	var d []string
	if len(fields) > 0 {
		d = append(d, strings.Join(fields, " "))
	}
	var it []string
	it = appendNames(it, "+", added)
	it = appendNames(it, "-", removed)
	it = appendNames(it, "~", changed)
	if len(it) > 0 {
		d = append(d, items+" "+strings.Join(it, " "))
	}
	return fmt.Sprintf("(%s)", strings.Join(d, "; "))
}

func serviceName(s ServiceConfig) string { return s.Name }
func backendName(b BackendConfig) string { return b.Name }
func poolName(p PoolConfig) string       { return p.Name }
func upstreamAddr(u UpstreamConfig) string {
	return u.Address
}

func find[T any](items []T, key string, keyOf func(T) string) *T {
	for i := range items {
		if keyOf(items[i]) == key {
			return &items[i]
		}
	}
	return nil
}

// addedRemoved returns the keys only in new and only in old.
func addedRemoved[T any](old, new []T, keyOf func(T) string) (added, removed []string) {
	for _, n := range new {
		if find(old, keyOf(n), keyOf) == nil {
			added = append(added, keyOf(n))
		}
	}
	for _, o := range old {
		if find(new, keyOf(o), keyOf) == nil {
			removed = append(removed, keyOf(o))
		}
	}
	return added, removed
}

// changedItems returns the keys in both whose items differ.
func changedItems[T any](old, new []T, keyOf func(T) string) []string {
	var out []string
	for _, n := range new {
		if o := find(old, keyOf(n), keyOf); o != nil && !equal(reflect.ValueOf(*o), reflect.ValueOf(n)) {
			out = append(out, keyOf(n))
		}
	}
	return out
}

// changedFields returns the YAML keys of the struct fields that differ
// between a and b, leaving out the keys in skip.
func changedFields(a, b reflect.Value, skip ...string) []string {
	var out []string
	t := a.Type()
	for i := range t.NumField() {
		key, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if key == "" || key == "-" || slices.Contains(skip, key) {
			continue
		}
		if !equal(a.Field(i), b.Field(i)) {
			out = append(out, key)
		}
	}
	return out
}

// equal is reflect.DeepEqual except that a nil and an empty slice or map
// are the same: "routes: []" and no routes mean the same configuration.
func equal(a, b reflect.Value) bool {
	switch a.Kind() {
	case reflect.Slice:
		if a.Len() != b.Len() {
			return false
		}
		for i := range a.Len() {
			if !equal(a.Index(i), b.Index(i)) {
				return false
			}
		}
		return true
	case reflect.Map:
		if a.Len() != b.Len() {
			return false
		}
		for _, k := range a.MapKeys() {
			bv := b.MapIndex(k)
			if !bv.IsValid() || !equal(a.MapIndex(k), bv) {
				return false
			}
		}
		return true
	case reflect.Pointer:
		if a.IsNil() || b.IsNil() {
			return a.IsNil() == b.IsNil()
		}
		return equal(a.Elem(), b.Elem())
	case reflect.Struct:
		if a.Type() == addrType {
			return a.Interface() == b.Interface()
		}
		for i := range a.NumField() {
			if !equal(a.Field(i), b.Field(i)) {
				return false
			}
		}
		return true
	default:
		return a.Interface() == b.Interface()
	}
}
