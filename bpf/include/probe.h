/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * probe.h: the contract between probe.c (tc egress) and Go.
 *
 * A health probe of a DSR backend is sent by a socket on the load
 * balancer host whose SO_MARK names the backend:
 *
 *   bits 31..24  PROBE_MARK_BASE (0x5b): a probe; the policy rule matches
 *                these bits (fwmark BASE/MASK) and routes the packet out
 *                of the edge interface
 *   bit  23      PROBE_MARK_IPIP: push an outer header (ipip); clear: l2dsr
 *   bits 22..0   the backend's index in the backends map (< MAX_BACKENDS)
 *
 * Go holds the same values (bpf/probe.go); the probe tests build marks
 * from the Go ones and fail if the two differ.
 */
#ifndef SPOOKY_PROBE_H
#define SPOOKY_PROBE_H

#define PROBE_MARK_BASE 0x5b000000U
#define PROBE_MARK_MASK 0xff000000U
#define PROBE_MARK_IPIP 0x00800000U
#define PROBE_MARK_INDEX 0x007fffffU

/* probe_stats index (per-CPU __u64): what happened to marked packets.
 * Unmarked packets are not counted: they cost a load and a compare. */
enum probe_reason {
	PROBE_L2DSR = 0,            /* destination MAC set to the backend's */
	PROBE_IPIP,                 /* outer header toward the backend pushed */
	PROBE_PASS_NOT_IP,          /* marked, not IPv4/IPv6: left untouched */
	PROBE_DROP_BAD_INDEX,       /* index >= MAX_BACKENDS */
	PROBE_DROP_EMPTY_SLOT,      /* no backend at the index (family none) */
	PROBE_DROP_NO_MAC,          /* the MAC the mode needs is unknown */
	PROBE_DROP_NO_ENCAP_SOURCE, /* ipip: no LB address of that family */
	PROBE_DROP_ENCAP_FAILED,    /* bpf_skb_adjust_room refused */
	PROBE_DROP_TRUNCATED,       /* the inner IP header is cut */
	PROBE_REASON_MAX,
};

#endif /* SPOOKY_PROBE_H */
