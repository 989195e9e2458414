/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * spooky.h: the contract between the XDP programs and Go.
 *
 * Every struct and enum here is generated into Go by bpf2go (-type), so the
 * layouts are defined once. Enums stored in structs have a fixed underlying
 * type (`enum x : __u8`, C23, a clang extension before it) so that fields
 * keep their size and Go gets typed fields. All structs have explicit padding: the kernel
 * hashes keys byte for byte, and Go must be able to write every byte.
 *
 * Conventions
 *   - Addresses are 16 octets in network order. IPv4 uses octets 0..3 and
 *     leaves 4..15 zero; `family` says which.
 *   - Ports are in network order inside keys (as on the wire).
 *   - A VIP's `id` (0..MAX_VIPS-1) indexes vip_stats and the maglev outer
 *     map and qualifies every per-VIP key (server_ids, cid_cache,
 *     flow_cache).
 *   - A backend index (0..MAX_BACKENDS-1) indexes backends and
 *     backend_stats. Backends are shared between VIPs.
 */
#ifndef SPOOKY_H
#define SPOOKY_H

#include <linux/types.h>

/* Map sizes. Go may raise the hash/LRU sizes in the CollectionSpec before
 * loading; the array sizes are part of the contract. */
#define MAX_VIPS 256
#define MAX_BACKENDS 4096
/* Largest Maglev table (prime). Each VIP picks its own prime M <= this. */
#define MAGLEV_MAX_SIZE 65537
#define MAX_SERVER_IDS 65536
#define MAX_CID_CACHE 65536
/* xsks: one AF_XDP socket per RX queue (the slow path, DESIGN.md
 * "Encrypted CIDs"); a queue past it has no slow path. */
#define MAX_QUEUES 256
/* Per-CPU caches in front of the hash maps (lb.c "Caches"). Powers of two:
 * the slot is the top bits of a multiplicative hash. */
#define VIP_CACHE_BITS 8
#define SID_CACHE_BITS 10
#define CID_CPU_CACHE_BITS 12
#define FLOW_CACHE_BITS 15
#define VIP_CACHE_SIZE (1U << VIP_CACHE_BITS)
#define SID_CACHE_SIZE (1U << SID_CACHE_BITS)
#define FLOW_CACHE_SIZE (1U << FLOW_CACHE_BITS)

/* QUIC-LB limits (draft-ietf-quic-load-balancers-21 §3, §5.3). */
#define CID_CONFIGS 7      /* codepoints 0..6; 0b111 means unroutable (§3.2) */
#define MAX_CID_LEN 20     /* RFC 9000 §17.2 for QUIC v1 and v2 */
#define MAX_SERVER_ID_LEN 15 /* server ID + nonce <= 19, nonce >= 4 */

/* flow_cache entries are restamped when their last_seen_ns is this old
 * (64 ms): a store per flow per interval, not per packet. */
#define FLOW_REFRESH_NS 64000000ULL

/* Seed of flow_hash (see hash.h): "Sp0k". */
#define FLOW_HASH_SEED 0x5370306bU

enum family : __u8 {
	FAMILY_NONE = 0, /* empty slot */
	FAMILY_IPV4 = 4,
	FAMILY_IPV6 = 6,
};

enum vip_mode : __u8 {
	VIP_MODE_L4 = 0, /* route in XDP */
	VIP_MODE_L7 = 1, /* XDP_PASS to the kernel: quic-go terminates */
};

enum forwarding : __u8 {
	FORWARDING_L2DSR = 0, /* rewrite MACs, XDP_TX */
	FORWARDING_IPIP = 1,  /* prepend outer IPv4/IPv6 header, XDP_TX */
};

enum hash_kind : __u8 {
	HASH_4TUPLE = 0, /* src addr, dst addr, src port, dst port */
	HASH_SRC_IP = 1, /* src addr only ("IP hash") */
};

