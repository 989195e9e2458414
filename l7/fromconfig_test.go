package l7

import (
	"reflect"
	"testing"
	"time"

	"github.com/spooky-lb/spooky/config"
)

func TestFromConfigMapsTheExampleConfig(t *testing.T) {
	cfg, err := config.Load("../examples/spooky.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := FromConfig(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Services) != 1 || c.Services[0].Name != "edge" {
		t.Fatalf("services = %+v, want the one l7 service edge", c.Services)
	}
	svc := c.Services[0]
	if svc.Address != "198.18.0.20:443" || !svc.TCP || svc.ConnectionIDGenerator == nil {
		t.Errorf("edge = address %q tcp %v cid generator %v; want 198.18.0.20:443, tcp, a generator", svc.Address, svc.TCP, svc.ConnectionIDGenerator)
	}
	if len(svc.Routes) != 3 {
		t.Fatalf("edge has %d routes, want 3", len(svc.Routes))
	}
	r := svc.Routes[0]
	if r.Pool != "api" || r.Match.PathPrefix != "/v1/" || len(r.Match.Hosts) != 1 || r.Transforms.StripPrefix != "/v1" || r.Transforms.Host != "api.internal" {
		t.Errorf("first route = %+v", r)
	}
	if len(c.Pools) != 2 {
		t.Fatalf("%d pools, want 2", len(c.Pools))
	}
	// A config must be accepted by the tier itself, certificates included.
	if _, err := New(c); err != nil {
		t.Fatalf("New(FromConfig(example)): %v", err)
	}
}

func TestFromConfigMapsUpstreamSchemesAndRetries(t *testing.T) {
	tests := []struct {
		address   string
		want      Protocol
		wantTLS   bool
		wantAddr  string
		retries   int
		wantRetry int
	}{
		{"http://198.18.1.1", ProtoH1, false, "198.18.1.1:80", 2, 2},
		{"https://198.18.1.1:8443", ProtoH1, true, "198.18.1.1:8443", 1, 1},
		{"h2c://198.18.1.1:8080", ProtoH2C, false, "198.18.1.1:8080", 0, -1},
		{"h3://[2001:db8::1]", ProtoH3, true, "[2001:db8::1]:443", 3, 3},
	}
	for _, tt := range tests {
		t.Run(tt.address+" becomes "+string(tt.want), func(t *testing.T) {
			p, err := poolFromConfig(config.PoolConfig{Name: "p", Upstreams: []config.UpstreamConfig{{Address: tt.address}}})
			if err != nil {
				t.Fatal(err)
			}
			u := p.Upstreams[0]
			if u.Protocol != tt.want || u.TLS != tt.wantTLS || u.Address != tt.wantAddr {
				t.Errorf("upstream = %s tls=%v %s; want %s tls=%v %s", u.Protocol, u.TLS, u.Address, tt.want, tt.wantTLS, tt.wantAddr)
			}
			if got := retryFromConfig(config.RetryConfig{Count: tt.retries}).Attempts; got != tt.wantRetry {
				t.Errorf("retries %d map to %d attempts, want %d", tt.retries, got, tt.wantRetry)
			}
		})
	}
}

func TestFromConfigMapsTunnelSettings(t *testing.T) {
	off := false
	for _, tc := range []struct {
		name string
		in   config.RouteConfig
		want TunnelConfig
	}{
		{"a route without settings proxies WebSockets and refuses CONNECT", config.RouteConfig{}, TunnelConfig{}},
		{"websocket: false turns WebSockets off", config.RouteConfig{WebSocket: &off}, TunnelConfig{DisableWebSocket: true}},
		{"limits and destinations are passed on", config.RouteConfig{
			Tunnel:  config.TunnelConfig{IdleTimeout: time.Minute, MaxLifetime: time.Hour},
			Connect: &config.ConnectConfig{Allow: []string{"db.test:5432"}, DialTimeout: time.Second, UDP: true},
		}, TunnelConfig{IdleTimeout: time.Minute, MaxLifetime: time.Hour, Connect: &ConnectConfig{Allow: []string{"db.test:5432"}, DialTimeout: time.Second, UDP: true}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tunnelFromConfig(&tc.in); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}
