// Package admin is spooky's admin API: a JSON-over-HTTP server on a unix
// socket (mode 0600) or a loopback TCP address, the Daemon interface it
// calls, and a client that the CLI (spooky status, backends, drain,
// undrain, reload) uses.
//
// The API is versioned under /v1. Nouns are read with GET, verbs change
// state with POST:
//
//	GET  /v1/status                 Status
//	GET  /v1/backends?service=NAME  Status limited to one service and its pools
//	GET  /v1/config                 the configuration in force, as YAML
//	POST /v1/drain  {"target": T, "drain": true|false}
//	POST /v1/drain  {"all": true, "drain": true|false}   DrainAllResult
//	GET  /v1/drain?target=T         DrainProgress
//	POST /v1/reload                 ReloadResult, or 422 with every problem
//
// Errors are JSON bodies {"error": message, "code": code}, plus "problems"
// when a reload is rejected (see ErrorBody).
package admin

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/spooky-lb/spooky/config"
	"github.com/spooky-lb/spooky/forwarder"
	"github.com/spooky-lb/spooky/health"
)

// Daemon is what the admin server asks of the running daemon. Every method
// may be called concurrently with the others and with itself.
type Daemon interface {
	// Status returns the configuration in force and the health and
	// counters of every service, backend, pool and upstream.
	Status(ctx context.Context) (*Status, error)
	// Drain drains target (drain true) or withdraws an operator's drain
	// (drain false). A target is "service/backend" for an l4 backend or an
	// upstream's name (its URL) for an l7 upstream; see ParseTarget. An
	// unknown target returns an error wrapping ErrUnknownTarget.
	Drain(ctx context.Context, target string, drain bool) error
	// DrainProgress says how far a drain of target has come. An unknown
	// target returns an error wrapping ErrUnknownTarget.
	DrainProgress(ctx context.Context, target string) (*DrainProgress, error)
	// Reload loads the configuration file again and applies it. A file
	// with problems changes nothing and returns an error wrapping the
	// config.Errors that config.Load returned, so every problem reaches
	// the operator with its file, line and column.
	Reload(ctx context.Context) (*ReloadResult, error)
	// Config returns the configuration in force (defaults filled in).
	Config(ctx context.Context) (*config.Config, error)
	// DrainAll drains every backend and upstream and withdraws every BGP
	// route (drain true), or withdraws the operator's drains and lets the
	// routes of servable VIPs be announced again (drain false).
	DrainAll(ctx context.Context, drain bool) (*DrainAllResult, error)
}

// Errors a Daemon returns and a Client's callers branch on. The client
// rebuilds them from the server's answer, so errors.Is works on both sides.
var (
	// ErrUnknownTarget is a drain target that names no backend or upstream
	// (HTTP 404).
	ErrUnknownTarget = errors.New("unknown target")
	// ErrUnknownService is a service that the configuration does not
	// define (HTTP 404).
	ErrUnknownService = errors.New("unknown service")
	// ErrNoDaemon is an address where no daemon answers: no socket, or
	// nothing listening.
	ErrNoDaemon = errors.New("no spooky daemon")
)

// ParseTarget reads a drain target as operators type it: "service/backend"
// is an l4 backend; anything else (an upstream's URL, such as
// "h3://198.18.2.1:443", which never has the "a/b" form) is an l7 upstream.
func ParseTarget(s string) health.Target {
	if t, ok := health.ParseBackend(s); ok {
		return t
	}
	return health.Upstream(s)
}

// Status is the daemon's state as GET /v1/status returns it.
type Status struct {
	Config   ConfigInfo `json:"config"`
	Services []Service  `json:"services"`
	Pools    []Pool     `json:"pools"`
	// BGP is the BGP speaker's state; nil without a bgp section.
	BGP *BGPStatus `json:"bgp,omitempty"`
	// Proxy are the userspace proxy's counters (forwarding: proxy); nil
	// when the daemon serves no proxy-mode service.
	Proxy *forwarder.ProxyStats `json:"proxy,omitempty"`
}