enum vip_flags : __u8 {
	/* Drop datagrams that are not QUIC (no fixed bit, too short) instead
	 * of hashing them (DESIGN.md routing step 5). */
	VIP_F_STRICT = 1 << 0,
	/* On a cid_cache miss for an encrypted config, XDP_PASS the packet to
	 * the Go forwarder (which decrypts and fills cid_cache) instead of
	 * falling through to the flow table and Maglev. */
	VIP_F_CID_MISS_PASS = 1 << 1,
	/* On a cid_cache miss for an encrypted config, redirect the frame to
	 * the AF_XDP socket of its RX queue (xsks), within the VIP's
	 * slow_path_limits; Go decrypts, forwards the frame and fills
	 * cid_cache. Without a socket, or beyond the limit, the flow table
	 * and Maglev decide as without the flag. */
	VIP_F_SLOW_PATH = 1 << 2,
	/* Redirect every datagram of the VIP to xsks: Go decides them all
	 * (spooky attach --dataplane userspace). Without a socket on the
	 * queue, XDP decides. */
	VIP_F_USERSPACE = 1 << 3,
};

enum cid_config_flags : __u8 {
	CID_CONFIG_PRESENT = 1 << 0,   /* a config exists at this codepoint */
	CID_CONFIG_ENCRYPTED = 1 << 1, /* AES config: XDP uses cid_cache only */
};

enum backend_flags : __u8 {
	/* Usable = HEALTHY or DRAINING. Routable CIDs and flows go to usable
	 * backends; Go lists only healthy ones in the Maglev tables. An
	 * unhealthy backend keeps its slot with flags 0. */
	BACKEND_F_HEALTHY = 1 << 0,
	BACKEND_F_DRAINING = 1 << 1,
};

/* vips map key: a UDP service address. */
struct vip_key {
	__u8 addr[16];
	__be16 port; /* network order */
	enum family family;
	__u8 proto;  /* IPPROTO_UDP (17); the only one routed today */
};

/* One QUIC-LB configuration at a config rotation codepoint (draft-21 §5.3).
 * The CID is first octet + server ID + nonce; for encrypted configs the
 * length is the same but XDP cannot decode it (no AES). */
struct cid_config {
	__u8 server_id_len; /* 1..15 */
	__u8 nonce_len;     /* 4..18 */
	enum cid_config_flags flags;
	__u8 pad;
};

/* vips map value. Mode, forwarding and hash are zero-value sensible: l4,
 * l2dsr, 4-tuple. */
struct vip_info {
	__u32 id;          /* 0..MAX_VIPS-1 */
	enum vip_mode mode;
	enum forwarding forwarding;
	enum hash_kind hash;
	enum vip_flags flags;
	__u32 maglev_size; /* M: prime, <= MAGLEV_MAX_SIZE; 0 = no table */
	__u32 maglev_slot; /* active slot, 0 or 1: maglev[id*2 + slot] */
	struct cid_config cid[CID_CONFIGS]; /* indexed by codepoint */
};

/* backends map value (array, index = backend index). */
struct backend_info {
	__u8 addr[16];       /* ipip outer destination */
	enum family family;  /* FAMILY_NONE = empty slot */
	enum backend_flags flags;
	__u8 mac[6];         /* l2dsr: the backend's own MAC */
	__u8 nexthop_mac[6]; /* ipip: MAC of the next hop toward addr */
	__u8 pad[2];
};

/* server_ids key; value: __u32 backend index. Unused sid octets are 0. */
struct server_id_key {
	__u32 vip_id;
	__u8 len; /* server ID length, 1..15 */
	__u8 sid[MAX_SERVER_ID_LEN];
};

/* cid_cache key (encrypted configs; filled by Go after decrypting); value:
 * __u32 backend index. Holds the whole DCID, first octet included; unused
 * octets are 0. */
struct cid_key {
	__u32 vip_id;
	__u8 len; /* DCID length, 1..20 */
	__u8 cid[MAX_CID_LEN];
	__u8 pad[3];
};

/* flow_cache entry key: the client side of the 4-tuple; the VIP supplies
 * the rest. 20 octets, so that an entry is 32 (two to a cache line). */
struct flow_key {
	__u8 src[16];
	__be16 src_port; /* network order */
	__u16 vip_id;    /* < MAX_VIPS */
};

/* flow_cache value (array of nr_cpus * FLOW_CACHE_SIZE entries: CPU c's
 * table is entries c*FLOW_CACHE_SIZE.., slot = hash of the key): the one
 * flow table, the flows XDP decided by Maglev. Go deletes entries
 * (bpf.DeleteFlows) and may put one on every CPU (bpf.PutFlow). An empty
 * slot is all zero; last_seen_ns == 0 marks it. */
