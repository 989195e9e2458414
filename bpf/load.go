// Package bpf holds spooky's XDP programs (lb.c, decap.c, pass.c), the
// bpf2go output generated from them, and the Go side of their maps: types,
// key constructors, the flow hash mirror and loaders.
//
// The map contract is documented in include/spooky.h; the Go types here are
// generated from it and re-exported under readable names.
package bpf

import (
	"errors"
	"fmt"
	"slices"

	"github.com/cilium/ebpf"
)

// LoadOptions tunes how a program's maps are created.
type LoadOptions struct {
	// PinPath is a directory on a bpffs (e.g. /sys/fs/bpf/spooky/eth0)
	// where every map is pinned by name. Maps already pinned there are
	// reused, which keeps flows and counters across restarts; a pinned map
	// whose layout differs fails the load (ebpf.ErrMapIncompatible).
	// If empty, nothing is pinned.
	PinPath string
	// CIDCacheSize is the number of entries of lb.c's cid_cache (LRU).
	// A pinned cid_cache of another size cannot be adopted (the load
	// fails with ebpf.ErrMapIncompatible). If zero, DefaultCIDCacheSize.
	CIDCacheSize uint32
	// LogLevel is passed to the verifier; a failed load prints the full
	// log regardless. If zero, no log is kept for successful loads.
	LogLevel ebpf.LogLevel
}

// LBObjects are the load balancer's program and maps (lb.c).
type LBObjects = lbObjects

// DecapObjects are the decapsulator's program and maps (decap.c).
type DecapObjects = decapObjects

// PassObjects are the program that passes every packet (pass.c).
type PassObjects = passObjects

// LBSpec returns the load balancer's collection spec, for callers that
// need to adjust it before loading, with flow_cache sized for the
// possible CPUs (a table of FlowCacheSize slots each).
func LBSpec() (*ebpf.CollectionSpec, error) {
	spec, err := loadLb()
	if err != nil {
		return nil, fmt.Errorf("parse lb object: %w", err)
	}
	// flow_cache holds a table per CPU (lb.c): the object sizes one.
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, fmt.Errorf("count cpus: %w", err)
	}
	spec.Maps[lbMapFlowCache].MaxEntries = uint32(cpus) * FlowCacheSize
	return spec, nil
}

// LoadLB loads lb.c's xdp_lb program and its maps into the kernel. If opts
// is nil, defaults apply. The caller closes the objects.
func LoadLB(opts *LoadOptions) (*LBObjects, error) {
	if opts == nil {
		opts = &LoadOptions{}
	}
	spec, err := LBSpec()
	if err != nil {
		return nil, err
	}
	if opts.CIDCacheSize != 0 {
		spec.Maps[lbMapCidCache].MaxEntries = opts.CIDCacheSize
	}
	var objs lbObjects
	if err := loadInto(spec, &objs, "lb", opts); err != nil {
		return nil, err
	}
	return &objs, nil
}

// LoadDecap loads decap.c's xdp_decap program and its maps. If opts is
// nil, defaults apply.
func LoadDecap(opts *LoadOptions) (*DecapObjects, error) {
	if opts == nil {
		opts = &LoadOptions{}
	}
	spec, err := loadDecap()
	if err != nil {
		return nil, fmt.Errorf("parse decap object: %w", err)
	}
	var objs decapObjects
	if err := loadInto(spec, &objs, "decap", opts); err != nil {
		return nil, err
	}
	return &objs, nil
}

// LoadPass loads pass.c's xdp_pass program.
func LoadPass() (*PassObjects, error) {
	spec, err := loadPass()
	if err != nil {
		return nil, fmt.Errorf("parse pass object: %w", err)
	}
	var objs passObjects
	if err := loadInto(spec, &objs, "pass", &LoadOptions{}); err != nil {
		return nil, err
	}
	return &objs, nil
}

// LBMapNames names the maps LoadLB pins: one file each in
// LoadOptions.PinPath, named after the map.
func LBMapNames() ([]string, error) {
	spec, err := loadLb()
	if err != nil {
		return nil, fmt.Errorf("parse lb object: %w", err)
	}
	return mapNames(spec), nil
}

// DecapMapNames names the maps LoadDecap pins, as LBMapNames does for
// LoadLB.
func DecapMapNames() ([]string, error) {
	spec, err := loadDecap()
	if err != nil {
		return nil, fmt.Errorf("parse decap object: %w", err)
	}
	return mapNames(spec), nil
}

// mapNames lists spec's maps, sorted; loadInto pins every one of them.
func mapNames(spec *ebpf.CollectionSpec) []string {
	names := make([]string, 0, len(spec.Maps))
	for n := range spec.Maps {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

func loadInto(spec *ebpf.CollectionSpec, objs any, name string, opts *LoadOptions) error {
	co := &ebpf.CollectionOptions{
		Programs: ebpf.ProgramOptions{LogLevel: opts.LogLevel},
	}
	if opts.PinPath != "" {
		for _, m := range spec.Maps {
			m.Pinning = ebpf.PinByName
		}
		co.Maps.PinPath = opts.PinPath
	}
	if err := spec.LoadAndAssign(objs, co); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			// The default formatting keeps only the last lines of the
			// log; the cause of a rejection is usually further up.
			return fmt.Errorf("load %s: %w\n%+v", name, err, ve)
		}
		return fmt.Errorf("load %s: %w", name, err)
	}
	return nil
}
