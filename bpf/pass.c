// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//go:build ignore

/*
 * pass.c: a program that passes everything.
 *
 * Native XDP_TX on a veth delivers only if the peer has an XDP program too
 * (drivers/net/veth.c: without one the peer counts xdp_tx_errors), and this
 * is the one spooky attaches there (forwarder.AttachPass).
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char __license[] SEC("license") = "Dual BSD/GPL";

SEC("xdp")
int xdp_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}
