// Package forwarder is the packet tier's brain: the backend set, the weighted
// Maglev lookup tables, the flow table, the routing decision of a VIP in
// mode l4 (routable CID, then flow table, then Maglev hash; QUIC-LB §4.2),
// the map sync that programs the XDP fast path, and the userspace packet
// forwarder.
//
// The Go routing decision and the XDP program in bpf/ must choose the same
// backend for the same packet; the Maglev tables both of them read are built
// here, deterministically from the configuration, so that several spooky
// instances behind ECMP agree without sharing state.
package forwarder
