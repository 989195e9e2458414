// Package config holds spooky's YAML configuration: the schema as plain
// structs, the defaults, validation that reports every problem with the file,
// line and column of the node that causes it, loading, and the diff a reload
// applies.
//
// The pipeline is Parse (YAML → AST → structs, recording each node's
// position) → defaults → validation. Defaults fill only fields the file leaves
// out, so an explicit "weight: 0" is reported as an error rather than
// silently replaced.
//
// Top-level keys starting with "x-" are ignored (their anchors can be used
// elsewhere), so repeated blocks can be written once. Anything else unknown
// is an error, as is every value that is out of range, inconsistent or
// refers to something that does not exist: see validate.go.
package config

import (
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/netip"
	"net/url"
	"time"

	"github.com/spooky-lb/spooky/cid"
)

// DefaultPath is where the spooky commands look for the configuration file
// when not told otherwise.
const DefaultPath = "/etc/spooky/spooky.yaml"

// Defaults for fields left out of the file.
const (
	DefaultLogLevel          = "info"
	DefaultLogFormat         = "text"
	DefaultAdminSocket       = "/run/spooky/admin.sock"
	DefaultMetricsPath       = "/metrics"
	DefaultForwarding        = ForwardingL2DSR
	DefaultHash              = HashSrcIP
	DefaultMaglevSize        = 65537 // prime; ≥ 100 × backends keeps imbalance near 1% (Maglev paper §3.4)
	DefaultFlowTimeout       = 60 * time.Second
	DefaultBackendWeight     = 100
	DefaultUpstreamWeight    = 1
	DefaultPolicy            = PolicyRoundRobin
	DefaultRouteTimeout      = 30 * time.Second
	DefaultRetryCount        = 2
	DefaultRetryBudget       = 5 * time.Second
	DefaultBreakerFailures   = 5
	DefaultBreakerErrorRatio = 0.5
	DefaultBreakerWindow     = 10 * time.Second
	DefaultBreakerOpenFor    = 10 * time.Second
	DefaultBreakerProbes     = 1
)

// Config is the whole configuration file.
type Config struct {
	Log     LogConfig     `yaml:"log"`
	Admin   AdminConfig   `yaml:"admin"`
	Metrics MetricsConfig `yaml:"metrics"`
	// Services are the virtual services (VIP address and port). At least one
	// is required; at most bpf.MaxVIPs, not counting l4 services with
	// forwarding proxy, which stay out of the XDP maps.
	Services []ServiceConfig `yaml:"services"`
	// Pools are the upstream pools that l7 routes name.
	Pools []PoolConfig `yaml:"pools"`
	// BGP, if set, announces the VIPs to routers (config/bgp.go).
	BGP *BGPConfig `yaml:"bgp"`
	// Proxy configures the userspace proxy (forwarding: proxy).
	Proxy ProxyConfig `yaml:"proxy"`
	// SlowPath tunes the routing of encrypted connection IDs (slowpath.go).
	SlowPath SlowPathConfig `yaml:"slow_path"`

	// SHA256 is the hex SHA-256 of the file Parse read, so operators can
	// tell which file is running (admin API, spooky_config_info). Not
	// part of the file.
	SHA256 string `yaml:"-"`
}

// LogConfig sets up log/slog.
type LogConfig struct {
	// Level is debug, info, warn or error. If empty, info.
	Level string `yaml:"level"`
	// Format is text or json. If empty, text.
	Format string `yaml:"format"`
}

// SlogLevel returns Level as a slog.Level (info for anything unknown, which
// validation has already rejected).
func (l LogConfig) SlogLevel() slog.Level {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(l.Level)); err != nil {
		return slog.LevelInfo
	}
	return lv
}

// AdminConfig says where the admin API listens: a unix socket or a loopback
// TCP address, not both.
type AdminConfig struct {
	// Socket is an absolute path for a unix socket (created mode 0600). If
	// both Socket and Listen are empty, /run/spooky/admin.sock.
	Socket string `yaml:"socket"`
	// Listen is a loopback host:port, e.g. 127.0.0.1:9901.
	Listen string `yaml:"listen"`
}