// BGPStatus is what the daemon announces over BGP, and to whom.
type BGPStatus struct {
	ASN      uint32     `json:"asn"`
	RouterID netip.Addr `json:"router_id"`
	// Withdrawn says that spooky drain --all withdrew every route; they
	// return with spooky undrain --all.
	Withdrawn bool      `json:"withdrawn"`
	Peers     []BGPPeer `json:"peers"`
	// Routes are the routes announced now: one host route per VIP that
	// is served and has a usable backend or upstream.
	Routes []BGPRoute `json:"routes"`
}

// BGPPeer is one router's session.
type BGPPeer struct {
	Address netip.Addr `json:"address"`
	ASN     uint32     `json:"asn"`
	// State is idle, connect, active, opensent, openconfirm or
	// established (RFC 4271 §8.2.2).
	State string `json:"state"`
	// Since is when the session was established, or last went down.
	Since time.Time `json:"since,omitzero"`
	// HoldTimeSeconds is the negotiated hold time of an established
	// session.
	HoldTimeSeconds int `json:"hold_time_seconds,omitempty"`
	// Advertised counts the routes sent to the peer.
	Advertised uint64 `json:"advertised"`
	// LastError says why the session last went down.
	LastError string `json:"last_error,omitempty"`
}

// BGPRoute is one announced route.
type BGPRoute struct {
	Prefix netip.Prefix `json:"prefix"`
	// NextHop is the configured next hop; absent when each session's
	// local address is used.
	NextHop     netip.Addr `json:"next_hop,omitzero"`
	Communities []string   `json:"communities,omitempty"`
	MED         *uint32    `json:"med,omitempty"`
}

// ConfigInfo identifies the configuration in force.
type ConfigInfo struct {
	// Path is the configuration file.
	Path string `json:"path"`
	// SHA256 is the hex digest of the file's bytes as loaded, so an
	// operator can tell whether the file on disk is the one in force.
	SHA256 string `json:"sha256"`
	// LoadedAt is when the configuration in force was loaded.
	LoadedAt time.Time `json:"loaded_at"`
	// LastReload is the outcome of the latest reload; nil if there has
	// been none since the daemon started.
	LastReload *ReloadOutcome `json:"last_reload,omitempty"`
}

// NewConfigInfo identifies the configuration loaded at loadedAt from
// data, the bytes read from path. Hash the bytes that were parsed (read
// the file once, then config.Parse), not a second read of the file, which
// may have changed in between.
func NewConfigInfo(path string, data []byte, loadedAt time.Time) ConfigInfo {
	sum := sha256.Sum256(data)
	return ConfigInfo{Path: path, SHA256: hex.EncodeToString(sum[:]), LoadedAt: loadedAt}
}

// ReloadOutcome is how one reload ended.
type ReloadOutcome struct {
	At time.Time `json:"at"`
	OK bool      `json:"ok"`
	// Error says why a reload was rejected or failed; empty when OK.
	Error string `json:"error,omitempty"`
}

// Service is one virtual service.
type Service struct {
	Name    string      `json:"name"`
	Address netip.Addr  `json:"address"`
	Port    int         `json:"port"`
	Mode    config.Mode `json:"mode"`
	// Forwarding is the l4 forwarding mode; empty for l7.
	Forwarding config.Forwarding `json:"forwarding,omitempty"`
	// Backends are the l4 backends; empty for l7.
	Backends []Backend `json:"backends"`
	// Pools are the pools an l7 service's routes send to; empty for l4.
	Pools []string `json:"pools,omitempty"`
}

// Health is a target's combined health state, flattened into Backend and
// Upstream.
type Health struct {
	// State is healthy, unhealthy or draining.
	State string `json:"state"`
	// Reason says why, e.g. "200 OK in 2ms" or "drained by operator".
	Reason string `json:"reason,omitempty"`
	// Source is the source whose verdict decided the state: operator,
	// active or passive. Empty for a healthy target.
	Source string `json:"source,omitempty"`
	// Since is when the state began; absent for a target never reported.
	Since time.Time `json:"since,omitzero"`
}