struct flow_cache_entry {
	struct flow_key key;
	__u32 backend;
	/* CLOCK_MONOTONIC_COARSE ns (bpf_ktime_get_coarse_ns, read at most
	 * once per jiffy per CPU: see coarse_clock) of the last packet,
	 * updated at most every FLOW_REFRESH_NS. Never 0 in a used slot. */
	__u64 last_seen_ns;
};

/* vip_cache value (per-CPU, internal to XDP): a copy of a vips entry,
 * valid while gen equals cache_gen[0] (which Go bumps after writing vips
 * or server_ids; 0 disables the caches). present = 0 caches "no VIP". */
struct vip_cache_entry {
	__u64 gen;
	struct vip_key key;
	__u32 present;
	struct vip_info info;
};

/* sid_cache value (per-CPU, internal to XDP): a copy of a server_ids
 * entry, valid while tag's generation equals cache_gen[0]. The key is
 * held as three words compared whole: tag = generation << 8 | VIP id
 * (ids are below MAX_VIPS = 256), sid_lo = server ID octets 0..7, sid_hi =
 * octets 8..14 | length << 56 (little-endian, unused octets 0). */
struct sid_cache_entry {
	__u64 tag;
	__u64 sid_lo;
	__u64 sid_hi;
	__u32 backend;
	__u32 pad;
};

/* cid_cpu_cache value (per-CPU, internal to XDP): a copy of a cid_cache
 * entry, valid while tag's generation equals cache_gen[0]. The key is held
 * as four words compared whole: tag = generation << 16 | DCID length << 8
 * | VIP id, and the DCID's octets 0..7, 8..15 and 16..19 (little-endian,
 * unused octets 0). A hit does not touch cid_cache's LRU order: an entry
 * that ages out there while a CPU still hits its copy costs one trip
 * through the slow path later. */
struct cid_cpu_cache_entry {
	__u64 tag;
	__u64 cid_lo;
	__u64 cid_mid;
	__u32 cid_hi;
	__u32 backend;
};

/* clock value (per-CPU array of one, internal to XDP): the coarse clock
 * as last read on this CPU and the jiffies it was read at. Both advance on
 * the timer tick (tick_do_update_jiffies64, then update_wall_time), so
 * while jiffies have not moved ns is at most about a jiffy old, and XDP
 * reuses it instead of calling the helper. */
struct coarse_clock {
	__u64 jiffies; /* bpf_jiffies64() when ns was read; 0 = never */
	__u64 ns;      /* bpf_ktime_get_coarse_ns() then */
};

/* config map value (array of one): this load balancer's own addresses. */
struct lb_config {
	__u8 mac[6];   /* source MAC of every frame sent with XDP_TX */
	__u8 pad[2];
	__u8 addr4[4]; /* ipip outer IPv4 source; zero = none */
	__u8 addr6[16]; /* ipip outer IPv6 source; zero = none */
};

/* vip_stats value (per-CPU, index = VIP id): forwarded packets only. */
struct vip_counters {
	__u64 packets;
	__u64 bytes; /* frame length as received */
	__u64 cid;       /* routed by a plaintext server ID */
	__u64 cid_cache; /* routed by cid_cache (encrypted configs) */
	__u64 flow;      /* routed by the flow table */
	__u64 maglev;    /* routed by the Maglev table */
	__u64 slow_path; /* redirected to Go (AF_XDP): not in packets */
	__u64 slow_path_limited; /* cid_cache misses over the slow path's limit */
};

/* slow_path_stats value (array, index = VIP id): what Go did with the
 * datagrams XDP redirected to it, totals since the maps were made. Written
 * by Go only (a restarted daemon continues from the stored values). */
struct slow_path_counters {
	__u64 cid;       /* forwarded by a decrypted server ID, DCID cached */
	__u64 cid_cache; /* forwarded by a DCID Go had cached already */
	__u64 flow;      /* forwarded by Go's flow table */
	__u64 maglev;    /* forwarded by the Maglev table */
	__u64 other;     /* not forwarded: passed up or dropped, as XDP would */
	__u64 bytes;     /* of forwarded frames, as received */
};

/* slow_path_limits value (array, index = VIP id): the rate at which one
 * CPU may redirect a VIP's cid_cache misses to Go, as a GCRA (a token
 * bucket kept as one time): a miss passes while the CPU's theoretical
 * arrival time is at most burst_ns ahead of now, and moves it interval_ns
 * on. interval_ns 0: no limit. Written by Go. */
