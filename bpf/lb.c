// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//go:build ignore

/*
 * lb.c: spooky's XDP load balancer for QUIC.
 *
 * For a UDP datagram to a VIP in mode l4 the routing order is that of
 * draft-ietf-quic-load-balancers-21 §4.2 and DESIGN.md "Routing decision":
 *
 *   1. routable CID: plaintext server ID -> server_ids, or encrypted
 *      config -> cid_cache (Go decrypts and fills it);
 *   2. flow table (4-tuple), for Initial/0-RTT packets whose DCID the
 *      client chose at random: this CPU's flow_cache;
 *   3. the VIP's Maglev table by flow_hash (hash.h), then record the flow
 *      in flow_cache.
 *
 * vips and server_ids are read through per-CPU caches (see "Caches").
 *
 * Datagrams that are not QUIC go to 2/3, or are dropped if the VIP is
 * strict. Everything that is not for an l4 VIP is passed untouched.
 * Every verdict is counted in reason_stats (enum reason in spooky.h).
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "include/spooky.h"
#include "include/parse.h"
#include "include/hash.h"
#include "include/lb_maps.h"

char __license[] SEC("license") = "Dual BSD/GPL";

/* vips: UDP service address -> VIP settings. Written by Go; one update
 * switches a VIP's Maglev slot, size and CID configs at once. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_VIPS);
	__type(key, struct vip_key);
	__type(value, struct vip_info);
} vips SEC(".maps");

/* A Maglev table: entry -> backend index. BPF_F_INNER_MAP lets each table
 * have its own (prime) size M, so memory follows the configured VIPs:
 * a flat array of MAX_VIPS*2*65537 entries would pin 134 MB. */
struct maglev_table {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAGLEV_MAX_SIZE);
	__uint(map_flags, BPF_F_INNER_MAP);
	__type(key, __u32);
	__type(value, __u32);
};

/* maglev: VIP id * 2 + slot -> Maglev table. Go writes the new table into
 * the inactive slot, then flips vip_info.maglev_slot (and maglev_size) with
 * one vips update, so a packet never sees half a table. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, MAX_VIPS * 2);
	__type(key, __u32);
	__array(values, struct maglev_table);
} maglev SEC(".maps");

/* server_ids: (VIP id, plaintext server ID) -> backend index. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_SERVER_IDS);
	__type(key, struct server_id_key);
	__type(value, __u32);
} server_ids SEC(".maps");

/* cid_cache: (VIP id, whole DCID) -> backend index, for encrypted configs.
 * Filled by Go, which can decrypt (XDP cannot run AES). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MAX_CID_CACHE);
	__type(key, struct cid_key);
	__type(value, __u32);
} cid_cache SEC(".maps");

/* xsks: RX queue -> AF_XDP socket of the slow path (Go). XDP redirects a
 * frame to the socket of the queue it came in on: the kernel refuses a
 * socket bound to another queue. */
struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, MAX_QUEUES);
	__type(key, __u32);
	__type(value, __u32);
} xsks SEC(".maps");

/* slow_path_limits: VIP id -> how fast one CPU may redirect the VIP's
 * cid_cache misses to Go. Written by Go. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_VIPS);
	__type(key, __u32);
	__type(value, struct slow_path_limit);
} slow_path_limits SEC(".maps");

/* slow_path_tat: VIP id -> this CPU's theoretical arrival time (GCRA) of
 * the next miss it may redirect, in coarse-clock ns. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_VIPS);
	__type(key, __u32);
	__type(value, __u64);
} slow_path_tat SEC(".maps");

/* slow_path_stats: VIP id -> what Go did with what it was handed. Only Go
 * reads and writes it; it lives here to be pinned with the rest. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_VIPS);
	__type(key, __u32);
	__type(value, struct slow_path_counters);
} slow_path_stats SEC(".maps");

/* slow_path_backend_stats: backend index -> datagrams Go forwarded to it
 * from the slow path. Only Go reads and writes it. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct backend_counters);
} slow_path_backend_stats SEC(".maps");

/* slow_path_reasons: enum reason -> datagrams Go decided with that
 * verdict or event (the slow path's Router counts as reason_stats does).
 * Only Go reads and writes it. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, REASON_MAX);
	__type(key, __u32);
	__type(value, __u64);
} slow_path_reasons SEC(".maps");

/*
 * Caches. On the machines spooky is measured on, every helper call costs
 * about 18 ns and a hash map lookup with a 20-octet key about 45 ns, while
 * array lookups are inlined by the JIT and cost 1-2 ns. So the per-packet
 * state lives in per-CPU arrays indexed by a multiplicative hash of the key
 * (direct mapped: a colliding key replaces the entry); each entry holds its
 * full key, which is compared before use.
 *
 * vip_cache and sid_cache copy entries of vips and server_ids. They are
 * valid only while their gen equals cache_gen[0], which Go bumps
 * (bpf.InvalidateCaches) after writing vips or server_ids, so a change is
 * seen by every CPU on its next packet. While cache_gen[0] is 0 (Go never
 * bumped it) the caches are not used and every packet looks up the hashes.
 *
 * flow_cache is the flow table (DESIGN.md routing step 4), the only one:
 * per CPU, like the RX queue a 4-tuple is steered to by RSS, so the
 * client's Initial and 0-RTT packets find the entry their first packet
 * made. If RSS moves a flow to another CPU, or a colliding flow replaces
 * its entry, the next packet is hashed again: the same backend unless the
 * backend set changed in between (which is what the flow table guards
 * against). A shared LRU hash of flows was dropped: its lookup alone cost
 * 70-90 ns for every new flow, and an insert 300-700 ns
 * (htab_lru_map_update_elem and bpf_lru_pop_free under their locks).
 *
 * clock caches bpf_ktime_get_coarse_ns per CPU for the jiffy it was read
 * in, so stamping a flow costs an inlined array lookup, not a helper call.
 */

