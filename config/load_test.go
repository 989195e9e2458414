package config

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// mustParse parses src and fails the test on any problem.
func mustParse(tb testing.TB, src string) *Config {
	tb.Helper()
	c, err := Parse([]byte(src), "test.yaml")
	if err != nil {
		tb.Fatalf("Parse:\n%v", err)
	}
	return c
}

// problems parses src, which must be invalid, and returns its problems as
// "line:col: message".
func problems(tb testing.TB, src string) []string {
	tb.Helper()
	c, err := Parse([]byte(src), "test.yaml")
	if err == nil {
		tb.Fatalf("Parse accepted the config: %+v", c)
	}
	if c != nil {
		tb.Errorf("Parse returned a config along with errors")
	}
	var es Errors
	if !errors.As(err, &es) {
		tb.Fatalf("Parse error is %T, want Errors: %v", err, err)
	}
	out := make([]string, len(es))
	for i, e := range es {
		if e.File != "test.yaml" {
			tb.Errorf("problem %q has file %q, want test.yaml", e.Msg, e.File)
		}
		out[i] = strings.TrimPrefix(e.Error(), "test.yaml:")
	}
	return out
}

const minimalL4 = `services:
  - name: web
    address: 198.18.0.10
    port: 443
    backends:
      - {name: b1, address: 198.18.1.1}
`

func TestParseAppliesDefaults(t *testing.T) {
	c := mustParse(t, minimalL4)
	want := &Config{
		Log:     LogConfig{Level: "info", Format: "text"},
		Admin:   AdminConfig{Socket: "/run/spooky/admin.sock"},
		Metrics: MetricsConfig{Path: "/metrics"},
		Services: []ServiceConfig{{
			Name: "web", Address: netip.MustParseAddr("198.18.0.10"), Port: 443,
			Mode: ModeL4, Forwarding: ForwardingL2DSR, Hash: HashSrcIP,
			MaglevSize: 65537, FlowTimeout: 60 * time.Second,
			Backends: []BackendConfig{{Name: "b1", Address: netip.MustParseAddr("198.18.1.1"), Weight: 100}},
		}},
		Proxy:    ProxyConfig{MaxSessions: DefaultProxyMaxSessions},
		SlowPath: SlowPathConfig{CIDCacheSize: DefaultCIDCacheSize, Rate: DefaultSlowPathRate, Burst: DefaultSlowPathBurst},
		// sha256sum of the file's bytes.
		SHA256: "73a6cbe096857ee8a6f6f7b6b2cb3e46856f9e953efaad125396532b88c48fba",
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got  %+v\nwant %+v", c, want)
	}
}

func TestParseKeepsExplicitValues(t *testing.T) {
	c := mustParse(t, `
log: {level: debug, format: json}
admin: {listen: "[::1]:9901"}
metrics: {listen: ":9100", path: /m}
services:
  - name: doq
    address: 2001:db8::53
    port: 853
    forwarding: ipip
    hash: 4-tuple
    strict: true
    maglev_size: 1009
    flow_timeout: 1m30s
    cid:
      - {config_id: 3, server_id_len: 2, nonce_len: 4, key: 000102030405060708090A0B0C0D0E0F}
    backends:
      - {name: a, address: "2001:db8:1::1", weight: 7, server_id: 0001}
    health_check: {type: http3, address: backend, port: 8443, interval: 500ms, jitter: 0, timeout: 100ms, rise: 1, fall: 1}
`)
	s := c.Services[0]
	want := ServiceConfig{
		Name: "doq", Address: netip.MustParseAddr("2001:db8::53"), Port: 853, Mode: ModeL4,
		Forwarding: ForwardingIPIP, Hash: Hash4Tuple, Strict: true, MaglevSize: 1009, FlowTimeout: 90 * time.Second,
		CID: []CIDConfig{{ConfigID: 3, ServerIDLen: 2, NonceLen: 4, Key: Hex{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}}},
		Backends: []BackendConfig{{Name: "a", Address: netip.MustParseAddr("2001:db8:1::1"), Weight: 7,
			ServerID: Hex{0x00, 0x01}}}, // unquoted 0001 is read as written, not as the integer 1
		HealthCheck: &HealthCheckConfig{Type: CheckHTTP3, Address: CheckAddressBackend, Port: 8443, Path: "/",
			ExpectStatus: []string{"200-399"}, Interval: 500 * time.Millisecond, Timeout: 100 * time.Millisecond,
			Rise: 1, Fall: 1}, // an explicit jitter: 0 stays 0
	}
	if !reflect.DeepEqual(s, want) {
		t.Errorf("service\ngot  %+v\nwant %+v", s, want)
	}
	if c.Log != (LogConfig{"debug", "json"}) || c.Admin != (AdminConfig{Listen: "[::1]:9901"}) || c.Metrics != (MetricsConfig{":9100", "/m"}) {
		t.Errorf("globals: %+v %+v %+v", c.Log, c.Admin, c.Metrics)
	}
	ccs, err := s.CIDConfigs()
	if err != nil || len(ccs) != 1 || ccs[0].ID != 3 || ccs[0].ServerIDLen != 2 || ccs[0].NonceLen != 4 || len(ccs[0].Key) != 16 {
		t.Errorf("CIDConfigs() = %+v, %v", ccs, err)
	}
}

