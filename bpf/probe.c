// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//go:build ignore

/*
 * probe.c: steers health probes through the VIP to one chosen backend.
 *
 * DSR backends hold the VIP on lo and often serve nothing else, so a
 * health check must reach a backend the way clients do: as a packet to
 * the VIP that lb.c's forwarding delivered. A probe socket on the load
 * balancer host sets SO_MARK to a mark naming the backend (probe.h);
 * policy routing (forwarder/probe_route.go) sends marked packets for VIPs
 * out of the edge interface; this program, at tc egress (tcx) on that
 * interface, rewrites each one as lb.c rewrites a client's datagram for
 * that backend:
 *
 *   l2dsr: destination MAC = the backend's MAC;
 *   ipip:  outer IPv4 or IPv6 header toward the backend (family of the
 *          backend, protocol 4 or 41 for the inner family, RFC 2473),
 *          destination MAC = the next hop's.
 *
 * Backends are read from lb.c's own backends map (Go passes the loaded
 * map in: MapReplacements), so a probe goes wherever the XDP program
 * would send that backend's packets. The health flags are ignored: an
 * unhealthy backend is probed too, which is how it comes back.
 *
 * Katran's healthchecking_kern.c does the same for its marked sockets.
 *
 * Checksums: the program leaves the skb's checksum state as it found it
 * (bpf_skb_adjust_room keeps csum_start on the inner L4 header and marks
 * the skb encapsulated). A CHECKSUM_PARTIAL skb is finished after tc by
 * the NIC or, on a device without offload, by validate_xmit_skb. BPF
 * cannot read ip_summed, so it could not tell when to finish one itself.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "include/spooky.h"
#include "include/parse.h"
#include "include/probe.h"
#include "include/lb_maps.h"

char __license[] SEC("license") = "Dual BSD/GPL";

/* backends and config (include/lb_maps.h) are lb.c's maps; Go loads this
 * program with the XDP program's maps in their place. */

/* probe_stats: enum probe_reason -> marked packets. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PROBE_REASON_MAX);
	__type(key, enum probe_reason);
	__type(value, __u64);
} probe_stats SEC(".maps");

/*
 * Verdicts under tcx (include/uapi/linux/bpf.h, enum tcx_action_base):
 * TC_ACT_UNSPEC (-1) is TCX_NEXT, the next program on the interface
 * decides (or the packet goes on if this is the last one); TC_ACT_OK (0)
 * is TCX_PASS, sent as it is now, later programs skipped; TC_ACT_SHOT is
 * TCX_DROP.
 */

static __always_inline int probe_verdict(__u32 reason, int verdict)
{
	__u64 *c = bpf_map_lookup_elem(&probe_stats, &reason);

	if (c)
		*c += 1;
	return verdict;
}

static __always_inline int mac_set(const __u8 *mac)
{
	return *(const __u32 *)mac | *(const __u16 *)(mac + 4);
}

/* encap pushes the outer header toward be and addresses the frame to
 * be's next hop. Everything that can fail without touching the packet is
 * checked first, so a dropped probe was never half rewritten. */