/* cache_gen: [0] -> generation of vips and server_ids; 0 = no caching. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} cache_gen SEC(".maps");

/* vip_cache: slot -> copy of a vips entry (or of its absence). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, VIP_CACHE_SIZE);
	__type(key, __u32);
	__type(value, struct vip_cache_entry);
} vip_cache SEC(".maps");

/* sid_cache: slot -> copy of a server_ids entry (or of its absence). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SID_CACHE_SIZE);
	__type(key, __u32);
	__type(value, struct sid_cache_entry);
} sid_cache SEC(".maps");

/* flow_cache: cpu * FLOW_CACHE_SIZE + slot -> flow decided by Maglev on
 * that CPU (or put on every CPU by Go, bpf.PutFlow). Go deletes the
 * entries of freed backends and idle ones with bpf.DeleteFlows.
 *
 * A plain array with a table per CPU, not a per-CPU array: a per-CPU
 * array's value is found through a per-entry pointer (pptrs[slot], 256 KB
 * of pointers at this size), a second cache miss for every new flow; this
 * one is at a computed address, and bpf_get_smp_processor_id is inlined
 * on x86-64. max_entries is one CPU's table here; bpf.LBSpec multiplies it
 * by the possible CPUs (a CPU past the end would find no entry and hash
 * every packet). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, FLOW_CACHE_SIZE);
	__type(key, __u32);
	__type(value, struct flow_cache_entry);
} flow_cache SEC(".maps");

/* cid_cpu_cache: slot -> copy of a cid_cache entry: a hash lookup with a
 * 28-octet key costs more than the whole plaintext CID path. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1U << CID_CPU_CACHE_BITS);
	__type(key, __u32);
	__type(value, struct cid_cpu_cache_entry);
} cid_cpu_cache SEC(".maps");

/* clock: [0] -> this CPU's last read of the coarse clock. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct coarse_clock);
} clock SEC(".maps");

/* vip_stats: VIP id -> forwarded packets, bytes and routing path. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_VIPS);
	__type(key, __u32);
	__type(value, struct vip_counters);
} vip_stats SEC(".maps");

/* backend_stats: backend index -> forwarded packets and bytes. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct backend_counters);
} backend_stats SEC(".maps");

/* reason_stats: enum reason -> packets (verdicts and events). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, REASON_MAX);
	__type(key, enum reason);
	__type(value, __u64);
} reason_stats SEC(".maps");

/* Routing paths, for vip_counters. */
enum route_path {
	PATH_CID,
	PATH_CID_CACHE,
	PATH_FLOW,
	PATH_MAGLEV,
};

/* What parsing learnt about the packet. */
struct packet {
	struct udphdr *udp;
	const __be32 *saddr; /* in the packet: 1 or 4 words */
	const __be32 *daddr;
	__u32 l2_len;    /* Ethernet + optional VLAN tag */
	__u32 inner_len; /* IP total length (header + payload) */
	__u32 frame_len; /* bytes received, for counters */
	__u8 family;     /* enum family */
	__u8 vlan;       /* one 802.1Q/802.1ad tag present */
	__u8 tos;        /* IPv4 TOS / IPv6 traffic class */
	__u8 df;         /* IPv4 DF set (always 1 for IPv6) */
};

static __always_inline void count(__u32 reason)
{
	__u64 *c = bpf_map_lookup_elem(&reason_stats, &reason);

	if (c)
		*c += 1;
}

static __always_inline int verdict(__u32 reason, int action)
{
	count(reason);
	return action;
}

/* usable: healthy or draining. Draining backends keep established
 * connections (routable CIDs, flows) but get no new ones (not in Maglev). */
static __always_inline const struct backend_info *usable_backend(__u32 idx)
{
	const struct backend_info *be = bpf_map_lookup_elem(&backends, &idx);

	if (!be || be->family == FAMILY_NONE)
		return 0;
	if (!(be->flags & (BACKEND_F_HEALTHY | BACKEND_F_DRAINING)))
		return 0;
	return be;
}