struct slow_path_limit {
	__u64 interval_ns; /* 1e9 / datagrams per second */
	__u64 burst_ns;    /* burst * interval_ns */
};

/* backend_stats value (per-CPU, index = backend index). */
struct backend_counters {
	__u64 packets;
	__u64 bytes; /* frame length as received, before encapsulation */
};

/* reason_stats index (per-CPU __u64). PASS_ and DROP_ name the verdict of
 * a packet; the others are events on the way to a verdict. */
enum reason {
	REASON_TX = 0,                   /* forwarded with XDP_TX */
	REASON_PASS_NOT_IP,              /* not IPv4/IPv6 (ARP, LLDP, ...) */
	REASON_PASS_NON_UDP,             /* not UDP, or IPv6 extension headers */
	REASON_PASS_FRAGMENT,            /* IPv4 fragment: no/partial UDP header */
	REASON_PASS_NOT_VIP,             /* UDP, but no VIP at dst addr:port */
	REASON_PASS_L7,                  /* VIP in mode l7 */
	REASON_PASS_BACKEND_INVALID,     /* Maglev gave no usable backend */
	REASON_PASS_CID_CACHE_MISS,      /* VIP_F_CID_MISS_PASS: Go decrypts */
	REASON_PASS_NO_ENCAP_SOURCE,     /* ipip: no LB address of that family */
	REASON_PASS_ENCAP_FAILED,        /* bpf_xdp_adjust_head refused */
	REASON_DROP_TRUNCATED,           /* Ethernet/VLAN/IP/UDP header cut */
	REASON_DROP_BAD_IP,              /* IPv4 IHL < 5 or wrong version */
	REASON_DROP_NOT_QUIC_STRICT,     /* not QUIC, VIP is strict */
	REASON_IP_OPTIONS,               /* IPv4 with options: parsed, routed */
	REASON_NOT_QUIC,                 /* not QUIC, hashed (VIP not strict) */
	REASON_CID_NO_CONFIG,            /* codepoint without a config/0b111 */
	REASON_CID_TOO_SHORT,            /* DCID shorter than its config needs */
	REASON_CID_TOO_LONG,             /* long header DCID > 20: not routed */
	REASON_CID_UNKNOWN_SERVER,       /* plaintext server ID not in map */
	REASON_CID_BACKEND_UNUSABLE,     /* CID names an unusable backend */
	REASON_CID_CACHE_MISS,           /* encrypted DCID not in cid_cache */
	REASON_FLOW_BACKEND_UNUSABLE,    /* flow entry names unusable backend */
	REASON_FLOW_INSERT_FAILED,       /* unused: flow_cache inserts cannot fail */
	REASON_REDIRECT_SLOW_PATH,       /* cid_cache miss redirected to Go */
	REASON_REDIRECT_USERSPACE,       /* userspace VIP: redirected to Go */
	REASON_SLOW_PATH_LIMITED,        /* miss over slow_path_limits: hashed */
	REASON_SLOW_PATH_NO_SOCKET,      /* no AF_XDP socket on the RX queue */
	/* Counted by Go in slow_path_reasons only: a redirected frame the
	 * kernel dropped because the socket's RX ring was full or its fill
	 * ring empty (XDP_STATISTICS rx_dropped + rx_ring_full). */
	REASON_DROP_SLOW_PATH_RING,
	REASON_MAX,
};

/* decap_stats index (per-CPU __u64). */
enum decap_reason {
	DECAP_OK = 0,                /* outer header stripped, XDP_PASS */
	DECAP_PASS_NOT_IP,           /* not IPv4/IPv6 */
	DECAP_PASS_NOT_TUNNEL,       /* not IPIP (4) / IPv6-in-IP (41) */
	DECAP_PASS_NOT_LOCAL,        /* tunnel to an address not in decap_addrs */
	DECAP_PASS_FRAGMENT,         /* fragmented outer IPv4 */
	DECAP_PASS_TRUNCATED,        /* a header (outer or inner) is cut */
	DECAP_PASS_ADJUST_FAILED,    /* bpf_xdp_adjust_head refused */
	DECAP_REASON_MAX,
};

/* decap_addrs key; value: __u8 (1). */
struct decap_key {
	__u8 addr[16];
	enum family family;
	__u8 pad[3];
};

#endif /* SPOOKY_H */
