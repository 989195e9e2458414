// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//go:build ignore

/*
 * trafficgen.c: an in-kernel packet generator and a packet counter for
 * the forwarding-rate benchmark (bench_live_test.go).
 *
 * xdp_gen runs under BPF_PROG_RUN with BPF_F_TEST_XDP_LIVE_FRAMES: the
 * kernel hands it copies of one crafted frame (Ethernet, IPv4 without
 * options, UDP, QUIC), it stamps a new flow into each and returns XDP_TX,
 * which sends it out of the interface named in the run's context. Debian's
 * xdp-trafficgen does not load on the kernels spooky is tested on, and a
 * userspace sender is slower than the forwarding it would measure.
 *
 * xdp_count counts and drops what reaches a backend.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "include/parse.h"

char __license[] SEC("license") = "Dual BSD/GPL";

enum gen_flags : __u32 {
	/* Each frame gets a new UDP source port and, every 65536 frames, a
	 * new IPv4 source address in 198.19.0.0/16: a new flow per frame. */
	GEN_F_NEW_FLOW = 1 << 0,
	/* The server ID (octets 1 and 2 of a short header's DCID) cycles
	 * through 1..sids, spreading frames over the backends. */
	GEN_F_ROTATE_SID = 1 << 1,
};

struct gen_config {
	enum gen_flags flags;
	__u32 sids; /* GEN_F_ROTATE_SID: server IDs 1..sids */
};

/* gen_settings: [0] -> what xdp_gen stamps. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct gen_config);
} gen_settings SEC(".maps");

/* gen_seq: [0] -> frames stamped on this CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} gen_seq SEC(".maps");

/* counted: [0] -> frames xdp_count saw (and dropped). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} counted SEC(".maps");

SEC("xdp")
int xdp_gen(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct iphdr *iph = data + sizeof(struct ethhdr);
	struct udphdr *udp = (void *)(iph + 1);
	__u8 *q = (void *)(udp + 1);
	__u32 zero = 0;

	if ((void *)(q + 4) > data_end)
		return XDP_ABORTED;
	struct gen_config *cfg = bpf_map_lookup_elem(&gen_settings, &zero);
	__u64 *seq = bpf_map_lookup_elem(&gen_seq, &zero);
	if (!cfg || !seq)
		return XDP_ABORTED;
	__u64 n = (*seq)++;

	if (cfg->flags & GEN_F_NEW_FLOW) {
		udp->source = bpf_htons(1024 + (__u16)n % 64512);
		iph->saddr = bpf_htonl(0xc6130000U | (__u32)(n / 64512 & 0xffff));
		iph->check = 0;
		iph->check = ipv4_csum(iph);
	}
	if ((cfg->flags & GEN_F_ROTATE_SID) && cfg->sids) {
		__u32 sid = 1 + (__u32)(n % cfg->sids);

		q[2] = sid >> 8;
		q[3] = sid;
	}
	return XDP_TX;
}

SEC("xdp")
int xdp_count(struct xdp_md *ctx)
{
	__u32 zero = 0;
	__u64 *c = bpf_map_lookup_elem(&counted, &zero);

	if (c)
		*c += 1;
	return XDP_DROP;
}
