// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//go:build ignore

/*
 * stamp.c: benchmark helpers, never attached in production.
 *
 * xdp_stamp makes every repetition of a BPF_PROG_TEST_RUN a new flow: it
 * writes a fresh client address and port (from a per-CPU sequence) into an
 * Ethernet + IPv4 (no options) + UDP frame, then tail-calls the program in
 * stamp_next[0] (xdp_lb or xdp_baseline). With Repeat = N that is N new
 * flows in one syscall, so the cost of a flow-table miss, a Maglev lookup
 * and the flow_cache insert is measured without the per-run overhead of
 * one syscall per packet; the stamp and the tail call cost the same on
 * both sides of the ratio.
 *
 * xdp_maglev_outer and xdp_maglev_inner isolate the Maglev table lookup:
 * both look up maglev[1] (the outer ARRAY_OF_MAPS lookup, inlined by the
 * verifier); only the second also looks up an entry of the inner table,
 * which is a real helper call (the inner map is only known at run time).
 * Load them with lb's maglev map as a replacement.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "include/spooky.h"
#include "include/parse.h"

char __license[] SEC("license") = "Dual BSD/GPL";

/* stamp_next: [0] -> the program xdp_stamp hands the frame to. */
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} stamp_next SEC(".maps");

/* stamp_seq: [0] -> flows stamped so far on this CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} stamp_seq SEC(".maps");

/* Same definition as lb.c's maglev, so lb's map can replace it. */
struct maglev_table {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAGLEV_MAX_SIZE);
	__uint(map_flags, BPF_F_INNER_MAP);
	__type(key, __u32);
	__type(value, __u32);
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, MAX_VIPS * 2);
	__type(key, __u32);
	__array(values, struct maglev_table);
} maglev SEC(".maps");

SEC("xdp")
int xdp_stamp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *iph = (void *)(eth + 1);
	struct udphdr *udp = (void *)(iph + 1);
	__u32 zero = 0;
	__u64 *seq = bpf_map_lookup_elem(&stamp_seq, &zero);

	if (!seq || (void *)(udp + 1) > data_end ||
	    eth->h_proto != bpf_htons(ETH_P_IP) || iph->ihl != 5)
		return XDP_ABORTED;
	__u64 n = (*seq)++;

	/* 198.19.0.0/16 (RFC 2544 benchmark space) and all 65536 ports:
	 * 2^32 distinct clients before the sequence repeats. */
	iph->saddr = bpf_htonl(0xc6130000U | (__u32)((n >> 16) & 0xffff));
	udp->source = bpf_htons((__u16)n);
	bpf_tail_call(ctx, &stamp_next, 0);
	return XDP_ABORTED; /* stamp_next[0] empty */
}

/* maglev[1]: where the benchmark puts a full-size table (VIP 0, slot 1). */
static __always_inline void *maglev_table(void)
{
	__u32 slot = 1;

	return bpf_map_lookup_elem(&maglev, &slot);
}

SEC("xdp")
int xdp_maglev_outer(struct xdp_md *ctx)
{
	return maglev_table() ? XDP_TX : XDP_ABORTED;
}

SEC("xdp")
int xdp_maglev_inner(struct xdp_md *ctx)
{
	void *table = maglev_table();
	/* Any entry will do; the frame length keeps it from being constant. */
	__u32 entry = (__u32)(ctx->data_end - ctx->data) & 0xff;

	if (!table)
		return XDP_ABORTED;
	return bpf_map_lookup_elem(table, &entry) ? XDP_TX : XDP_ABORTED;
}
