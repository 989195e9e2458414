// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//go:build ignore

/*
 * decap.c: strips the outer header that lb.c's ipip mode adds, for backends
 * whose kernel has no tunnel devices (lab-facts: no ipip/sit/ip6tnl).
 *
 * An IPv4 packet with protocol 4 (IPIP) or 41 (IPv6-in-IPv4), or an IPv6
 * packet with next header 41 or 4 (RFC 2473), addressed to one of this
 * host's addresses in decap_addrs, loses its outer header; the inner packet
 * goes up the stack with XDP_PASS, under the same Ethernet header (and VLAN
 * tag) with the ethertype of the inner family. Everything else is passed
 * untouched.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "include/spooky.h"
#include "include/parse.h"

char __license[] SEC("license") = "Dual BSD/GPL";

/* decap_addrs: local outer destination addresses -> 1. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, struct decap_key);
	__type(value, __u8);
} decap_addrs SEC(".maps");

/* decap_stats: enum decap_reason -> packets. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, DECAP_REASON_MAX);
	__type(key, enum decap_reason);
	__type(value, __u64);
} decap_stats SEC(".maps");

static __always_inline int decap_verdict(__u32 reason)
{
	__u64 *c = bpf_map_lookup_elem(&decap_stats, &reason);

	if (c)
		*c += 1;
	return XDP_PASS;
}

SEC("xdp")
int xdp_decap(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct decap_key k = {};
	__u32 l2_len, outer_len;
	__be16 proto;
	__u8 vlan, inner;

	if (parse_l2(data, data_end, &l2_len, &proto, &vlan))
		return decap_verdict(DECAP_PASS_TRUNCATED);

	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *iph = data + l2_len;

		if ((void *)(iph + 1) > data_end)
			return decap_verdict(DECAP_PASS_TRUNCATED);
		if (iph->version != 4 || iph->ihl < 5)
			return decap_verdict(DECAP_PASS_NOT_IP);
		if (iph->protocol != IPPROTO_IPIP && iph->protocol != IPPROTO_IPV6)
			return decap_verdict(DECAP_PASS_NOT_TUNNEL);
		/* A fragmented outer packet must be reassembled first. */
		if (iph->frag_off & bpf_htons(IP_MF | IP_OFFSET))
			return decap_verdict(DECAP_PASS_FRAGMENT);
		inner = iph->protocol;
		outer_len = iph->ihl * 4;
		k.family = FAMILY_IPV4;
		__builtin_memcpy(k.addr, &iph->daddr, 4);
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6h = data + l2_len;

		if ((void *)(ip6h + 1) > data_end)
			return decap_verdict(DECAP_PASS_TRUNCATED);
		if (ip6h->nexthdr != IPPROTO_IPIP && ip6h->nexthdr != IPPROTO_IPV6)
			return decap_verdict(DECAP_PASS_NOT_TUNNEL);
		inner = ip6h->nexthdr;
		outer_len = sizeof(*ip6h);
		k.family = FAMILY_IPV6;
		__builtin_memcpy(k.addr, &ip6h->daddr, 16);
	} else {
		return decap_verdict(DECAP_PASS_NOT_IP);
	}

	if (!bpf_map_lookup_elem(&decap_addrs, &k))
		return decap_verdict(DECAP_PASS_NOT_LOCAL);

	/* The inner header must be whole, or the stack gets garbage. */
	__u32 inner_min = inner == IPPROTO_IPIP ? sizeof(struct iphdr)
						: sizeof(struct ipv6hdr);
	if (l2_len > 18 || outer_len > 60)
		return decap_verdict(DECAP_PASS_TRUNCATED);
	if (data + l2_len + outer_len + inner_min > data_end)
		return decap_verdict(DECAP_PASS_TRUNCATED);

	/* Move the L2 header forward over the outer IP header, then drop the
	 * front. The copy goes through the stack: the regions overlap. */
	struct ethhdr eth;
	struct vlan_hdr vh;
	__be16 inner_proto = inner == IPPROTO_IPIP ? bpf_htons(ETH_P_IP)
						   : bpf_htons(ETH_P_IPV6);

	if (data + sizeof(eth) + sizeof(vh) > data_end)
		return decap_verdict(DECAP_PASS_TRUNCATED);
	__builtin_memcpy(&eth, data, sizeof(eth));
	__builtin_memcpy(&vh, data + sizeof(eth), sizeof(vh));
	if (vlan)
		vh.encap_proto = inner_proto;
	else
		eth.h_proto = inner_proto;

	if (bpf_xdp_adjust_head(ctx, (int)outer_len))
		return decap_verdict(DECAP_PASS_ADJUST_FAILED);
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	if (data + sizeof(eth) + sizeof(vh) > data_end)
		return decap_verdict(DECAP_PASS_TRUNCATED);
	__builtin_memcpy(data, &eth, sizeof(eth));
	if (vlan)
		__builtin_memcpy(data + sizeof(eth), &vh, sizeof(vh));
	return decap_verdict(DECAP_OK);
}
