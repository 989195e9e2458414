/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * parse.h: header parsing shared by the XDP programs. Every access is
 * checked against data_end before it is made.
 */
#ifndef SPOOKY_PARSE_H
#define SPOOKY_PARSE_H

#include <linux/types.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <linux/in.h>
#include <bpf/bpf_endian.h>

/* IEEE 802.1Q tag; not in the UAPI headers. */
struct vlan_hdr {
	__be16 tci;
	__be16 encap_proto;
};

#define IP_MF 0x2000
#define IP_DF 0x4000
#define IP_OFFSET 0x1fff

/* parse_l2 reads the Ethernet header and at most one 802.1Q/802.1ad tag
 * (a second tag is left to the kernel: its ethertype is not IP). It sets
 * the length of the L2 header and the ethertype after it. Returns 0, or -1
 * when a header is cut short. */
static __always_inline int parse_l2(void *data, void *data_end, __u32 *l2_len,
				    __be16 *proto, __u8 *vlan)
{
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > data_end)
		return -1;
	*proto = eth->h_proto;
	*l2_len = sizeof(*eth);
	*vlan = 0;
	if (eth->h_proto == bpf_htons(ETH_P_8021Q) ||
	    eth->h_proto == bpf_htons(ETH_P_8021AD)) {
		struct vlan_hdr *vh = (void *)(eth + 1);

		if ((void *)(vh + 1) > data_end)
			return -1;
		*proto = vh->encap_proto;
		*l2_len += sizeof(*vh);
		*vlan = 1;
	}
	return 0;
}

/* ipv4_csum returns the header checksum of an IPv4 header without options
 * whose check field is 0 (RFC 791 §3.1, RFC 1071). */
static __always_inline __u16 ipv4_csum(const struct iphdr *iph)
{
	const __u16 *w = (const __u16 *)iph;
	__u32 sum = 0;

#pragma unroll
	for (int i = 0; i < (int)(sizeof(*iph) / 2); i++)
		sum += w[i];
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

#endif /* SPOOKY_PARSE_H */
