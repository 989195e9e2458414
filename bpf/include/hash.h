/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * hash.h: the flow hash that indexes Maglev tables.
 *
 * Go mirrors this bit for bit (bpf.FlowHash); both must pick the same
 * Maglev entry, so that several load balancers and the userspace forwarder
 * agree (DESIGN.md "Scale-out"). A naive xor/shift hash sent 94% of flows to
 * one backend in the lab, so this is a real mixer.
 *
 * Definition: MurmurHash3_x86_32's block step and finaliser over a sequence
 * W of 32-bit words, seed FLOW_HASH_SEED:
 *
 *   h = FLOW_HASH_SEED
 *   for each w in W:
 *       k = w * 0xcc9e2d51; k = rotl32(k, 15); k *= 0x1b873593
 *       h ^= k; h = rotl32(h, 13); h = h * 5 + 0xe6546b64
 *   h ^= 4 * len(W)
 *   h ^= h >> 16; h *= 0x85ebca6b; h ^= h >> 13; h *= 0xc2b2ae35; h ^= h >> 16
 *
 * W is built from numbers, not memory, so it does not depend on byte order:
 *   - each address contributes its octets as big-endian 32-bit words
 *     (IPv4: 1 word, IPv6: 4 words);
 *   - HASH_SRC_IP:  W = src words
 *   - HASH_4TUPLE:  W = src words, dst words, (src_port << 16) | dst_port
 *     (ports as numbers).
 *
 * The Maglev entry is table[h % M].
 */
#ifndef SPOOKY_HASH_H
#define SPOOKY_HASH_H

#include <linux/types.h>
#include <bpf/bpf_endian.h>
#include "spooky.h"

static __always_inline __u32 rotl32(__u32 x, int r)
{
	return (x << r) | (x >> (32 - r));
}

static __always_inline __u32 mm3_block(__u32 h, __u32 k)
{
	k *= 0xcc9e2d51U;
	k = rotl32(k, 15);
	k *= 0x1b873593U;
	h ^= k;
	h = rotl32(h, 13);
	return h * 5 + 0xe6546b64U;
}

static __always_inline __u32 mm3_final(__u32 h, __u32 nwords)
{
	h ^= nwords * 4;
	h ^= h >> 16;
	h *= 0x85ebca6bU;
	h ^= h >> 13;
	h *= 0xc2b2ae35U;
	h ^= h >> 16;
	return h;
}

/* flow_hash hashes addresses as stored in packets (network order words);
 * ports are in network order too. */
static __always_inline __u32 flow_hash(__u8 kind, __u8 family,
				       const __be32 *src, const __be32 *dst,
				       __be16 sport, __be16 dport)
{
	__u32 h = FLOW_HASH_SEED;
	__u32 n = 0;

	if (family == FAMILY_IPV4) {
		h = mm3_block(h, bpf_ntohl(src[0]));
		n = 1;
		if (kind != HASH_SRC_IP) {
			h = mm3_block(h, bpf_ntohl(dst[0]));
			n = 2;
		}
	} else {
		h = mm3_block(h, bpf_ntohl(src[0]));
		h = mm3_block(h, bpf_ntohl(src[1]));
		h = mm3_block(h, bpf_ntohl(src[2]));
		h = mm3_block(h, bpf_ntohl(src[3]));
		n = 4;
		if (kind != HASH_SRC_IP) {
			h = mm3_block(h, bpf_ntohl(dst[0]));
			h = mm3_block(h, bpf_ntohl(dst[1]));
			h = mm3_block(h, bpf_ntohl(dst[2]));
			h = mm3_block(h, bpf_ntohl(dst[3]));
			n = 8;
		}
	}
	if (kind != HASH_SRC_IP) {
		h = mm3_block(h, ((__u32)bpf_ntohs(sport) << 16) | bpf_ntohs(dport));
		n++;
	}
	return mm3_final(h, n);
}

#endif /* SPOOKY_HASH_H */