func TestParseL7ServiceAndPools(t *testing.T) {
	c := mustParse(t, `
services:
  - name: edge
    address: 198.18.0.20
    port: 443
    mode: l7
    tls:
      - {server_names: [example.test], cert: ../examples/certs/example.test.crt, key: ../examples/certs/example.test.key}
    routes:
      - match: {path_prefix: /api/, methods: [GET], headers: {X-A: b}}
        pool: api
        transforms: {strip_prefix: /api, request_headers: {set: {X-B: c}, remove: [Cookie]}}
pools:
  - name: api
    upstreams: [{address: "h3://198.18.2.1:8443"}, {address: "https://backend.example.test", weight: 3}]
    retries: {count: 0}
`)
	s := c.Services[0]
	if s.Mode != ModeL7 || s.Forwarding != "" || s.MaglevSize != 0 {
		t.Errorf("l7 service got l4 defaults: %+v", s)
	}
	wantRoute := RouteConfig{
		Match: MatchConfig{PathPrefix: "/api/", Methods: []string{"GET"}, Headers: map[string]string{"X-A": "b"}},
		Pool:  "api", Timeout: 30 * time.Second,
		Transforms: TransformsConfig{StripPrefix: "/api", RequestHeaders: HeaderOps{Set: map[string]string{"X-B": "c"}, Remove: []string{"Cookie"}}},
		Tunnel:     TunnelConfig{IdleTimeout: DefaultTunnelIdleTimeout},
	}
	if !reflect.DeepEqual(s.Routes[0], wantRoute) {
		t.Errorf("route\ngot  %+v\nwant %+v", s.Routes[0], wantRoute)
	}
	// Relative certificate paths are resolved against the file's directory.
	if want := filepath.Join(".", "../examples/certs/example.test.crt"); s.TLS[0].Cert != want {
		t.Errorf("cert path = %q, want %q", s.TLS[0].Cert, want)
	}
	wantPool := PoolConfig{
		Name: "api", Policy: PolicyRoundRobin,
		Upstreams: []UpstreamConfig{{Address: "h3://198.18.2.1:8443", Weight: 1}, {Address: "https://backend.example.test", Weight: 3}},
		Retries:   RetryConfig{Count: 0, Budget: 5 * time.Second}, // an explicit 0 disables retries
		CircuitBreaker: CircuitBreakerConfig{ConsecutiveFailures: 5, ErrorRatio: 0.5, Window: 10 * time.Second,
			OpenFor: 10 * time.Second, HalfOpenProbes: 1},
	}
	if !reflect.DeepEqual(c.Pools[0], wantPool) {
		t.Errorf("pool\ngot  %+v\nwant %+v", c.Pools[0], wantPool)
	}
	if u := c.Pools[0].Upstreams[0].URL(); u == nil || u.Scheme != "h3" || u.Host != "198.18.2.1:8443" {
		t.Errorf("URL() = %v", u)
	}
}

func TestParseFollowsAnchorsAndMergeKeys(t *testing.T) {
	c := mustParse(t, `
x-check: &check {type: tcp, interval: 3s}
services:
  - name: a
    address: 198.18.0.10
    port: 443
    backends: &backends
      - {name: b1, address: 198.18.1.1}
    health_check:
      <<: *check
      interval: 4s
  - name: b
    address: 198.18.0.11
    port: 443
    backends: *backends
    health_check: *check
`)
	if got := c.Services[0].HealthCheck; got.Type != CheckTCP || got.Interval != 4*time.Second {
		t.Errorf("merged check = %+v, want type tcp and the explicit interval 4s", got)
	}
	if got := c.Services[1].HealthCheck; got.Type != CheckTCP || got.Interval != 3*time.Second {
		t.Errorf("aliased check = %+v, want type tcp, interval 3s", got)
	}
	if len(c.Services[1].Backends) != 1 || c.Services[1].Backends[0].Name != "b1" {
		t.Errorf("aliased backends = %+v", c.Services[1].Backends)
	}
}

func TestLoadReportsUnreadableFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "missing.yaml"))
	var es Errors
	if err == nil || errors.As(err, &es) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) = %v, want a plain not-exist error", err)
	}
}
