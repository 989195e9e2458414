/* The maps lb.c owns that other programs read too: probe.c is loaded with
 * the XDP program's own backends and config in their place
 * (MapReplacements), which needs the definitions to match exactly, so they
 * are written once, here. */
#ifndef SPOOKY_LB_MAPS_H
#define SPOOKY_LB_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "spooky.h"

/* backends: backend index -> address, MACs, health flags. Shared by all
 * VIPs; Go allocates indexes. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct backend_info);
} backends SEC(".maps");

/* config: [0] -> this load balancer's MAC and encapsulation sources. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lb_config);
} config SEC(".maps");

#endif