/* cache_slot maps a 32-bit digest to a slot of a table of 1 << bits
 * entries (Fibonacci hashing: the top bits of a multiplication). */
static __always_inline __u32 cache_slot(__u32 x, __u32 bits)
{
	return (x * 0x9e3779b1U) >> (32 - bits);
}

/*
 * Keys held in registers. The caches hash and compare a key as whole
 * little-endian words (bpfel only), computed straight from the packet. A
 * key is written to the stack only on a cache miss, for the hash map
 * lookup: building it there octet by octet and reading it back as words
 * made every packet wait on failed store-to-load forwarding (a third of
 * the short-header path's time in perf).
 */
struct words5 {
	__u32 w0, w1, w2, w3, w4;
};

/* key5 overlays a 20-octet key (vip_key, server_id_key, flow_key) on its
 * words. */
union key5 {
	struct vip_key vip;
	struct server_id_key sid;
	struct flow_key flow;
	__u32 w[5];
};

static __always_inline __u32 fold5(struct words5 k)
{
	return k.w0 ^ k.w1 ^ k.w2 ^ k.w3 ^ k.w4;
}

/* equal5 compares a 20-octet key in a map value (4-aligned) with k. */
static __always_inline int equal5(const void *p, struct words5 k)
{
	const __u32 *a = p;

	return !((a[0] ^ k.w0) | (a[1] ^ k.w1) | (a[2] ^ k.w2) | (a[3] ^ k.w3) |
		 (a[4] ^ k.w4));
}

static __always_inline void store5(union key5 *u, struct words5 k)
{
	u->w[0] = k.w0;
	u->w[1] = k.w1;
	u->w[2] = k.w2;
	u->w[3] = k.w3;
	u->w[4] = k.w4;
}

/* lookup_vip returns the VIP whose vip_key has the words vk, through
 * vip_cache when gen is not 0. The result points into a map value: no
 * copy on the stack. */
static __always_inline const struct vip_info *lookup_vip(struct words5 vk, __u64 gen)
{
	struct vip_cache_entry *e = 0;
	const struct vip_info *vip;
	union key5 k;
	__u32 slot;

	if (gen) {
		slot = cache_slot(fold5(vk), VIP_CACHE_BITS);
		e = bpf_map_lookup_elem(&vip_cache, &slot);
		if (e && e->gen == gen && equal5(&e->key, vk))
			return e->present ? &e->info : 0;
	}
	store5(&k, vk);
	vip = bpf_map_lookup_elem(&vips, &k.vip);
	if (e) {
		e->gen = gen;
		e->key = k.vip;
		e->present = !!vip;
		if (vip)
			e->info = *vip;
	}
	return vip;
}

/* SID_ABSENT marks a cached miss; no backend index reaches it. */
#define SID_ABSENT 0xffffffffU

/* lookup_sid returns the backend index of the server ID of length len
 * whose octets are lo (0..7) and hi (8..14, little-endian, unused octets
 * 0) in VIP vip_id, or SID_ABSENT, through sid_cache when gen is not 0. */
static __always_inline __u32 lookup_sid(__u32 vip_id, __u32 len, __u64 lo,
					__u64 hi, __u64 gen)
{
	struct sid_cache_entry *e = 0;
	__u64 tag = gen << 8 | vip_id;
	union key5 k;
	__u32 *idx, slot;

	hi |= (__u64)len << 56;
	if (gen) {
		__u64 x = lo ^ hi;

		slot = cache_slot((__u32)x ^ (__u32)(x >> 32) ^ vip_id, SID_CACHE_BITS);
		e = bpf_map_lookup_elem(&sid_cache, &slot);
		if (e && !((e->tag ^ tag) | (e->sid_lo ^ lo) | (e->sid_hi ^ hi)))
			return e->backend;
	}
	/* The server_id_key {vip_id, len, sid[15]} as words: octet 4 is
	 * len, octets 5..12 the first 8 server ID octets, 13..19 the rest. */
	k.w[0] = vip_id;
	k.w[1] = len | (__u32)(lo << 8);
	k.w[2] = (__u32)(lo >> 24);
	k.w[3] = (__u32)(lo >> 56) | (__u32)(hi << 8);
	k.w[4] = (__u32)(hi >> 24);
	idx = bpf_map_lookup_elem(&server_ids, &k.sid);
	if (e) {
		e->tag = tag;
		e->sid_lo = lo;
		e->sid_hi = hi;
		e->backend = idx ? *idx : SID_ABSENT;
	}
	return idx ? *idx : SID_ABSENT;
}

/* encap prepends an outer IPv4 or IPv6 header (family of the backend) in
 * front of the inner IP packet, keeping the L2 header (and VLAN tag), and
 * sends it to the backend's next hop (DESIGN.md "Forwarding modes": ipip).
 * Outer protocol is 4 (IPIP) for IPv4 inner, 41 for IPv6 inner (RFC 2473),
 * so mixed families work too. */