// MetricsConfig says where Prometheus metrics are served.
type MetricsConfig struct {
	// Listen is host:port. If empty, metrics are not served.
	Listen string `yaml:"listen"`
	// Path is the URL path. If empty, /metrics.
	Path string `yaml:"path"`
}

// Mode says which tier handles a service.
type Mode string

// Modes.
const (
	// ModeL4 steers datagrams to backends without terminating QUIC.
	ModeL4 Mode = "l4"
	// ModeL7 terminates QUIC/TLS in spooky's HTTP/3 tier and routes requests.
	ModeL7 Mode = "l7"
)

// Forwarding is how the packet tier delivers a datagram to a backend.
type Forwarding string

// Forwarding modes (DESIGN.md, "Forwarding modes").
const (
	// ForwardingL2DSR rewrites the destination MAC; backends hold the VIP.
	ForwardingL2DSR Forwarding = "l2dsr"
	// ForwardingIPIP encapsulates in an outer IP header toward the backend.
	ForwardingIPIP Forwarding = "ipip"
	// ForwardingProxy is a full UDP proxy in userspace (no XDP fast path).
	ForwardingProxy Forwarding = "proxy"
)

// HashKind is what the Maglev lookup hashes.
type HashKind string

// Hash kinds.
const (
	// HashSrcIP hashes the client's address, so one client sticks to one backend.
	HashSrcIP HashKind = "src-ip"
	// Hash4Tuple hashes addresses and ports.
	Hash4Tuple HashKind = "4-tuple"
)

// Policy is how an l7 pool picks an upstream.
type Policy string

// Pool selection policies.
const (
	PolicyRandom             Policy = "random"
	PolicyRoundRobin         Policy = "round_robin"
	PolicyWeightedRoundRobin Policy = "weighted_round_robin"
	PolicyLeastConn          Policy = "least_conn"
	PolicyIPHash             Policy = "ip_hash"
	PolicyLeastResponseTime  Policy = "least_response_time"
	PolicyP2C                Policy = "p2c"
)

// CheckType is the protocol of an active health check.
type CheckType string

// Health check types.
const (
	CheckHTTP3 CheckType = "http3"
	CheckHTTPS CheckType = "https"
	CheckHTTP  CheckType = "http"
	CheckTCP   CheckType = "tcp"
	CheckQUIC  CheckType = "quic" // QUIC handshake only
)

// IsHTTP reports whether the check sends an HTTP request (and so has a path).
func (t CheckType) IsHTTP() bool { return t == CheckHTTP3 || t == CheckHTTPS || t == CheckHTTP }

// Hex is a byte string written in YAML as hexadecimal digits ("00ff").
// Unquoted digits are read as written, so server_id: 0001 is two octets.
type Hex []byte

// String returns the lowercase hex form.
func (h Hex) String() string { return hex.EncodeToString(h) }

