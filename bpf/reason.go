package bpf

import (
	"fmt"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
)

// enumNames reads an enum's value names from the BTF of an object, so
// the names are defined once, in include/spooky.h.
func enumNames(load func() (*ebpf.CollectionSpec, error), name, prefix string) map[uint64]string {
	names := map[uint64]string{}
	spec, err := load()
	if err != nil {
		return names
	}
	var e *btf.Enum
	if err := spec.Types.TypeByName(name, &e); err != nil {
		return names
	}
	for _, v := range e.Values {
		names[v.Value] = strings.ToLower(strings.TrimPrefix(v.Name, prefix))
	}
	return names
}

var (
	reasonNames = sync.OnceValue(func() map[uint64]string { return enumNames(loadLb, "reason", "REASON_") })
	decapNames  = sync.OnceValue(func() map[uint64]string { return enumNames(loadDecap, "decap_reason", "DECAP_") })
)

// NumReasons is the number of reason_stats entries.
const NumReasons = int(lbReasonREASON_MAX)

// NumDecapReasons is the number of decap_stats entries.
const NumDecapReasons = int(decapDecapReasonDECAP_REASON_MAX)

// String returns the reason's name in metric form, e.g. "pass_not_vip".
func (r lbReason) String() string {
	if n, ok := reasonNames()[uint64(r)]; ok {
		return n
	}
	return fmt.Sprintf("reason_%d", uint32(r))
}

// String returns the reason's name in metric form, e.g. "pass_not_local".
func (r decapDecapReason) String() string {
	if n, ok := decapNames()[uint64(r)]; ok {
		return n
	}
	return fmt.Sprintf("decap_reason_%d", uint32(r))
}