static __always_inline int encap(struct xdp_md *ctx, const struct packet *p,
				 const struct backend_info *be,
				 const struct lb_config *cfg)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr eth;
	struct vlan_hdr vlan = {};
	__u8 inner_proto = p->family == FAMILY_IPV4 ? IPPROTO_IPIP : IPPROTO_IPV6;
	int outer_len;

	if (data + sizeof(eth) + sizeof(vlan) > data_end)
		return verdict(REASON_PASS_ENCAP_FAILED, XDP_PASS);
	__builtin_memcpy(&eth, data, sizeof(eth));
	if (p->vlan)
		__builtin_memcpy(&vlan, data + sizeof(eth), sizeof(vlan));

	if (be->family == FAMILY_IPV4) {
		if (!(cfg->addr4[0] | cfg->addr4[1] | cfg->addr4[2] | cfg->addr4[3]))
			return verdict(REASON_PASS_NO_ENCAP_SOURCE, XDP_PASS);
		outer_len = sizeof(struct iphdr);
	} else {
		if (!(*(const __u64 *)&cfg->addr6[0] | *(const __u64 *)&cfg->addr6[8]))
			return verdict(REASON_PASS_NO_ENCAP_SOURCE, XDP_PASS);
		outer_len = sizeof(struct ipv6hdr);
	}
	if (bpf_xdp_adjust_head(ctx, -outer_len))
		return verdict(REASON_PASS_ENCAP_FAILED, XDP_PASS);

	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;

	__be16 outer_proto = be->family == FAMILY_IPV4 ? bpf_htons(ETH_P_IP)
						       : bpf_htons(ETH_P_IPV6);
	__builtin_memcpy(eth.h_dest, be->nexthop_mac, ETH_ALEN);
	__builtin_memcpy(eth.h_source, cfg->mac, ETH_ALEN);
	void *outer;
	if (p->vlan) {
		if (data + sizeof(eth) + sizeof(vlan) > data_end)
			return verdict(REASON_DROP_TRUNCATED, XDP_DROP);
		vlan.encap_proto = outer_proto;
		__builtin_memcpy(data, &eth, sizeof(eth));
		__builtin_memcpy(data + sizeof(eth), &vlan, sizeof(vlan));
		outer = data + sizeof(eth) + sizeof(vlan);
	} else {
		if (data + sizeof(eth) > data_end)
			return verdict(REASON_DROP_TRUNCATED, XDP_DROP);
		eth.h_proto = outer_proto;
		__builtin_memcpy(data, &eth, sizeof(eth));
		outer = data + sizeof(eth);
	}

	if (be->family == FAMILY_IPV4) {
		struct iphdr *o = outer;
		struct iphdr h = {
			.version = 4,
			.ihl = 5,
			.tos = p->tos,
			.tot_len = bpf_htons(p->inner_len + sizeof(h)),
			.frag_off = p->df ? bpf_htons(IP_DF) : 0,
			.ttl = 64,
			.protocol = inner_proto,
		};
		__builtin_memcpy(&h.saddr, cfg->addr4, 4);
		__builtin_memcpy(&h.daddr, be->addr, 4);
		h.check = ipv4_csum(&h);
		if ((void *)(o + 1) > data_end)
			return verdict(REASON_DROP_TRUNCATED, XDP_DROP);
		__builtin_memcpy(o, &h, sizeof(h));
	} else {
		struct ipv6hdr *o = outer;
		struct ipv6hdr h = {
			.payload_len = bpf_htons(p->inner_len),
			.nexthdr = inner_proto,
			.hop_limit = 64,
		};
		/* version 6, traffic class copied, flow label 0 */
		*(__be32 *)&h = bpf_htonl(0x60000000U | ((__u32)p->tos << 20));
		__builtin_memcpy(&h.saddr, cfg->addr6, 16);
		__builtin_memcpy(&h.daddr, be->addr, 16);
		if ((void *)(o + 1) > data_end)
			return verdict(REASON_DROP_TRUNCATED, XDP_DROP);
		__builtin_memcpy(o, &h, sizeof(h));
	}
	return verdict(REASON_TX, XDP_TX);
}

/* copy_mac copies a MAC as a word and a half-word: a memcpy to the packet,
 * whose alignment clang does not know, becomes twelve octet moves. The
 * JITs of bpfel targets do unaligned loads and stores. */
static __always_inline void copy_mac(__u8 *dst, const __u8 *src)
{
	*(__u32 *)dst = *(const __u32 *)src;
	*(__u16 *)(dst + 4) = *(const __u16 *)(src + 4);
}

/* send rewrites the frame for the backend (l2dsr or ipip). */
static __always_inline int send(struct xdp_md *ctx, const struct packet *p,
				const struct vip_info *vip,
				const struct backend_info *be)
{
	__u32 zero = 0;
	const struct lb_config *cfg = bpf_map_lookup_elem(&config, &zero);

	if (!cfg)
		return XDP_ABORTED; /* an array of one always has [0] */
	if (vip->forwarding == FORWARDING_IPIP)
		return encap(ctx, p, be, cfg);

	/* l2dsr: the backend holds the VIP on lo and answers the client
	 * directly; only the frame's MACs change. */
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > data_end)
		return verdict(REASON_DROP_TRUNCATED, XDP_DROP);
	copy_mac(eth->h_dest, be->mac);
	copy_mac(eth->h_source, cfg->mac);
	return verdict(REASON_TX, XDP_TX);
}

