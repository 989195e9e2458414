package forwarder

import (
	"net/netip"
	"sync/atomic"

	"github.com/spooky-lb/spooky/bpf"
)

// ProxyEvent is one of the proxy's own counters: datagrams relayed,
// sessions made and ended, and why datagrams were dropped. The routing
// decision's reasons are the Router's (the names of reason_stats).
type ProxyEvent uint8

// Proxy events.
const (
	// ProxyFromClients: datagrams received on a VIP socket (a GRO
	// receive counts each segment).
	ProxyFromClients ProxyEvent = iota
	// ProxyToBackends: datagrams sent to a backend.
	ProxyToBackends
	// ProxyReplies: datagrams relayed from a backend to its client.
	ProxyReplies
	// ProxyDropNoBackend: the decision chose no backend (not QUIC with
	// strict, no usable backend); the Router's reasons say which.
	ProxyDropNoBackend
	// ProxyDropTableFull: a new session was needed and the session table
	// was full (proxy.max_sessions).
	ProxyDropTableFull
	// ProxyDropOversized: a datagram did not fit the receive buffer, or
	// was too long for the path to the backend or client (EMSGSIZE).
	ProxyDropOversized
	// ProxyDropSendFailed: the kernel refused a send (a full socket
	// buffer, a route gone); the datagram is lost as a full queue loses it.
	ProxyDropSendFailed
	// ProxyDropNoLocalPort: a new session's socket found no free local
	// port (each takes one from net.ipv4.ip_local_port_range).
	ProxyDropNoLocalPort
	// ProxyBackendUnreachable: an ICMP error from a backend or its path;
	// the session is closed.
	ProxyBackendUnreachable
	// ProxySessionsCreated: sessions opened.
	ProxySessionsCreated
	// ProxySessionsExpired: sessions closed after flow_timeout idle.
	ProxySessionsExpired
	// ProxySessionsClosed: sessions closed for another reason: their
	// backend was removed or changed by a reload, or unreachable.
	ProxySessionsClosed
	// ProxyGROReceives: receives that carried several datagrams (UDP GRO).
	ProxyGROReceives
	// ProxyGSOSends: sends that carried several datagrams (UDP GSO).
	ProxyGSOSends
	numProxyEvents
)

var proxyEventNames = [numProxyEvents]string{
	"from_clients", "to_backends", "replies",
	"drop_no_backend", "drop_session_table_full", "drop_oversized", "drop_send_failed", "drop_no_local_port",
	"backend_unreachable",
	"sessions_created", "sessions_expired", "sessions_closed",
	"gro_receives", "gso_sends",
}

// String returns the event's name in metric form, e.g. "drop_oversized".
func (e ProxyEvent) String() string {
	if e < numProxyEvents {
		return proxyEventNames[e]
	}
	return "unknown"
}

// ProxyEvents lists every proxy event, in order.
func ProxyEvents() []ProxyEvent {
	out := make([]ProxyEvent, numProxyEvents)
	for i := range out {
		out[i] = ProxyEvent(i)
	}
	return out
}

// proxyCounters are one worker's counters: written by that worker only
// (no cache line is shared on the hot path), read by Stats.
type proxyCounters struct {
	c [numProxyEvents]atomic.Uint64
	_ [64]byte // keep the next worker's counters off this cache line
}

func (c *proxyCounters) add(e ProxyEvent, n uint64) { c.c[e].Add(n) }

// proxyBackendCounters count what one backend received and answered.
type proxyBackendCounters struct {
	packets, bytes  atomic.Uint64
	replies, rbytes atomic.Uint64
	sessions        atomic.Int64
	_               [64]byte
}

// ProxyStats are the userspace proxy's counters since the daemon started.
type ProxyStats struct {
	// Events are the proxy's own counters by ProxyEvent name.
	Events map[string]uint64 `json:"events"`
	// Reasons are the routing decision's counters by reason name, as XDP's
	// reason_stats counts them.
	Reasons map[string]uint64 `json:"reasons"`
	// Sessions is the number of open sessions; MaxSessions the bound.
	Sessions    int64 `json:"sessions"`
	MaxSessions int64 `json:"max_sessions"`
	// Services are the proxy-mode services served.
	Services []ProxyServiceStats `json:"services"`
	// Backends are the backends of those services.
	Backends []ProxyBackendStats `json:"backends"`
}

// ProxyServiceStats describe one proxy-mode service.
type ProxyServiceStats struct {
	Service string         `json:"service"`
	VIP     netip.AddrPort `json:"vip"`
	// Sockets is the number of SO_REUSEPORT sockets (one per worker).
	Sockets int `json:"sockets"`
	// GRO reports whether the kernel coalesces received datagrams.
	GRO bool `json:"gro"`
	// LocalRoute reports whether spooky added a local route for the VIP
	// (removed when the service stops).
	LocalRoute bool `json:"local_route"`
}

// ProxyBackendStats count one backend's traffic through the proxy.
type ProxyBackendStats struct {
	Service string         `json:"service"`
	Name    string         `json:"name"`
	Index   uint32         `json:"index"`
	Address netip.AddrPort `json:"address"`
	// Packets and Bytes went to the backend; Replies and ReplyBytes came
	// back from it to clients.
	Packets    uint64 `json:"packets"`
	Bytes      uint64 `json:"bytes"`
	Replies    uint64 `json:"replies"`
	ReplyBytes uint64 `json:"reply_bytes"`
	// Sessions is the number of open sessions to the backend.
	Sessions int64 `json:"sessions"`
}

// reasonNames returns the Router's reason counts by name.
func reasonCountsByName(c [bpf.NumReasons]uint64) map[string]uint64 {
	out := make(map[string]uint64, len(c))
	for i, v := range c {
		out[bpf.Reason(i).String()] = v
	}
	return out
}
