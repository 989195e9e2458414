package health

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/spooky-lb/spooky/config"
)

const (
	exampleCert = "../examples/certs/example.test.crt"
	exampleKey  = "../examples/certs/example.test.key"
)

func mustParse(tb testing.TB, src string) *config.Config {
	tb.Helper()
	c, err := config.Parse([]byte(src), "test.yaml")
	if err != nil {
		tb.Fatalf("parse:\n%v", err)
	}
	return c
}

// byTarget indexes probes and fails on a target listed twice.
func byTarget(tb testing.TB, ps []Probe) map[Target]Probe {
	tb.Helper()
	m := map[Target]Probe{}
	for _, p := range ps {
		if _, dup := m[p.Target]; dup {
			tb.Fatalf("target %v probed twice", p.Target)
		}
		m[p.Target] = p
	}
	return m
}

func TestProbesFromConfigForBackends(t *testing.T) {
	cfg := mustParse(t, `services:
  - name: web
    address: 198.18.0.10
    port: 443
    backends:
      - {name: b1, address: 198.18.1.1}
      - {name: b2, address: 198.18.1.2}
    health_check: {type: quic, interval: 500ms, timeout: 200ms, rise: 1, fall: 2}
  - name: direct
    address: 198.18.0.11
    port: 443
    forwarding: proxy
    backends:
      - {name: b1, address: 198.18.1.1, port: 8443}
    health_check: {type: http3, address: backend, path: /healthz, server_name: b1.example.test, tls: {ca: `+exampleCert+`}}
  - name: other-port
    address: 198.18.0.12
    port: 443
    backends: [{name: b1, address: 198.18.1.1}]
    health_check: {type: tcp, port: 8080}
  - name: unchecked
    address: 198.18.0.13
    port: 443
    backends: [{name: b1, address: 198.18.1.1}]
`)
	steerB1 := func(service, backend string) (uint32, bool) {
		if backend == "b1" {
			return 0x100 + uint32(len(service)), true
		}
		return 0, false
	}
	for _, tc := range []struct {
		name  string
		steer Steer
		want  map[Target]Probe
	}{
		{
			name:  "a vip check probes the VIP with the backend's mark, and a backend without one at its own address",
			steer: steerB1,
			want: map[Target]Probe{
				Backend("web", "b1"): {Type: config.CheckQUIC, Addr: "198.18.0.10:443", Mark: 0x103, ALPN: "h3"},
				Backend("web", "b2"): {Type: config.CheckQUIC, Addr: "198.18.1.2:443", ALPN: "h3"},
				Backend("direct", "b1"): {Type: config.CheckHTTP3, Addr: "198.18.1.1:8443", Path: "/healthz",
					ExpectStatus: []config.StatusRange{{Lo: 200, Hi: 399}},
					TLS:          ProbeTLS{ServerName: "b1.example.test", CAFile: exampleCert, Verify: true}},
				Backend("other-port", "b1"): {Type: config.CheckTCP, Addr: "198.18.0.12:8080", Mark: 0x10a},
			},
		},
		{
			name: "without a steer every backend is probed at its own address",
			want: map[Target]Probe{
				Backend("web", "b1"): {Type: config.CheckQUIC, Addr: "198.18.1.1:443", ALPN: "h3"},
				Backend("web", "b2"): {Type: config.CheckQUIC, Addr: "198.18.1.2:443", ALPN: "h3"},
				Backend("direct", "b1"): {Type: config.CheckHTTP3, Addr: "198.18.1.1:8443", Path: "/healthz",
					ExpectStatus: []config.StatusRange{{Lo: 200, Hi: 399}},
					TLS:          ProbeTLS{ServerName: "b1.example.test", CAFile: exampleCert, Verify: true}},
				Backend("other-port", "b1"): {Type: config.CheckTCP, Addr: "198.18.1.1:8080"},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := byTarget(t, ProbesFromConfig(cfg, tc.steer))
			if len(got) != len(tc.want) {
				t.Fatalf("got %d probes, want %d: %+v", len(got), len(tc.want), got)
			}
			for target, w := range tc.want {
				g, ok := got[target]
				if !ok {
					t.Fatalf("no probe of %v", target)
				}
				// Timing comes from the check as parsed.
				h := cfgCheck(cfg, target.Group)
				w.Target, w.Interval, w.Jitter, w.Timeout, w.Rise, w.Fall = target, h.Interval, h.Jitter, h.Timeout, h.Rise, h.Fall
				if !reflect.DeepEqual(g, w) {
					t.Errorf("probe of %v\ngot  %+v\nwant %+v", target, g, w)
				}
			}
		})
	}
	if p := byTarget(t, ProbesFromConfig(cfg, nil))[Backend("web", "b1")]; p.Interval != 500*time.Millisecond || p.Timeout != 200*time.Millisecond ||
		p.Rise != 1 || p.Fall != 2 || p.Jitter != 0.1 {
		t.Errorf("timing of web/b1 = %+v", p)
	}
}

func cfgCheck(cfg *config.Config, service string) *config.HealthCheckConfig {
	for _, s := range cfg.Services {
		if s.Name == service {
			return s.HealthCheck
		}
	}
	return nil
}