/* forward sends the packet to backend be_idx and, if it went, counts it
 * for its VIP, path and backend. */
static __always_inline int forward(struct xdp_md *ctx, const struct packet *p,
				   const struct vip_info *vip, __u32 be_idx,
				   const struct backend_info *be, enum route_path path)
{
	int action = send(ctx, p, vip, be);

	if (action != XDP_TX)
		return action;

	struct vip_counters *vc = bpf_map_lookup_elem(&vip_stats, &vip->id);
	if (vc) {
		vc->packets++;
		vc->bytes += p->frame_len;
		switch (path) {
		case PATH_CID:
			vc->cid++;
			break;
		case PATH_CID_CACHE:
			vc->cid_cache++;
			break;
		case PATH_FLOW:
			vc->flow++;
			break;
		case PATH_MAGLEV:
			vc->maglev++;
			break;
		}
	}
	struct backend_counters *bc = bpf_map_lookup_elem(&backend_stats, &be_idx);
	if (bc) {
		bc->packets++;
		bc->bytes += p->frame_len;
	}
	return XDP_TX;
}

/* low_octets returns a mask of the low n (0..7) octets of a word. */
static __always_inline __u64 low_octets(__u32 n)
{
	return (1ULL << ((n & 7) * 8)) - 1;
}

/* The DCID of a QUIC packet as far as the invariants tell (RFC 8999 §5). */
struct dcid {
	const __u8 *ptr; /* first octet of the DCID, in the packet */
	__u32 len;       /* long header: from the header; short: 0 (unknown) */
	__u8 is_long;
};

/* parse_quic finds the DCID. Returns 0 for QUIC, -1 for "not QUIC": no
 * fixed bit (RFC 9000 §17.2/17.3; RFC 8999 leaves it version-specific but
 * every version we route sets it) or too short for the invariant fields. */
static __always_inline int parse_quic(const struct packet *p, void *data_end,
				      struct dcid *d)
{
	const __u8 *q = (const __u8 *)(p->udp + 1);

	if ((void *)(q + 1) > data_end)
		return -1;
	if (!(q[0] & 0x40))
		return -1;
	if (q[0] & 0x80) {
		/* Long header: first octet, version (4), DCID length (1), DCID. */
		if ((void *)(q + 6) > data_end)
			return -1;
		d->is_long = 1;
		d->len = q[5];
		d->ptr = q + 6;
		if (d->len <= MAX_CID_LEN && (void *)(d->ptr + d->len) > data_end)
			return -1;
		return 0;
	}
	/* Short header: DCID right after the first octet; its length is known
	 * only from the CID config (RFC 8999 §5.2). */
	if ((void *)(q + 2) > data_end)
		return -1;
	d->is_long = 0;
	d->len = 0;
	d->ptr = q + 1;
	return 0;
}

static __always_inline __u64 coarse_now(void);

/* to_go redirects the frame to the slow path's AF_XDP socket of its RX
 * queue and counts it for the VIP. Returns -1 when the queue has none. */
static __always_inline int to_go(struct xdp_md *ctx, const struct vip_info *vip,
				 __u32 reason)
{
	__u32 q = ctx->rx_queue_index;

	if (bpf_redirect_map(&xsks, q, 0) != XDP_REDIRECT) {
		count(REASON_SLOW_PATH_NO_SOCKET);
		return -1;
	}
	struct vip_counters *vc = bpf_map_lookup_elem(&vip_stats, &vip->id);
	if (vc)
		vc->slow_path++;
	return verdict(reason, XDP_REDIRECT);
}

/* slow_path hands a cid_cache miss to Go (VIP_F_SLOW_PATH), within the
 * VIP's per-CPU limit: a flood of made-up DCIDs then costs Go at most the
 * limit, and the rest is hashed as without the slow path. The limit is a
 * GCRA on the coarse clock (one jiffy's resolution; burst_ns covers it).
 * Returns the verdict, or -1 to fall through to the flow table. */
static __always_inline int slow_path(struct xdp_md *ctx, const struct vip_info *vip)
{
	__u32 q = ctx->rx_queue_index;

	/* No socket: no token spent, and the decision does not depend on
	 * the clock (the parity test runs without sockets). */
	if (!bpf_map_lookup_elem(&xsks, &q)) {
		count(REASON_SLOW_PATH_NO_SOCKET);
		return -1;
	}
	const struct slow_path_limit *lim = bpf_map_lookup_elem(&slow_path_limits, &vip->id);
	__u64 *tat = bpf_map_lookup_elem(&slow_path_tat, &vip->id);
	if (lim && tat && lim->interval_ns) {
		__u64 now = coarse_now();
		__u64 t = *tat > now ? *tat : now;

		if (t - now > lim->burst_ns) {
			struct vip_counters *vc = bpf_map_lookup_elem(&vip_stats, &vip->id);

			if (vc)
				vc->slow_path_limited++;
			count(REASON_SLOW_PATH_LIMITED);
			return -1;
		}
		*tat = t + lim->interval_ns;
	}
	return to_go(ctx, vip, REASON_REDIRECT_SLOW_PATH);
}

