package l7

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"strings"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/spooky-lb/spooky/config"
)

// Defaults applied by [Config.withDefaults]. Those the YAML schema also
// has are its defaults (package config), defined once there, so a Config
// built in Go and one read from a file behave the same.
const (
	DefaultIdleTimeout      = 30 * time.Second
	DefaultRouteTimeout     = config.DefaultRouteTimeout
	DefaultRetryAttempts    = config.DefaultRetryCount
	DefaultRetryWindow      = config.DefaultRetryBudget
	DefaultDialTimeout      = 5 * time.Second
	DefaultConsecutiveFails = config.DefaultBreakerFailures
	DefaultBreakerWindow    = config.DefaultBreakerWindow
	DefaultBreakerMinReqs   = 20
	DefaultOpenFor          = config.DefaultBreakerOpenFor
	DefaultHalfOpenProbes   = config.DefaultBreakerProbes
	DefaultRetryAfter       = 5 * time.Second
	DefaultShutdownTimeout  = 30 * time.Second
)

// ErrConfig is wrapped by every configuration error New and Reload return.
var ErrConfig = errors.New("invalid l7 config")

// Config is the runtime configuration of the request tier. The config package
// maps its YAML schema onto it; l7 does not read files other than certificates.
type Config struct {
	// Services are the HTTP/3 listeners, one per L7 VIP address:port.
	Services []ServiceConfig
	// Pools are the upstream pools routes refer to by name.
	Pools []PoolConfig
	// ConnectionIDGenerator, if set, makes the QUIC transport issue
	// connection IDs from it (routable QUIC-LB CIDs carrying the L7 tier's own
	// server ID, see cid.NewGenerator). If nil, quic-go's random CIDs are used.
	ConnectionIDGenerator quic.ConnectionIDGenerator
	// ConnectionIDLength is the length of CIDs quic-go expects when no
	// generator is set. If zero, quic-go's default (4) is used.
	ConnectionIDLength int
	// Health, if set, is consulted for every upstream by name (the pool's
	// upstream Name) on every selection: the pools skip what it does not
	// call healthy. If nil, every upstream counts as healthy and only the
	// breakers take upstreams out. New reads it; Reload keeps the first.
	Health HealthSource
	// OnBreakerStateChange, if set, is called (synchronously, keep it cheap)
	// whenever an upstream's circuit breaker changes state, and with a
	// change to closed when a reload drops a breaker that was not closed.
	// BreakerToHealth makes the health registry's passive source of it.
	// New reads it; Reload keeps the first.
	OnBreakerStateChange func(BreakerChange)
	// Observer, if set, is told of every request and connection (metrics).
	// New reads it; Reload keeps the first.
	Observer Observer
	// ReloadGrace bounds how long listeners that a reload replaced or
	// removed keep serving the connections they have before these are
	// closed. If zero, DefaultShutdownTimeout (30s). New reads it; Reload
	// keeps the first.
	ReloadGrace time.Duration
	// Logger receives the tier's logs. If nil, logs are discarded.
	Logger *slog.Logger
}

// ServiceConfig is one HTTP/3 listener (an L7 VIP) and its routes.
type ServiceConfig struct {
	// Name identifies the service in logs and errors. Required.
	Name string
	// Address is the UDP (and, with TCP, TCP) address:port to listen on.
	// Port 0 picks a free port (tests); see [Server.Addr].
	Address string
	// Certificates are loaded from files and chosen by SNI. At least one.
	// The first is the default for clients that send no or an unknown SNI.
	Certificates []CertificateConfig
	// TCP also serves HTTP/1.1 and HTTP/2 over TLS on the same address and
	// port, with the same routes, advertising HTTP/3 with Alt-Svc
	// (RFC 7838). Default false.
	TCP bool
	// Allow0RTT accepts TLS 1.3 early data. Requests that arrive in 0-RTT
	// with a method other than GET, HEAD or OPTIONS get 425 Too Early
	// (RFC 8470 §5.2); the others are forwarded with Early-Data: 1 (§5.1),
	// and an upstream's 425 goes back to the client unchanged, not retried.
	// Default false (0-RTT off).
	Allow0RTT bool
	// IdleTimeout closes connections with no activity for this long (QUIC
	// max_idle_timeout, RFC 9000 §10.1, and the HTTP idle timeout). If zero,
	// DefaultIdleTimeout (30s).
	//
	// Address, TCP, Allow0RTT, IdleTimeout and MaxHeaderBytes are listener
	// settings: a reload that changes one starts new listeners for the
	// service (binding new sockets when the address changed) and lets the
	// old ones finish their connections within Config.ReloadGrace.
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds request header size. If zero, net/http's default (1 MB).
	MaxHeaderBytes int
	// ConnectionIDGenerator, if set, issues this service's QUIC connection
	// IDs in place of Config.ConnectionIDGenerator: services on different
	// VIPs may use different QUIC-LB configurations. The generator belongs to
	// the UDP socket: a reload applies a new one only together with a new
	// Address (the connections on the socket keep routing by the old one).
	ConnectionIDGenerator quic.ConnectionIDGenerator
	// TrustForwardedHeaders keeps Forwarded and X-Forwarded-* headers sent by
	// clients and appends to them. Default false: they are replaced, since a
	// client can forge them.
	TrustForwardedHeaders bool
	// Routes are tried in order; the first match names the pool. No match
	// answers 404.
	Routes []Route
}