static __always_inline int encap(struct __sk_buff *skb,
				 const struct backend_info *be)
{
	__u32 zero = 0;
	const struct lb_config *cfg = bpf_map_lookup_elem(&config, &zero);
	__be16 outer_eth;
	__u8 tos, df, inner;

	if (!cfg)
		return TC_ACT_SHOT; /* an array of one always has [0] */
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct iphdr iph;

		if (bpf_skb_load_bytes(skb, ETH_HLEN, &iph, sizeof(iph)))
			return probe_verdict(PROBE_DROP_TRUNCATED, TC_ACT_SHOT);
		tos = iph.tos;
		df = !!(iph.frag_off & bpf_htons(IP_DF));
		inner = IPPROTO_IPIP;
	} else {
		__be32 w;

		if (bpf_skb_load_bytes(skb, ETH_HLEN, &w, sizeof(w)))
			return probe_verdict(PROBE_DROP_TRUNCATED, TC_ACT_SHOT);
		tos = bpf_ntohl(w) >> 20; /* traffic class */
		df = 1;                   /* IPv6 is not fragmented on the way */
		inner = IPPROTO_IPV6;
	}

	if (be->family == FAMILY_IPV4) {
		struct iphdr h = {
			.version = 4,
			.ihl = 5,
			.tos = tos,
			.frag_off = df ? bpf_htons(IP_DF) : 0,
			.ttl = 64,
			.protocol = inner,
		};

		if (!(cfg->addr4[0] | cfg->addr4[1] | cfg->addr4[2] | cfg->addr4[3]))
			return probe_verdict(PROBE_DROP_NO_ENCAP_SOURCE, TC_ACT_SHOT);
		/* ENCAP_L3_IPV4 marks the skb encapsulated (inner headers
		 * set, GSO type IPXIP4) and makes skb->protocol IPv4. */
		if (bpf_skb_adjust_room(skb, sizeof(h), BPF_ADJ_ROOM_MAC,
					BPF_F_ADJ_ROOM_ENCAP_L3_IPV4))
			return probe_verdict(PROBE_DROP_ENCAP_FAILED, TC_ACT_SHOT);
		h.tot_len = bpf_htons(skb->len - ETH_HLEN);
		__builtin_memcpy(&h.saddr, cfg->addr4, 4);
		__builtin_memcpy(&h.daddr, be->addr, 4);
		h.check = ipv4_csum(&h);
		if (bpf_skb_store_bytes(skb, ETH_HLEN, &h, sizeof(h), 0))
			return probe_verdict(PROBE_DROP_ENCAP_FAILED, TC_ACT_SHOT);
		outer_eth = bpf_htons(ETH_P_IP);
	} else {
		struct ipv6hdr h = {
			.nexthdr = inner,
			.hop_limit = 64,
		};

		if (!(*(const __u64 *)&cfg->addr6[0] | *(const __u64 *)&cfg->addr6[8]))
			return probe_verdict(PROBE_DROP_NO_ENCAP_SOURCE, TC_ACT_SHOT);
		if (bpf_skb_adjust_room(skb, sizeof(h), BPF_ADJ_ROOM_MAC,
					BPF_F_ADJ_ROOM_ENCAP_L3_IPV6))
			return probe_verdict(PROBE_DROP_ENCAP_FAILED, TC_ACT_SHOT);
		/* version 6, traffic class copied, flow label 0, as lb.c */
		*(__be32 *)&h = bpf_htonl(0x60000000U | ((__u32)tos << 20));
		h.payload_len = bpf_htons(skb->len - ETH_HLEN - sizeof(h));
		__builtin_memcpy(&h.saddr, cfg->addr6, 16);
		__builtin_memcpy(&h.daddr, be->addr, 16);
		if (bpf_skb_store_bytes(skb, ETH_HLEN, &h, sizeof(h), 0))
			return probe_verdict(PROBE_DROP_ENCAP_FAILED, TC_ACT_SHOT);
		outer_eth = bpf_htons(ETH_P_IPV6);
	}
	if (bpf_skb_store_bytes(skb, 0, be->nexthop_mac, ETH_ALEN, 0) ||
	    bpf_skb_store_bytes(skb, __builtin_offsetof(struct ethhdr, h_proto), &outer_eth,
				sizeof(outer_eth), 0))
		return probe_verdict(PROBE_DROP_ENCAP_FAILED, TC_ACT_SHOT);
	return probe_verdict(PROBE_IPIP, TC_ACT_OK);
}

/* steer sends a marked packet to the backend its mark names. */
static __always_inline int steer(struct __sk_buff *skb, __u32 mark)
{
	__u32 index = mark & PROBE_MARK_INDEX;
	const struct backend_info *be;

	if (index >= MAX_BACKENDS)
		return probe_verdict(PROBE_DROP_BAD_INDEX, TC_ACT_SHOT);
	be = bpf_map_lookup_elem(&backends, &index);
	if (!be || be->family == FAMILY_NONE)
		return probe_verdict(PROBE_DROP_EMPTY_SLOT, TC_ACT_SHOT);
	/* At tc egress a VLAN tag is in skb metadata, not in the frame, so
	 * an IP packet starts right after the Ethernet header. */
	if (skb->protocol != bpf_htons(ETH_P_IP) &&
	    skb->protocol != bpf_htons(ETH_P_IPV6))
		return probe_verdict(PROBE_PASS_NOT_IP, TC_ACT_UNSPEC);

	if (mark & PROBE_MARK_IPIP) {
		if (!mac_set(be->nexthop_mac))
			return probe_verdict(PROBE_DROP_NO_MAC, TC_ACT_SHOT);
		return encap(skb, be);
	}
	/* l2dsr: the backend holds the VIP on lo; only the destination MAC
	 * changes (the source is already this interface's). */
	if (!mac_set(be->mac))
		return probe_verdict(PROBE_DROP_NO_MAC, TC_ACT_SHOT);
	if (bpf_skb_store_bytes(skb, 0, be->mac, ETH_ALEN, 0))
		return probe_verdict(PROBE_DROP_TRUNCATED, TC_ACT_SHOT);
	return probe_verdict(PROBE_L2DSR, TC_ACT_OK);
}

SEC("tcx/egress")
int tc_probe(struct __sk_buff *skb)
{
	__u32 mark = skb->mark;

	/* Everything but a probe leaves as it came, after one load and one
	 * compare, and the next program on the interface still sees it. */
	if ((mark & PROBE_MARK_MASK) != PROBE_MARK_BASE)
		return TC_ACT_UNSPEC;
	return steer(skb, mark);
}