/* route_cid tries the routable CID (draft-21 §4.2 step 1). Returns the
 * verdict, or -1 to fall through to the flow table. */
static __always_inline int route_cid(struct xdp_md *ctx, const struct packet *p,
				     const struct vip_info *vip, struct dcid *d,
				     __u64 gen)
{
	void *data_end = (void *)(long)ctx->data_end;
	const __u8 *cid = d->ptr;

	if (d->is_long) {
		if (d->len > MAX_CID_LEN) {
			/* Allowed by RFC 8999 for other versions, but no QUIC-LB
			 * CID is that long: not routable. */
			count(REASON_CID_TOO_LONG);
			return -1;
		}
		if (d->len == 0) {
			count(REASON_CID_TOO_SHORT);
			return -1;
		}
	}
	if ((void *)(cid + 1) > data_end)
		return -1;

	__u32 cp = cid[0] >> 5; /* config rotation codepoint (draft-21 §3) */
	if (cp >= CID_CONFIGS) {
		count(REASON_CID_NO_CONFIG);
		return -1;
	}
	const struct cid_config cfg = vip->cid[cp]; /* 4 octets */
	__u32 need = 1 + cfg.server_id_len + cfg.nonce_len;

	if (!(cfg.flags & CID_CONFIG_PRESENT) || cfg.server_id_len == 0 ||
	    cfg.server_id_len > MAX_SERVER_ID_LEN || need > MAX_CID_LEN) {
		count(REASON_CID_NO_CONFIG);
		return -1;
	}
	if (!d->is_long)
		d->len = need;
	/* A valid QUIC packet carries at least 20 octets from the start of
	 * its DCID: the header protection sample (RFC 9001 §5.4.2) is 16
	 * octets taken 4 after the packet number, which follows the DCID.
	 * With that one check the copies below need no per-octet bounds. */
	if ((void *)(cid + MAX_CID_LEN) > data_end ||
	    (void *)(cid + d->len) > data_end) {
		count(REASON_CID_TOO_SHORT);
		return -1;
	}

	if (cfg.flags & CID_CONFIG_ENCRYPTED) {
		struct cid_key k = { .vip_id = vip->id, .len = d->len };
		__u64 a, b;
		__u32 c;

		/* Copy 20 octets and clear those past the DCID (little-endian
		 * words: octet i is bits 8i..8i+7; bpfel only). */
		__builtin_memcpy(&a, cid, 8);
		__builtin_memcpy(&b, cid + 8, 8);
		__builtin_memcpy(&c, cid + 16, 4);
		if (d->len < 8) {
			a &= low_octets(d->len);
			b = 0;
			c = 0;
		} else if (d->len < 16) {
			b &= low_octets(d->len - 8);
			c = 0;
		} else {
			c &= (__u32)low_octets(d->len - 16);
		}
		struct cid_cpu_cache_entry *e = 0;
		__u64 tag = gen << 16 | (__u64)d->len << 8 | vip->id;
		__u32 hit;

		if (gen) {
			__u64 x = a ^ b ^ c;
			__u32 slot = cache_slot((__u32)x ^ (__u32)(x >> 32) ^ vip->id,
						CID_CPU_CACHE_BITS);

			e = bpf_map_lookup_elem(&cid_cpu_cache, &slot);
			if (e && !((e->tag ^ tag) | (e->cid_lo ^ a) | (e->cid_mid ^ b) |
				   (e->cid_hi ^ c))) {
				hit = e->backend;
				goto cached;
			}
		}
		__builtin_memcpy(k.cid, &a, 8);
		__builtin_memcpy(k.cid + 8, &b, 8);
		__builtin_memcpy(k.cid + 16, &c, 4);
		__u32 *idx = bpf_map_lookup_elem(&cid_cache, &k);
		if (!idx) {
			count(REASON_CID_CACHE_MISS);
			if (vip->flags & VIP_F_SLOW_PATH) {
				int v = slow_path(ctx, vip);

				if (v >= 0)
					return v;
			}
			if (vip->flags & VIP_F_CID_MISS_PASS)
				return verdict(REASON_PASS_CID_CACHE_MISS, XDP_PASS);
			return -1;
		}
		hit = *idx;
		if (e) {
			e->tag = tag;
			e->cid_lo = a;
			e->cid_mid = b;
			e->cid_hi = c;
			e->backend = hit;
		}
cached:;
		const struct backend_info *be = usable_backend(hit);
		if (!be) {
			count(REASON_CID_BACKEND_UNUSABLE);
			return -1;
		}
		return forward(ctx, p, vip, hit, be, PATH_CID_CACHE);
	}

	/* Plaintext: server ID in octets 1..server_id_len (draft-21 §5.2). */
	if (d->len < 1 + (__u32)cfg.server_id_len) {
		count(REASON_CID_TOO_SHORT);
		return -1;
	}
	/* Octets 1..8 (a) and 9..15 (b) of the CID; packet loads need no
	 * alignment on bpfel JITs. */
	__u64 a = *(const __u64 *)(cid + 1);
	__u64 b = *(const __u64 *)(cid + 9);

	if (cfg.server_id_len < 8) {
		a &= low_octets(cfg.server_id_len);
		b = 0;
	} else {
		b &= low_octets(cfg.server_id_len - 8);
	}
	__u32 idx = lookup_sid(vip->id, cfg.server_id_len, a, b, gen);
	if (idx == SID_ABSENT) {
		count(REASON_CID_UNKNOWN_SERVER);
		return -1;
	}
	const struct backend_info *be = usable_backend(idx);
	if (!be) {
		count(REASON_CID_BACKEND_UNUSABLE);
		return -1;
	}
	return forward(ctx, p, vip, idx, be, PATH_CID);
}