// CertificateConfig is a certificate and key in PEM files for some server names.
type CertificateConfig struct {
	// ServerNames are exact names or "*.example.com" wildcards (matching one
	// label). If empty, the names are taken from the certificate's SANs.
	ServerNames []string
	// CertFile and KeyFile are PEM file paths. Required.
	CertFile, KeyFile string
}

// Route matches requests and names the pool that serves them.
type Route struct {
	// Name identifies the route in logs. If empty, "route-<index>".
	Name string
	// Match selects requests. The zero Match matches everything.
	Match Match
	// Pool is the name of the pool serving the route. Required.
	Pool string
	// Timeout bounds the wait for the upstream's response headers, from the
	// first attempt, retries included; past it the answer is 504. If zero,
	// DefaultRouteTimeout (30s). The body then streams without a deadline.
	Timeout time.Duration
	// Retry bounds retries of idempotent requests on another upstream.
	Retry RetryConfig
	// Transforms rewrite the request and response.
	Transforms Transforms
	// Tunnel says which tunnels (WebSockets, CONNECT) the route opens and
	// bounds them. The zero value proxies WebSockets and refuses CONNECT.
	Tunnel TunnelConfig
}

// Match is a conjunction: every non-empty field must match. Paths are
// matched in their normal form (RFC 3986 §6.2.2, see normalizePath): dot
// segments removed, unreserved characters decoded, other encodings such as
// "%2F" kept encoded. Configured paths are normalised the same way.
type Match struct {
	// Hosts are exact names or "*.example.com" wildcards, compared without port
	// and case-insensitively. Empty matches any host.
	Hosts []string
	// PathPrefix matches paths starting with it at a segment boundary
	// ("/api" matches "/api" and "/api/x", not "/apix"); "/" matches all.
	PathPrefix string
	// PathExact matches exactly this path.
	PathExact string
	// PathRegex matches paths by regular expression (RE2, unanchored unless
	// the expression anchors itself), applied to the normal form as spelled
	// on the wire: a "/" in it is a separator, an encoded one reads "%2F".
	PathRegex string
	// Methods lists accepted methods (upper case). Empty matches any.
	Methods []string
	// Headers must all match.
	Headers []HeaderMatch
}

// HeaderMatch matches one request header field.
type HeaderMatch struct {
	// Name is the field name (case-insensitive). Required.
	Name string
	// Value, if set, must equal one of the field's values. If Value and
	// Regex are both empty, the field must be present.
	Value string
	// Regex, if set, must match one of the field's values.
	Regex string
}

// RetryConfig bounds retries of idempotent requests (RFC 9110 §9.2.2) whose
// connection to an upstream failed before any response byte.
type RetryConfig struct {
	// Attempts is the number of retries after the first try. If zero,
	// DefaultRetryAttempts (2); negative disables retries.
	Attempts int
	// Window bounds the time spent retrying, from the first try. If zero,
	// DefaultRetryWindow (5s).
	Window time.Duration
}