// ServiceConfig is one virtual service: a VIP address and UDP port.
type ServiceConfig struct {
	// Name identifies the service in logs, metrics and the admin API. Required.
	Name string `yaml:"name"`
	// Address is the VIP, IPv4 or IPv6. Required.
	Address netip.Addr `yaml:"address"`
	// Port is the UDP port, 1..65535. Required.
	Port int `yaml:"port"`
	// Mode is l4 or l7. If empty, l4.
	Mode Mode `yaml:"mode"`

	// Forwarding (l4) is l2dsr, ipip or proxy. If empty, l2dsr.
	Forwarding Forwarding `yaml:"forwarding"`
	// Hash (l4) is src-ip or 4-tuple. If empty, src-ip.
	Hash HashKind `yaml:"hash"`
	// Strict (l4) drops datagrams that are not QUIC instead of hashing them.
	Strict bool `yaml:"strict"`
	// MaglevSize (l4) is the lookup table size: prime, at least 100 × the
	// number of backends and at most bpf.MaglevMaxSize (65537), the largest
	// table the XDP maps hold; with more than 655 backends, 65537 itself.
	// If zero, 65537.
	MaglevSize int `yaml:"maglev_size"`
	// FlowTimeout (l4) is how long an idle flow-table entry lasts. If zero, 60s.
	FlowTimeout time.Duration `yaml:"flow_timeout"`
	// Backends (l4) receive the service's datagrams. At least one; at most
	// bpf.MaxBackends over all services whose packets XDP forwards.
	Backends []BackendConfig `yaml:"backends"`

	// CID are the QUIC-LB configurations whose connection IDs route to this
	// service's backends (draft-ietf-quic-load-balancers-21 §5.3). Optional.
	CID []CIDConfig `yaml:"cid"`
	// HealthCheck (l4) probes every backend. If nil, backends are not
	// actively checked and count as healthy.
	HealthCheck *HealthCheckConfig `yaml:"health_check"`

	// TLS (l7) are the certificates, chosen by SNI. At least one.
	TLS []TLSConfig `yaml:"tls"`
	// L7ServerID (l7) is the request tier's own server ID in the CID space.
	// Required when CID is set; exactly ServerIDLen octets.
	L7ServerID Hex `yaml:"l7_server_id"`
	// TCPListener (l7) also serves HTTP/1.1 and HTTP/2 over TLS on the same
	// port over TCP, advertising HTTP/3 with Alt-Svc.
	TCPListener bool `yaml:"tcp_listener"`
	// Allow0RTT (l7) accepts 0-RTT (early) data; replayable, so off by default.
	Allow0RTT bool `yaml:"allow_0rtt"`
	// Routes (l7) are tried in order; the first match picks the pool. At least one.
	Routes []RouteConfig `yaml:"routes"`
}

// AddrPort returns the service's VIP and port.
func (s *ServiceConfig) AddrPort() netip.AddrPort {
	return netip.AddrPortFrom(s.Address, uint16(s.Port))
}

// CIDConfigs converts the service's QUIC-LB configurations for package cid.
// It fails only on a configuration that validation rejects.
func (s *ServiceConfig) CIDConfigs() ([]cid.Config, error) {
	out := make([]cid.Config, 0, len(s.CID))
	for _, c := range s.CID {
		cc, err := c.Config()
		if err != nil {
			return nil, fmt.Errorf("service %q: %w", s.Name, err)
		}
		out = append(out, cc)
	}
	return out, nil
}

// CIDConfig is one QUIC-LB configuration (draft-ietf-quic-load-balancers-21 §5.3).
type CIDConfig struct {
	// ConfigID is the config rotation codepoint, 0..6.
	ConfigID int `yaml:"config_id"`
	// ServerIDLen is the server ID length in octets. Required.
	ServerIDLen int `yaml:"server_id_len"`
	// NonceLen is the nonce length in octets, at least 4. Required.
	NonceLen int `yaml:"nonce_len"`
	// Key is 32 hex digits (AES-128). If empty, connection IDs are plaintext.
	Key Hex `yaml:"key"`
}

// Config converts c for package cid and validates it there.
func (c CIDConfig) Config() (cid.Config, error) {
	if c.ConfigID < 0 || c.ConfigID > 255 {
		return cid.Config{}, fmt.Errorf("%w: config ID %d out of range 0..%d", cid.ErrInvalidConfig, c.ConfigID, cid.MaxConfigID)
	}
	cc := cid.Config{ID: uint8(c.ConfigID), ServerIDLen: c.ServerIDLen, NonceLen: c.NonceLen}
	if len(c.Key) > 0 {
		cc.Key = []byte(c.Key)
	}
	if err := cc.Validate(); err != nil {
		return cid.Config{}, err
	}
	return cc, nil
}

// BackendConfig is one l4 backend.
type BackendConfig struct {
	// Name identifies the backend (admin API, metrics). Required; unique in
	// the service.
	Name string `yaml:"name"`
	// Address is the backend's IP: unicast and reachable the way the
	// service forwards (not loopback unless forwarding is proxy, not IPv6
	// link-local, not IPv4 link-local with ipip). Required.
	Address netip.Addr `yaml:"address"`
	// Port is where the backend listens. If zero, the service's port. Only
	// forwarding: proxy may change the port.
	Port int `yaml:"port"`
	// Weight is the backend's share in the Maglev table, > 0. If zero, 100.
	Weight int `yaml:"weight"`
	// ServerID is the backend's QUIC-LB server ID: exactly server_id_len
	// octets. Required when the service has cid configs.
	ServerID Hex `yaml:"server_id"`
}