func TestProbesFromConfigForUpstreams(t *testing.T) {
	cfg := mustParse(t, fmt.Sprintf(`services:
  - name: edge
    address: 198.18.0.20
    port: 443
    mode: l7
    tls: [{server_names: [example.test], cert: %[1]s, key: %[2]s}]
    routes: [{pool: api}, {pool: conn}, {pool: again}]
pools:
  - name: api
    upstreams:
      - {address: "https://198.18.2.1"}
      - {address: "h3://api.example.test:8443", tls: {ca: %[1]s, server_name: api.example.test}}
      - {address: "http://198.18.2.3:8080"}
      - {address: "h2c://198.18.2.4:8080"}
      - {address: "https://198.18.2.5", tls: {server_name: five.example.test, insecure_skip_verify: true}}
    health_check: {type: https, path: /healthz, host: api.example.test, body: ok, expect_status: [2xx]}
  - name: conn
    upstreams:
      - {address: "https://198.18.3.1"}
      - {address: "h3://198.18.3.2"}
      - {address: "http://198.18.3.3"}
    health_check: {type: tcp, port: 9000}
  - name: again
    upstreams:
      - {address: "https://198.18.2.1"}
      - {address: "h3://198.18.3.2"}
      - {address: "h3://198.18.3.9"}
    health_check: {type: quic, alpn: h3-29, server_name: pinned.example.test}
`, exampleCert, exampleKey))
	got := byTarget(t, ProbesFromConfig(cfg, func(string, string) (uint32, bool) { return 9, true }))
	http := func(typ config.CheckType, addr string) Probe {
		return Probe{Type: typ, Addr: addr, Path: "/healthz", Host: "api.example.test", Body: "ok",
			ExpectStatus: []config.StatusRange{{Lo: 200, Hi: 299}}}
	}
	want := map[string]Probe{
		"https://198.18.2.1": withTLS(http(config.CheckHTTPS, "198.18.2.1:443"), ProbeTLS{ServerName: "198.18.2.1"}),
		"h3://api.example.test:8443": withTLS(http(config.CheckHTTP3, "api.example.test:8443"),
			ProbeTLS{ServerName: "api.example.test", CAFile: exampleCert, Verify: true}),
		"http://198.18.2.3:8080": http(config.CheckHTTP, "198.18.2.3:8080"),
		"h2c://198.18.2.4:8080":  withH2C(http(config.CheckHTTP, "198.18.2.4:8080")),
		"https://198.18.2.5":     withTLS(http(config.CheckHTTPS, "198.18.2.5:443"), ProbeTLS{ServerName: "five.example.test"}),
		"https://198.18.3.1":     {Type: config.CheckTCP, Addr: "198.18.3.1:9000"},
		"h3://198.18.3.2":        {Type: config.CheckQUIC, Addr: "198.18.3.2:9000", ALPN: "h3", TLS: ProbeTLS{ServerName: "198.18.3.2"}},
		"http://198.18.3.3":      {Type: config.CheckTCP, Addr: "198.18.3.3:9000"},
		"h3://198.18.3.9": {Type: config.CheckQUIC, Addr: "198.18.3.9:443", ALPN: "h3-29",
			TLS: ProbeTLS{ServerName: "pinned.example.test", Verify: true}},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d probes, want %d (an upstream in several pools once)", len(got), len(want))
	}
	for name, w := range want {
		g, ok := got[Upstream(name)]
		if !ok {
			t.Fatalf("no probe of upstream %s", name)
		}
		g.Interval, g.Jitter, g.Timeout, g.Rise, g.Fall = 0, 0, 0, 0, 0
		w.Target = Upstream(name)
		if !reflect.DeepEqual(g, w) {
			t.Errorf("probe of %s\ngot  %+v\nwant %+v", name, g, w)
		}
	}
}

func withTLS(p Probe, t ProbeTLS) Probe { p.TLS = t; return p }
func withH2C(p Probe) Probe             { p.H2C = true; return p }

func TestProbesFromTheExampleFile(t *testing.T) {
	cfg, err := config.Load("../examples/spooky.yaml")
	if err != nil {
		t.Fatal(err)
	}
	got := byTarget(t, ProbesFromConfig(cfg, nil))
	// 3 web and 2 dns-over-quic backends, 2 api and 2 static upstreams.
	if len(got) != 9 {
		t.Fatalf("got %d probes, want 9", len(got))
	}
	if p := got[Backend("dns-over-quic", "doq-1")]; p.Type != config.CheckQUIC || p.ALPN != "h3" || p.Addr != "[2001:db8:1::1]:853" || p.TLS.Verify {
		t.Errorf("doq-1 probe = %+v", p)
	}
	if p := got[Upstream("h2c://198.18.3.1:8080")]; p.Type != config.CheckHTTP || !p.H2C {
		t.Errorf("h2c upstream probe = %+v", p)
	}
	for _, p := range got {
		if pr, err := newProber(p.withDefaults()); err != nil {
			t.Errorf("probe of %v cannot be built: %v", p.Target, err)
		} else {
			pr.close()
		}
	}
}