// Transforms rewrite requests before proxying and responses before answering.
type Transforms struct {
	// RequestHeaders edits headers sent upstream.
	RequestHeaders HeaderOps
	// ResponseHeaders edits headers sent to the client.
	ResponseHeaders HeaderOps
	// StripPrefix removes this prefix from the path ("/api" turns "/api/x"
	// into "/x" and "/api" into "/").
	StripPrefix string
	// PathRegex and PathReplacement rewrite the path (after StripPrefix) with
	// regexp.ReplaceAllString; $1 etc. refer to groups. Empty: no rewrite.
	// Both rewrites see and produce the escaped normal form (see Match),
	// and the result is normalised again, so no rewrite sends a dot segment.
	PathRegex       string
	PathReplacement string
	// Host, if set, replaces the Host sent upstream. Default: the client's
	// Host is passed through (as Caddy and Envoy do).
	Host string
}

// HeaderOps edits a header: Remove first, then Set (replace), then Add (append).
type HeaderOps struct {
	Set    map[string]string
	Add    map[string]string
	Remove []string
}

// PoolConfig is a set of upstreams and the policy choosing among them.
type PoolConfig struct {
	// Name is what routes refer to. Required, unique.
	Name string
	// Policy is one of random, round_robin, weighted_round_robin, least_conn,
	// ip_hash, least_response_time, p2c. If empty, round_robin.
	Policy string
	// Upstreams serve the pool. At least one.
	Upstreams []UpstreamConfig
	// Breaker configures the circuit breaker of each upstream.
	Breaker BreakerConfig
}

// Protocol is the HTTP version spoken to an upstream.
type Protocol string

// Upstream protocols.
const (
	ProtoH1  Protocol = "h1"  // HTTP/1.1; with UpstreamConfig.TLS, HTTP/2 too if ALPN offers it
	ProtoH2  Protocol = "h2"  // HTTP/2 over TLS
	ProtoH2C Protocol = "h2c" // HTTP/2 over cleartext TCP (prior knowledge)
	ProtoH3  Protocol = "h3"  // HTTP/3 over QUIC
)

// UpstreamConfig is one upstream server.
type UpstreamConfig struct {
	// Name identifies the upstream for health and breaker callbacks. If
	// empty, the Address. Unique across pools means shared state: an upstream
	// named the same in two pools is one upstream.
	Name string
	// Address is host:port. Required.
	Address string
	// Protocol is h1, h2, h2c or h3. If empty, h1.
	Protocol Protocol
	// TLS uses TLS for h1 (h2 and h3 always do, h2c never).
	TLS bool
	// ServerName is the TLS server name. If empty, the Address's host.
	ServerName string
	// InsecureSkipVerify disables upstream certificate verification. Default false.
	InsecureSkipVerify bool
	// CAFile is a PEM bundle of roots for the upstream. If empty, system roots.
	CAFile string
	// Weight is used by weighted_round_robin and ip_hash. If zero, 1.
	Weight int
	// MaxConnections caps connections to the upstream (h1, h2, h2c). For h1,
	// each in-flight request holds a connection, so the upstream counts as
	// full at this many in-flight requests. If zero, unlimited.
	MaxConnections int
	// MaxRequests caps concurrent requests; the upstream is skipped when
	// full. If zero, unlimited.
	MaxRequests int
	// DialTimeout bounds connection setup. If zero, DefaultDialTimeout (5s).
	DialTimeout time.Duration
}

// BreakerConfig configures a per-upstream circuit breaker. A breaker opens
// on ConsecutiveFailures, on ErrorRatio over Window, or (as failures) on
// requests slower than LatencyThreshold.
type BreakerConfig struct {
	// Disabled turns the breaker off. Default false.
	Disabled bool
	// ConsecutiveFailures opens the breaker. If zero, DefaultConsecutiveFails (5).
	ConsecutiveFailures int
	// ErrorRatio (0 < r <= 1) over Window opens the breaker once MinRequests
	// were seen in the window. If zero, the ratio rule is off.
	ErrorRatio float64
	// Window is the ratio window. If zero, DefaultBreakerWindow (10s).
	Window time.Duration
	// MinRequests in Window before ErrorRatio applies. If zero, DefaultBreakerMinReqs (20).
	MinRequests int
	// LatencyThreshold counts a slower response as a failure. If zero, off.
	LatencyThreshold time.Duration
	// OpenFor is the time open before half-open. If zero, DefaultOpenFor (10s).
	OpenFor time.Duration
	// HalfOpenProbes is the number of probe requests let through half-open;
	// all must succeed to close. If zero, DefaultHalfOpenProbes (1).
	HalfOpenProbes int
}

