package metrics

import (
	"net/netip"
	"testing"
	"time"

	"github.com/spooky-lb/spooky/forwarder"
	"github.com/spooky-lb/spooky/health"
)

// fakeStats returns XDP counters as forwarder.ReadStats would sum them:
// two VIPs of service web, two named backends and one removed slot.
func fakeStats() *forwarder.Stats {
	return &forwarder.Stats{
		VIPs: []forwarder.VIPStats{
			{ID: 0, Service: "web", Address: netip.MustParseAddrPort("198.18.0.10:443"), Mode: "l4",
				Packets: 20, Bytes: 24000, CID: 10, CIDCache: 2, Flow: 3, Maglev: 5},
			{ID: 1, Service: "web", Address: netip.MustParseAddrPort("[2001:db8::10]:443"), Mode: "l4",
				Packets: 7, Bytes: 9100, CID: 0, CIDCache: 0, Flow: 1, Maglev: 6},
		},
		Backends: []forwarder.BackendStats{
			{Index: 0, Name: "web/b1", Address: netip.MustParseAddr("198.18.1.1"), State: "healthy", Packets: 15, Bytes: 18000},
			{Index: 1, Name: "web/b2", Address: netip.MustParseAddr("198.18.1.2"), State: "draining", Packets: 12, Bytes: 15100},
			// A slot a reload emptied, with counts from before.
			{Index: 2, Name: "", State: "removed", Packets: 99, Bytes: 99000},
		},
		Reasons: map[string]uint64{
			"tx": 27, "pass_not_vip": 4, "pass_l7": 2, "drop_truncated": 1,
			"not_quic": 3, "cid_unknown_server": 0,
		},
	}
}

// fixture is a Metrics fed with known data through every entry point.
type fixture struct {
	m      *Metrics
	reg    *health.Registry
	before time.Time // just before the health reports
	after  time.Time // just after
}

// mustPopulated returns metrics with fake XDP counters, a real health
// registry with reported targets, and requests, connections, breakers,
// checks and reloads observed.
func mustPopulated(tb testing.TB) fixture {
	tb.Helper()
	reg := health.NewRegistry(nil)
	m := New(Options{
		Version:  "v1.2.3",
		XDPStats: func() (*forwarder.Stats, error) { return fakeStats(), nil },
		Health:   reg,
		BGP: func() *BGPState {
			return &BGPState{
				Peers:  []BGPPeer{{Address: "198.18.0.254", ASN: 65000, Established: true}, {Address: "2001:db8::fe", ASN: 65000}},
				Routes: []string{"198.18.0.10/32"},
			}
		},
	})
	f := fixture{m: m, reg: reg, before: time.Now()}
	reg.Report(health.Backend("web", "b1"), health.Active, health.Healthy, "200 OK in 2ms")
	reg.Report(health.Backend("web", "b2"), health.Operator, health.Draining, "maintenance")
	reg.Report(health.Upstream("198.18.2.1:8080"), health.Active, health.Unhealthy, "connection refused")
	f.after = time.Now()

	m.ObserveRequest("api", "users", "pool-a", "198.18.2.1:8080", 200, 3*time.Millisecond)
	m.ObserveRequest("api", "users", "pool-a", "198.18.2.1:8080", 204, 40*time.Millisecond)
	m.ObserveRequest("api", "users", "pool-a", "198.18.2.1:8080", 503, 2*time.Second)
	m.ObserveRequest("api", "", "", "", 404, 100*time.Microsecond)

	m.ConnOpened("api", ProtoQUIC)
	m.ConnOpened("api", ProtoQUIC)
	m.ConnOpened("api", ProtoTCP)
	m.ConnClosed("api", ProtoQUIC)

	m.TunnelOpened("api", "chat", "websocket")
	m.TunnelBytes("api", "chat", "websocket", "up", 100)
	m.TunnelBytes("api", "chat", "websocket", "down", 250)
	m.TunnelOpened("api", "chat", "websocket")
	m.TunnelClosed("api", "chat", "websocket")

	m.SetBreakerState("198.18.2.1:8080", "open")
	m.SetBreakerState("198.18.2.2:8080", "closed")

	m.ObserveCheck(health.Backend("web", "b1"), "http3", true, 2*time.Millisecond)
	m.ObserveCheck(health.Backend("web", "b1"), "http3", true, 3*time.Millisecond)
	m.ObserveCheck(health.Upstream("198.18.2.1:8080"), "tcp", false, time.Second)

	m.ObserveReload(true, "aaaa")
	m.ObserveReload(false, "bbbb")
	return f
}
