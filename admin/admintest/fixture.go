package admintest

import (
	"net/netip"
	"time"

	"github.com/spooky-lb/spooky/admin"
	"github.com/spooky-lb/spooky/config"
)

// Loaded is when the fixture's configuration was loaded.
var Loaded = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// New returns a Daemon serving a fixed status: an l4 service "web" with a
// healthy backend b1 and an unhealthy b2, and an l7 service "edge" whose
// pool "api" has a healthy upstream and one with an open breaker.
func New() *Daemon {
	at := func(min int) time.Time { return Loaded.Add(time.Duration(min) * time.Minute) }
	return &Daemon{
		Now: func() time.Time { return at(30) },
		St: admin.Status{
			Config: admin.ConfigInfo{
				Path:     "/etc/spooky/spooky.yaml",
				SHA256:   "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
				LoadedAt: Loaded,
				LastReload: &admin.ReloadOutcome{
					At: at(10), OK: false,
					Error: "/etc/spooky/spooky.yaml:4:11: port: 70000 is out of range 1..65535",
				},
			},
			Services: []admin.Service{
				{
					Name: "web", Address: netip.MustParseAddr("198.18.0.10"), Port: 443,
					Mode: config.ModeL4, Forwarding: config.ForwardingL2DSR,
					Backends: []admin.Backend{
						{
							Name: "b1", Address: netip.MustParseAddr("198.18.1.1"), Port: 443, Weight: 100,
							Health:  admin.Health{State: "healthy", Reason: "handshake in 3ms", Since: at(1)},
							Packets: 12345, Bytes: 9876543,
						},
						{
							Name: "b2", Address: netip.MustParseAddr("198.18.1.2"), Port: 443, Weight: 50,
							Health:  admin.Health{State: "unhealthy", Reason: "no handshake in 1s", Source: "active", Since: at(5)},
							Packets: 7, Bytes: 8400,
						},
					},
				},
				{
					Name: "edge", Address: netip.MustParseAddr("2001:db8::20"), Port: 443,
					Mode: config.ModeL7, Backends: []admin.Backend{}, Pools: []string{"api"},
				},
			},
			Pools: []admin.Pool{
				{
					Name: "api", Policy: config.PolicyRoundRobin,
					Upstreams: []admin.Upstream{
						{
							Name: "https://198.18.2.1:8443", Weight: 1,
							Health:  admin.Health{State: "healthy"},
							Breaker: admin.BreakerClosed, InFlight: 3, Requests: 1000,
						},
						{
							Name: "h3://198.18.2.2:8443", Weight: 1,
							Health:  admin.Health{State: "unhealthy", Reason: "breaker open: 5 consecutive failures", Source: "passive", Since: at(20)},
							Breaker: admin.BreakerOpen, Requests: 17,
						},
					},
				},
				{
					Name: "static", Policy: config.PolicyP2C, Upstreams: []admin.Upstream{},
				},
			},
		},
	}
}