// Defaults of HealthCheckConfig, each stated on its field.
const (
	DefaultCheckInterval     = 2 * time.Second
	DefaultCheckTimeout      = time.Second
	DefaultCheckRise         = 2
	DefaultCheckFall         = 3
	DefaultCheckPath         = "/"
	DefaultCheckExpectStatus = "200-399"
	DefaultCheckALPN         = "h3"
	DefaultCheckJitter       = 0.1
	DefaultCheckAddress      = CheckAddressVIP
)

// MaxCheckJitter bounds jitter: at 0.5 the shortest gap between two probes
// of one target is still half the interval.
const MaxCheckJitter = 0.5

// CheckAddress says where an l4 service's check connects.
type CheckAddress string

// Check addresses.
const (
	// CheckAddressVIP probes the service's VIP; the probe's socket mark
	// steers it to the one backend it checks, so it reaches the backend
	// the way clients do (through the forwarding path, to a server bound
	// to the VIP as direct server return needs).
	CheckAddressVIP CheckAddress = "vip"
	// CheckAddressBackend probes the backend's own address.
	CheckAddressBackend CheckAddress = "backend"
)

// HealthCheckConfig is an active health check. A target counts as healthy
// until Fall consecutive probes fail, so a new or reloaded target takes
// traffic at once (as HAProxy starts a new server up).
//
// For a pool, the upstream's scheme picks the transport: an http, https
// or http3 check becomes http (h2c:// speaks cleartext HTTP/2), https or
// http3 as each upstream speaks, and a tcp or quic check becomes a TCP
// connect or, for h3://, a QUIC handshake.
//
// Certificates (https, http3, quic) are verified only when the check is
// told whom to expect: a CA or a server name, on the check or (for an
// upstream) on the upstream's tls. A check asks whether the server is up,
// not who it is; without either it accepts any certificate, so a backend
// with a self-signed or expired certificate still passes a handshake check.
type HealthCheckConfig struct {
	// Type is http3, https, http, tcp or quic. Required.
	Type CheckType `yaml:"type"`
	// Address (l4) is vip or backend: probe the VIP, steered to the
	// backend, or the backend's own address. If empty, vip.
	Address CheckAddress `yaml:"address"`
	// Port to probe. If zero, the service's port (address: vip) or the
	// backend's or upstream's own port.
	Port int `yaml:"port"`
	// Path (http types) is the request path. If empty, /.
	Path string `yaml:"path"`
	// Host (http types) is the Host header (:authority in HTTP/3). If
	// empty, the probed address.
	Host string `yaml:"host"`
	// ExpectStatus (http types) lists the statuses that pass: codes (200),
	// ranges (200-299) or classes (2xx). If empty, 200-399.
	ExpectStatus []string `yaml:"expect_status"`
	// Body (http types) is an RE2 expression (package regexp) that must
	// match within the first 64 KiB of the response body; text without
	// regexp metacharacters matches as a substring. If empty, the body is
	// not read.
	Body string `yaml:"body"`
	// ALPN (quic) is the application protocol offered in the handshake
	// (RFC 7301), e.g. doq for DNS over QUIC (RFC 9250 §4.1.1). If empty,
	// h3. http3 checks always offer h3.
	ALPN string `yaml:"alpn"`
	// ServerName (https, http3, quic) is sent as SNI and, when set,
	// verified. If empty: for an upstream its tls.server_name or host;
	// for a backend no SNI and no verification unless tls.ca is set.
	ServerName string `yaml:"server_name"`
	// TLS (https, http3, quic) says how the certificate is verified.
	TLS HealthCheckTLSConfig `yaml:"tls"`
	// Interval between probes. If zero, 2s.
	Interval time.Duration `yaml:"interval"`
	// Jitter keeps the probes of many targets from falling into step:
	// each gap is Interval times a random factor in [1-Jitter, 1+Jitter].
	// 0 to 0.5. If left out, 0.1. Whatever it is, a target's first probe
	// comes at a random point within the first interval.
	Jitter float64 `yaml:"jitter"`
	// Timeout of one probe, at most Interval. If zero, 1s.
	Timeout time.Duration `yaml:"timeout"`
	// Rise is how many consecutive passes make a failed target healthy
	// again. If zero, 2.
	Rise int `yaml:"rise"`
	// Fall is how many consecutive failures make it unhealthy. If zero, 3.
	Fall int `yaml:"fall"`
}