func (b BreakerConfig) withDefaults() BreakerConfig {
	if b.ConsecutiveFailures == 0 {
		b.ConsecutiveFailures = DefaultConsecutiveFails
	}
	if b.Window == 0 {
		b.Window = DefaultBreakerWindow
	}
	if b.MinRequests == 0 {
		b.MinRequests = DefaultBreakerMinReqs
	}
	if b.OpenFor == 0 {
		b.OpenFor = DefaultOpenFor
	}
	if b.HalfOpenProbes == 0 {
		b.HalfOpenProbes = DefaultHalfOpenProbes
	}
	return b
}

func (r RetryConfig) withDefaults() RetryConfig {
	if r.Attempts == 0 {
		r.Attempts = DefaultRetryAttempts
	}
	if r.Attempts < 0 {
		r.Attempts = 0
	}
	if r.Window == 0 {
		r.Window = DefaultRetryWindow
	}
	return r
}

func configErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, args...))
}

// validate checks what New cannot build from; it does not touch files.
func (c *Config) validate() error {
	pools := map[string]bool{}
	for i, p := range c.Pools {
		if p.Name == "" {
			return configErr("pool %d: name is required", i)
		}
		if pools[p.Name] {
			return configErr("pool %q: duplicate name", p.Name)
		}
		pools[p.Name] = true
		if _, err := newSelector(p.Policy); err != nil {
			return configErr("pool %q: %v", p.Name, err)
		}
		if len(p.Upstreams) == 0 {
			return configErr("pool %q: no upstreams", p.Name)
		}
		for j, u := range p.Upstreams {
			if _, _, err := net.SplitHostPort(u.Address); err != nil {
				return configErr("pool %q upstream %d: address %q: %v", p.Name, j, u.Address, err)
			}
			switch u.Protocol {
			case "", ProtoH1, ProtoH2, ProtoH2C, ProtoH3:
			default:
				return configErr("pool %q upstream %q: unknown protocol %q (want h1, h2, h2c or h3)", p.Name, u.Address, u.Protocol)
			}
			if u.Weight < 0 || u.MaxConnections < 0 || u.MaxRequests < 0 {
				return configErr("pool %q upstream %q: weight and limits must not be negative", p.Name, u.Address)
			}
		}
		if r := p.Breaker.ErrorRatio; r < 0 || r > 1 {
			return configErr("pool %q: breaker error ratio %v not in [0, 1]", p.Name, r)
		}
	}
	names := map[string]bool{}
	for i, s := range c.Services {
		if s.Name == "" {
			return configErr("service %d: name is required", i)
		}
		if names[s.Name] {
			return configErr("service %q: duplicate name", s.Name)
		}
		names[s.Name] = true
		if _, _, err := net.SplitHostPort(s.Address); err != nil {
			return configErr("service %q: address %q: %v", s.Name, s.Address, err)
		}
		if len(s.Certificates) == 0 {
			return configErr("service %q: no certificates", s.Name)
		}
		for j, r := range s.Routes {
			if r.Pool == "" || !pools[r.Pool] {
				return configErr("service %q route %d: unknown pool %q", s.Name, j, r.Pool)
			}
			if r.Match.PathRegex != "" {
				if _, err := regexp.Compile(r.Match.PathRegex); err != nil {
					return configErr("service %q route %d: path regex: %v", s.Name, j, err)
				}
			}
			for _, h := range r.Match.Headers {
				if h.Name == "" {
					return configErr("service %q route %d: header match without name", s.Name, j)
				}
				if h.Regex != "" {
					if _, err := regexp.Compile(h.Regex); err != nil {
						return configErr("service %q route %d: header %s regex: %v", s.Name, j, h.Name, err)
					}
				}
			}
			if r.Transforms.PathRegex != "" {
				if _, err := regexp.Compile(r.Transforms.PathRegex); err != nil {
					return configErr("service %q route %d: rewrite regex: %v", s.Name, j, err)
				}
			}
			if p := r.Match.PathPrefix; p != "" && !strings.HasPrefix(p, "/") {
				return configErr("service %q route %d: path prefix %q must start with /", s.Name, j, p)
			}
		}
	}
	return nil
}