/* flow_cache_slot returns this CPU's flow_cache entry for the flow_key
 * whose words are fk (src[16], then src_port | vip_id << 16). */
static __always_inline struct flow_cache_entry *flow_cache_slot(struct words5 fk)
{
	__u32 x = (fk.w0 ^ fk.w1 ^ fk.w2 ^ fk.w3) * 0x85ebca6bU ^ fk.w4 * 0xc2b2ae35U;
	__u32 idx = bpf_get_smp_processor_id() << FLOW_CACHE_BITS |
		    cache_slot(x, FLOW_CACHE_BITS);

	return bpf_map_lookup_elem(&flow_cache, &idx);
}

/* coarse_now returns CLOCK_MONOTONIC_COARSE in ns as of the current jiffy
 * (jiffies, from bpf_jiffies64), calling bpf_ktime_get_coarse_ns only for
 * the first packet of a jiffy on this CPU. A fresh entry (jiffies 0) never
 * matches: jiffies start at INITIAL_JIFFIES, not 0. The clock is not 0
 * once the system runs, so the result marks a used flow_cache slot. */
static __always_inline __u64 coarse_now(void)
{
	__u64 jiffies = bpf_jiffies64(); /* inlined: a load, no call */
	__u32 zero = 0;
	struct coarse_clock *c = bpf_map_lookup_elem(&clock, &zero);
	__u64 ns;

	if (c && c->jiffies == jiffies)
		return c->ns;
	ns = bpf_ktime_get_coarse_ns();
	if (c) {
		c->jiffies = jiffies;
		c->ns = ns;
	}
	return ns;
}

/* route_flow_or_hash: the flow table (draft-21 §4.2 step 4: this CPU's
 * flow_cache), else the Maglev table (step 5), recording the decision in
 * flow_cache. */
static __always_inline int route_flow_or_hash(struct xdp_md *ctx,
					      const struct packet *p,
					      const struct vip_info *vip)
{
	struct words5 fk = {
		.w0 = p->saddr[0],
		.w4 = (__u32)p->udp->source | vip->id << 16,
	};

	if (p->family != FAMILY_IPV4) {
		fk.w1 = p->saddr[1];
		fk.w2 = p->saddr[2];
		fk.w3 = p->saddr[3];
	}

	struct flow_cache_entry *ce = flow_cache_slot(fk);
	if (ce && ce->last_seen_ns && equal5(&ce->key, fk)) {
		__u32 idx = ce->backend;
		const struct backend_info *be = usable_backend(idx);

		if (be) {
			__u64 now = coarse_now();

			if (now - ce->last_seen_ns >= FLOW_REFRESH_NS)
				ce->last_seen_ns = now;
			return forward(ctx, p, vip, idx, be, PATH_FLOW);
		}
		count(REASON_FLOW_BACKEND_UNUSABLE);
	}

	__u32 m = vip->maglev_size;
	if (m == 0 || m > MAGLEV_MAX_SIZE)
		return verdict(REASON_PASS_BACKEND_INVALID, XDP_PASS);
	__u32 slot = vip->id * 2 + (vip->maglev_slot & 1);
	void *table = bpf_map_lookup_elem(&maglev, &slot);
	if (!table)
		return verdict(REASON_PASS_BACKEND_INVALID, XDP_PASS);

	__u32 entry = flow_hash(vip->hash, p->family, p->saddr, p->daddr,
				p->udp->source, p->udp->dest) % m;
	__u32 *idxp = bpf_map_lookup_elem(table, &entry);
	if (!idxp)
		return verdict(REASON_PASS_BACKEND_INVALID, XDP_PASS);
	__u32 idx = *idxp;
	const struct backend_info *be = usable_backend(idx);
	if (!be)
		return verdict(REASON_PASS_BACKEND_INVALID, XDP_PASS);

	/* Record the decision, replacing whatever held the slot: a plain
	 * store into this CPU's array, not a locked LRU insert. */
	if (ce) {
		store5((union key5 *)&ce->key, fk);
		ce->backend = idx;
		ce->last_seen_ns = coarse_now();
	}
	return forward(ctx, p, vip, idx, be, PATH_MAGLEV);
}

