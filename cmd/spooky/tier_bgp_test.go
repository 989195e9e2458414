package main

import (
	"log/slog"
	"slices"
	"testing"

	"github.com/spooky-lb/spooky/config"
	"github.com/spooky-lb/spooky/health"
)

const tierBGPConfig = `
bgp:
  asn: 65001
  router_id: 192.0.2.11
  next_hop_ipv6: "2001:db8::11"
  peers:
    - {address: 192.0.2.1, asn: 65000}
  vips:
    - {address: 198.18.0.10, communities: ["65001:100"], med: 10}
services:
  - name: web
    address: 198.18.0.10
    port: 443
    backends:
      - {name: b1, address: 198.18.1.1}
      - {name: b2, address: 198.18.1.2}
  - name: web-alt
    address: 198.18.0.10
    port: 8443
    backends:
      - {name: b1, address: 198.18.1.1}
  - name: proxied
    address: 198.18.0.30
    port: 443
    forwarding: proxy
    backends:
      - {name: b1, address: 198.18.1.1}
  - name: edge
    address: "2001:db8::20"
    port: 443
    mode: l7
    tls:
      - {server_names: [example.test], cert: ../../examples/certs/example.test.crt, key: ../../examples/certs/example.test.key}
    routes:
      - {pool: api}
pools:
  - name: api
    upstreams:
      - address: https://198.18.2.1:8443
`

// desiredPrefixes lists the prefixes the tier would announce now.
func desiredPrefixes(t *testing.T, tier *bgpTier) []string {
	t.Helper()
	routes, err := tier.desired()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range routes {
		out = append(out, r.Prefix.String())
	}
	return out
}

func TestBGPTierAnnouncesEachServedVIPWithAHealthyTargetOnce(t *testing.T) {
	cfg, err := config.Parse([]byte(tierBGPConfig), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	reg := health.NewRegistry(nil)
	tier := &bgpTier{log: slog.New(slog.DiscardHandler), health: reg, l4: true, cfg: cfg}

	routes, err := tier.desired()
	if err != nil {
		t.Fatal(err)
	}
	// Two services share 198.18.0.10: one route.
	if got := desiredPrefixes(t, tier); !slices.Equal(got, []string{"198.18.0.10/32", "198.18.0.30/32", "2001:db8::20/128"}) {
		t.Fatalf("announces %v", got)
	}
	if r := routes[0]; !slices.Equal(r.Communities, []uint32{65001<<16 | 100}) || !r.HasMED || r.MED != 10 || r.NextHop.IsValid() {
		t.Errorf("route %v: want community 65001:100, MED 10, the session's own next hop", r)
	}
	if r := routes[2]; r.NextHop.String() != "2001:db8::11" || len(r.Communities) != 0 || r.HasMED {
		t.Errorf("route %v: want next hop 2001:db8::11 and no attributes", r)
	}

	t.Run("without XDP only l7 and proxy VIPs are served", func(t *testing.T) {
		serve := &bgpTier{log: tier.log, health: reg, cfg: cfg}
		if got := desiredPrefixes(t, serve); !slices.Equal(got, []string{"198.18.0.30/32", "2001:db8::20/128"}) {
			t.Errorf("spooky serve announces %v", got)
		}
	})

	t.Run("a VIP goes when its last backend is unhealthy or draining, in every service at that address", func(t *testing.T) {
		reg.Report(health.Backend("web", "b1"), health.Active, health.Unhealthy, "down")
		reg.Report(health.Backend("web", "b2"), health.Operator, health.Draining, "drained")
		if got := desiredPrefixes(t, tier); !slices.Contains(got, "198.18.0.10/32") {
			t.Errorf("announces %v: web-alt still has a healthy backend", got)
		}
		reg.Report(health.Backend("web-alt", "b1"), health.Active, health.Unhealthy, "down")
		if got := desiredPrefixes(t, tier); !slices.Equal(got, []string{"198.18.0.30/32", "2001:db8::20/128"}) {
			t.Errorf("announces %v with no usable backend at 198.18.0.10", got)
		}
		reg.Clear(health.Backend("web", "b2"), health.Operator)
		if got := desiredPrefixes(t, tier); !slices.Contains(got, "198.18.0.10/32") {
			t.Errorf("announces %v after web/b2 was undrained", got)
		}
	})

	t.Run("an l7 VIP goes with the last healthy upstream of its pools", func(t *testing.T) {
		reg.Report(health.Upstream("https://198.18.2.1:8443"), health.Passive, health.Unhealthy, "breaker open")
		if got := desiredPrefixes(t, tier); slices.Contains(got, "2001:db8::20/128") {
			t.Errorf("announces %v with the only upstream unhealthy", got)
		}
	})

	t.Run("drain --all and shutdown withdraw everything", func(t *testing.T) {
		reg.Clear(health.Upstream("https://198.18.2.1:8443"), health.Passive)
		tier.withdrawn = true
		if got := desiredPrefixes(t, tier); len(got) != 0 {
			t.Errorf("withdrawn, announces %v", got)
		}
		tier.withdrawn = false
		if got := desiredPrefixes(t, tier); len(got) != 3 {
			t.Errorf("undrained, announces %v", got)
		}
		tier.stopping = true
		if got := desiredPrefixes(t, tier); len(got) != 0 {
			t.Errorf("stopping, announces %v", got)
		}
	})
}
