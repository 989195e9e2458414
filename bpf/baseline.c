// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//go:build ignore

/*
 * baseline.c: the speed limit for benchmarks.
 *
 * xdp_baseline parses Ethernet (one VLAN tag), IPv4/IPv6 and UDP, swaps the
 * MACs and sends the frame back with XDP_TX: what any XDP balancer must do
 * at least, with no map lookups. lb.c's cost is reported as a ratio to it.
 *
 * Only the benchmarks load it: bpf2go writes it to baseline_bpfel_test.{go,o}.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "include/parse.h"

char __license[] SEC("license") = "Dual BSD/GPL";

SEC("xdp")
int xdp_baseline(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct udphdr *udp;
	__u32 l2_len;
	__be16 proto;
	__u8 vlan;

	if (parse_l2(data, data_end, &l2_len, &proto, &vlan))
		return XDP_DROP;
	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *iph = data + l2_len;

		if ((void *)(iph + 1) > data_end)
			return XDP_DROP;
		if (iph->protocol != IPPROTO_UDP || iph->ihl < 5)
			return XDP_PASS;
		udp = (void *)iph + iph->ihl * 4;
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6h = data + l2_len;

		if ((void *)(ip6h + 1) > data_end)
			return XDP_DROP;
		if (ip6h->nexthdr != IPPROTO_UDP)
			return XDP_PASS;
		udp = (void *)(ip6h + 1);
	} else {
		return XDP_PASS;
	}
	if ((void *)(udp + 1) > data_end)
		return XDP_DROP;

	struct ethhdr *eth = data;
	__u8 tmp[ETH_ALEN];

	__builtin_memcpy(tmp, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, tmp, ETH_ALEN);
	return XDP_TX;
}