SEC("xdp")
int xdp_lb(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct packet p = { .frame_len = data_end - data };
	struct words5 vk = {}; /* vip_key words: addr[16], port, family, proto */
	__be16 proto;

	if (parse_l2(data, data_end, &p.l2_len, &proto, &p.vlan))
		return verdict(REASON_DROP_TRUNCATED, XDP_DROP);

	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *iph = data + p.l2_len;

		if ((void *)(iph + 1) > data_end)
			return verdict(REASON_DROP_TRUNCATED, XDP_DROP);
		if (iph->version != 4 || iph->ihl < 5)
			return verdict(REASON_DROP_BAD_IP, XDP_DROP);
		if (iph->protocol != IPPROTO_UDP)
			return verdict(REASON_PASS_NON_UDP, XDP_PASS);
		/* Only the first fragment has the UDP header, and the kernel
		 * reassembles: leave all fragments to it. */
		if (iph->frag_off & bpf_htons(IP_MF | IP_OFFSET))
			return verdict(REASON_PASS_FRAGMENT, XDP_PASS);
		/* Options are legal; they only move the UDP header. */
		p.udp = (void *)iph + iph->ihl * 4;
		if ((void *)(p.udp + 1) > data_end)
			return verdict(REASON_DROP_TRUNCATED, XDP_DROP);
		if (iph->ihl > 5)
			count(REASON_IP_OPTIONS);
		p.family = FAMILY_IPV4;
		p.saddr = &iph->saddr;
		p.daddr = &iph->daddr;
		p.inner_len = bpf_ntohs(iph->tot_len);
		p.tos = iph->tos;
		p.df = !!(iph->frag_off & bpf_htons(IP_DF));
		vk.w0 = iph->daddr;
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6h = data + p.l2_len;

		if ((void *)(ip6h + 1) > data_end)
			return verdict(REASON_DROP_TRUNCATED, XDP_DROP);
		if (ip6h->version != 6)
			return verdict(REASON_DROP_BAD_IP, XDP_DROP);
		/* No extension headers: QUIC clients send none, and walking
		 * them costs more than handing the odd packet to the kernel. */
		if (ip6h->nexthdr != IPPROTO_UDP)
			return verdict(REASON_PASS_NON_UDP, XDP_PASS);
		p.udp = (void *)(ip6h + 1);
		if ((void *)(p.udp + 1) > data_end)
			return verdict(REASON_DROP_TRUNCATED, XDP_DROP);
		p.family = FAMILY_IPV6;
		p.saddr = ip6h->saddr.in6_u.u6_addr32;
		p.daddr = ip6h->daddr.in6_u.u6_addr32;
		p.inner_len = bpf_ntohs(ip6h->payload_len) + sizeof(*ip6h);
		p.tos = (bpf_ntohl(*(__be32 *)ip6h) >> 20) & 0xff;
		p.df = 1;
		vk.w0 = ip6h->daddr.in6_u.u6_addr32[0];
		vk.w1 = ip6h->daddr.in6_u.u6_addr32[1];
		vk.w2 = ip6h->daddr.in6_u.u6_addr32[2];
		vk.w3 = ip6h->daddr.in6_u.u6_addr32[3];
	} else {
		return verdict(REASON_PASS_NOT_IP, XDP_PASS);
	}

	/* port (network order), family, proto: octets 16..19 */
	vk.w4 = (__u32)p.udp->dest | (__u32)p.family << 16 | (__u32)IPPROTO_UDP << 24;
	__u32 zero = 0;
	const __u64 *genp = bpf_map_lookup_elem(&cache_gen, &zero);
	__u64 gen = genp ? *genp : 0;
	const struct vip_info *vip = lookup_vip(vk, gen);
	if (!vip)
		return verdict(REASON_PASS_NOT_VIP, XDP_PASS);
	if (vip->mode != VIP_MODE_L4)
		return verdict(REASON_PASS_L7, XDP_PASS);
	/* --dataplane userspace: Go decides every datagram of the VIP. */
	if (vip->flags & VIP_F_USERSPACE) {
		int v = to_go(ctx, vip, REASON_REDIRECT_USERSPACE);

		if (v >= 0)
			return v;
	}

	struct dcid d = {};
	if (parse_quic(&p, data_end, &d) == 0) {
		int v = route_cid(ctx, &p, vip, &d, gen);
		if (v >= 0)
			return v;
	} else if (vip->flags & VIP_F_STRICT) {
		return verdict(REASON_DROP_NOT_QUIC_STRICT, XDP_DROP);
	} else {
		count(REASON_NOT_QUIC);
	}
	return route_flow_or_hash(ctx, &p, vip);
}