// HealthCheckTLSConfig says how a check verifies a certificate.
type HealthCheckTLSConfig struct {
	// CA is a PEM file of the CAs to trust; setting it turns verification
	// on. If empty: for an upstream its tls.ca, else the system's roots
	// (used only when a server name asks for verification). Relative
	// paths are relative to the configuration file.
	CA string `yaml:"ca"`
	// InsecureSkipVerify accepts any certificate even when a CA or server
	// name is set.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// TLSConfig is one certificate and the server names it serves.
type TLSConfig struct {
	// ServerNames are the SNI names, exact or "*.example.test". At least one.
	ServerNames []string `yaml:"server_names"`
	// Cert is a PEM certificate chain file: a regular file of at most
	// MaxPEMFileSize bytes (see ReadPEMFile). A relative path is relative to
	// the configuration file's directory; Parse stores the resolved path.
	Cert string `yaml:"cert"`
	// Key is the PEM private key file, resolved like Cert.
	Key string `yaml:"key"`
}

// RouteConfig sends the requests it matches to a pool.
type RouteConfig struct {
	// Match selects requests. An empty match matches every request.
	Match MatchConfig `yaml:"match"`
	// Pool names the pool that serves the requests. Required.
	Pool string `yaml:"pool"`
	// Timeout bounds the whole request, retries included. If zero, 30s.
	Timeout time.Duration `yaml:"timeout"`
	// Transforms rewrite the request and response.
	Transforms TransformsConfig `yaml:"transforms"`
	// WebSocket proxies WebSocket handshakes (HTTP/1.1 Upgrade, and
	// extended CONNECT over HTTP/2 and HTTP/3) to the pool's HTTP/1.1
	// upstreams. If left out, true (see DefaultWebSocket).
	WebSocket *bool `yaml:"websocket"`
	// Connect, if set, opens CONNECT tunnels to the destinations it
	// allows. If nil, CONNECT is answered 405. See tunnel.go.
	Connect *ConnectConfig `yaml:"connect"`
	// Tunnel bounds the route's WebSocket and CONNECT tunnels.
	Tunnel TunnelConfig `yaml:"tunnel"`
}

// MatchConfig is a request matcher. Every field set must match. At most one
// of PathPrefix, PathExact and PathRegex.
type MatchConfig struct {
	// Host is the request's host (no port), exact or "*.example.test".
	Host       string `yaml:"host"`
	PathPrefix string `yaml:"path_prefix"`
	PathExact  string `yaml:"path_exact"`
	// PathRegex is an RE2 expression (package regexp) matched against the path.
	PathRegex string `yaml:"path_regex"`
	// Methods, if any, lists the methods that match (e.g. GET, POST).
	Methods []string `yaml:"methods"`
	// Headers must each be present with exactly this value.
	Headers map[string]string `yaml:"headers"`
}

// TransformsConfig rewrites a routed request and its response.
type TransformsConfig struct {
	RequestHeaders  HeaderOps `yaml:"request_headers"`
	ResponseHeaders HeaderOps `yaml:"response_headers"`
	// StripPrefix removes this prefix from the path before proxying.
	StripPrefix string `yaml:"strip_prefix"`
	// RewritePath replaces the whole path. Not together with StripPrefix.
	RewritePath string `yaml:"rewrite_path"`
	// Host replaces the Host (:authority) sent upstream.
	Host string `yaml:"host"`
}

// HeaderOps edits a header set: Remove first, then Set (replace), then Add.
type HeaderOps struct {
	Set    map[string]string `yaml:"set"`
	Add    map[string]string `yaml:"add"`
	Remove []string          `yaml:"remove"`
}

// PoolConfig is a set of HTTP upstreams for l7 routes.
type PoolConfig struct {
	// Name is what routes refer to. Required; unique.
	Name string `yaml:"name"`
	// Policy picks an upstream. If empty, round_robin.
	Policy Policy `yaml:"policy"`
	// Upstreams serve the pool. At least one.
	Upstreams []UpstreamConfig `yaml:"upstreams"`
	// Retries of idempotent requests.
	Retries RetryConfig `yaml:"retries"`
	// CircuitBreaker guards each upstream.
	CircuitBreaker CircuitBreakerConfig `yaml:"circuit_breaker"`
	// HealthCheck probes every upstream. If nil, upstreams are checked only
	// passively (errors and the circuit breaker).
	HealthCheck *HealthCheckConfig `yaml:"health_check"`
}

// UpstreamConfig is one HTTP upstream.
type UpstreamConfig struct {
	// Address is a URL whose scheme says the protocol: http:// (HTTP/1.1),
	// https:// (HTTP/1.1 or HTTP/2 by ALPN), h2c:// (cleartext HTTP/2) or
	// h3:// (HTTP/3). No path. Required.
	Address string `yaml:"address"`
	// Weight for weighted_round_robin, > 0. If zero, 1.
	Weight int `yaml:"weight"`
	// MaxConns caps open connections. If zero, unlimited.
	MaxConns int `yaml:"max_conns"`
	// MaxRequests caps requests in flight. If zero, unlimited.
	MaxRequests int `yaml:"max_requests"`
	// TLS tunes how https:// and h3:// upstreams are verified.
	TLS UpstreamTLSConfig `yaml:"tls"`
}

// UpstreamTLSConfig says how spooky verifies an upstream's certificate.
type UpstreamTLSConfig struct {
	// CA is a PEM file of the CAs to trust, read like TLSConfig.Cert. If
	// empty, the system's roots. Relative paths are relative to the
	// configuration file.
	CA string `yaml:"ca"`
	// ServerName is sent as SNI and verified. If empty, the address's host.
	ServerName string `yaml:"server_name"`
	// InsecureSkipVerify accepts any certificate: for labs only.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// URL returns the parsed Address (nil if it does not parse, which
// validation rejects).
func (u UpstreamConfig) URL() *url.URL {
	p, err := url.Parse(u.Address)
	if err != nil {
		return nil
	}
	return p
}

// RetryConfig bounds retries of idempotent requests.
type RetryConfig struct {
	// Count is the most retries per request. If left out, 2; 0 disables retries.
	Count int `yaml:"count"`
	// Budget is the most time spent retrying one request. If zero, 5s.
	Budget time.Duration `yaml:"budget"`
}

// CircuitBreakerConfig opens an upstream's circuit on consecutive failures,
// on a high error ratio or on slow responses, and probes it half-open after
// OpenFor.
type CircuitBreakerConfig struct {
	// ConsecutiveFailures that open the circuit. If zero, 5.
	ConsecutiveFailures int `yaml:"consecutive_failures"`
	// ErrorRatio over Window that opens the circuit, in (0, 1]. If zero, 0.5.
	ErrorRatio float64 `yaml:"error_ratio"`
	// Window over which ErrorRatio and latency are measured. If zero, 10s.
	Window time.Duration `yaml:"window"`
	// LatencyThreshold opens the circuit when the window's mean latency
	// exceeds it. If zero, latency does not open the circuit.
	LatencyThreshold time.Duration `yaml:"latency_threshold"`
	// OpenFor is how long the circuit stays open. If zero, 10s.
	OpenFor time.Duration `yaml:"open_for"`
	// HalfOpenProbes is how many requests a half-open circuit lets through.
	// If zero, 1.
	HalfOpenProbes int `yaml:"half_open_probes"`
}