// HealthOf converts a registry status for the API.
func HealthOf(s health.Status) Health {
	h := Health{State: s.State.String(), Reason: s.Reason, Since: s.Since}
	if s.State != health.Healthy {
		h.Source = s.Source.String()
	}
	return h
}

// Backend is one l4 backend of a service.
type Backend struct {
	Name    string     `json:"name"`
	Address netip.Addr `json:"address"`
	// Port is where the backend receives the service's datagrams: the
	// service's port unless forwarding: proxy sets another.
	Port   int `json:"port"`
	Weight int `json:"weight"`
	Health
	// Packets and Bytes are what the packet tier has sent to the backend.
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// Pool is one l7 upstream pool.
type Pool struct {
	Name      string        `json:"name"`
	Policy    config.Policy `json:"policy"`
	Upstreams []Upstream    `json:"upstreams"`
}

// Breaker states of an upstream's circuit breaker.
const (
	BreakerClosed   = "closed"
	BreakerOpen     = "open"
	BreakerHalfOpen = "half_open"
)

// Upstream is one l7 upstream of a pool.
type Upstream struct {
	// Name is the upstream's URL, the name its health and drains use.
	Name   string `json:"name"`
	Weight int    `json:"weight"`
	Health
	// Breaker is closed, open or half_open.
	Breaker string `json:"breaker"`
	// InFlight is the number of requests the upstream is serving now.
	InFlight int64 `json:"in_flight"`
	// Requests is the number of requests sent to it since the daemon
	// started.
	Requests uint64 `json:"requests"`
}

// DrainRequest is the body of POST /v1/drain.
type DrainRequest struct {
	// Target is "service/backend" or an upstream's name. Required unless
	// All is set.
	Target string `json:"target,omitempty"`
	// All drains (or undrains) every backend and upstream and withdraws
	// (or announces again) every BGP route; Target must then be empty.
	All bool `json:"all,omitempty"`
	// Drain true drains; false withdraws the operator's drain. Required,
	// so that a body missing it is not read as an undrain.
	Drain *bool `json:"drain"`
}

// Units of DrainProgress.Remaining.
const (
	// UnitFlows counts l4 flows still pinned to a backend.
	UnitFlows = "flows"
	// UnitRequests counts l7 requests still in flight to an upstream.
	UnitRequests = "requests"
)

// DrainProgress says how far a drain has come.
type DrainProgress struct {
	// Target is the target as the daemon names it.
	Target string `json:"target"`
	// State is the target's health state; a drain in progress is
	// draining. Any other state means the drain was withdrawn (or never
	// made), so waiting for it is pointless.
	State string `json:"state"`
	// Remaining is what still uses the target, counted in Unit.
	Remaining int64 `json:"remaining"`
	// Unit is flows (l4) or requests (l7).
	Unit string `json:"unit"`
	// Done reports that nothing uses the target any more: it can be
	// stopped without breaking connections.
	Done bool `json:"done"`
	// Detail says more, e.g. which flows remain or when they expire.
	Detail string `json:"detail,omitempty"`
}

// Remains formats what remains, e.g. "3 flows" or "1 request".
func (p *DrainProgress) Remains() string {
	unit := p.Unit
	if unit == "" {
		unit = "users"
	}
	if p.Remaining == 1 {
		unit = strings.TrimSuffix(unit, "s")
	}
	return strconv.FormatInt(p.Remaining, 10) + " " + unit
}

// DrainAllResult is the answer to POST /v1/drain with "all".
type DrainAllResult struct {
	// Drained is true after a drain, false after an undrain.
	Drained bool `json:"drained"`
	// Targets counts the backends and upstreams drained or undrained.
	Targets int `json:"targets"`
	// Routes are the BGP routes announced after the change (none after
	// a drain); absent without a bgp section.
	Routes []BGPRoute `json:"routes,omitempty"`
}

// ReloadResult is the answer to a successful POST /v1/reload.
type ReloadResult struct {
	// Config identifies the configuration now in force.
	Config ConfigInfo `json:"config"`
	// Changes summarizes what the reload changed (config.Diff); empty
	// when nothing did.
	Changes string `json:"changes,omitempty"`
}
