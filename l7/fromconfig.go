package l7

import (
	"fmt"
	"log/slog"
	"net"
	"strconv"

	"github.com/spooky-lb/spooky/cid"
	"github.com/spooky-lb/spooky/config"
)

// FromConfig builds the request tier's configuration from the l7 services
// and the pools of a validated spooky configuration. Services of mode l4
// are left to the packet tier.
func FromConfig(cfg *config.Config, log *slog.Logger) (Config, error) {
	out := Config{Logger: log}
	retries := map[string]config.RetryConfig{}
	for _, p := range cfg.Pools {
		retries[p.Name] = p.Retries
	}
	for _, s := range cfg.Services {
		if s.Mode != config.ModeL7 {
			continue
		}
		svc, err := serviceFromConfig(s, retries)
		if err != nil {
			return Config{}, fmt.Errorf("service %q: %w", s.Name, err)
		}
		out.Services = append(out.Services, svc)
	}
	for _, p := range cfg.Pools {
		pool, err := poolFromConfig(p)
		if err != nil {
			return Config{}, fmt.Errorf("pool %q: %w", p.Name, err)
		}
		out.Pools = append(out.Pools, pool)
	}
	return out, nil
}

func serviceFromConfig(s config.ServiceConfig, retries map[string]config.RetryConfig) (ServiceConfig, error) {
	svc := ServiceConfig{
		Name:      s.Name,
		Address:   net.JoinHostPort(s.Address.String(), strconv.Itoa(s.Port)),
		TCP:       s.TCPListener,
		Allow0RTT: s.Allow0RTT,
	}
	for _, t := range s.TLS {
		svc.Certificates = append(svc.Certificates, CertificateConfig{ServerNames: t.ServerNames, CertFile: t.Cert, KeyFile: t.Key})
	}
	if len(s.CID) > 0 {
		// The request tier holds its own server ID in the VIP's CID
		// space, so its connections stay routable when the VIP also
		// has XDP-forwarded backends. New CIDs use the last listed
		// config: a rotation adds the new config after the old one
		// (draft-ietf-quic-load-balancers-21 §3.1: servers must not
		// generate CIDs with an old config once they have a new one).
		cc, err := s.CID[len(s.CID)-1].Config()
		if err != nil {
			return ServiceConfig{}, err
		}
		gen, err := cid.NewGenerator(cc, s.L7ServerID)
		if err != nil {
			return ServiceConfig{}, fmt.Errorf("connection ids: %w", err)
		}
		svc.ConnectionIDGenerator = gen
	}
	for i, r := range s.Routes {
		route := Route{
			Name:    fmt.Sprintf("%s/%d", s.Name, i),
			Pool:    r.Pool,
			Timeout: r.Timeout,
			Retry:   retryFromConfig(retries[r.Pool]),
			Match: Match{
				PathPrefix: r.Match.PathPrefix,
				PathExact:  r.Match.PathExact,
				PathRegex:  r.Match.PathRegex,
				Methods:    r.Match.Methods,
			},
			Transforms: Transforms{
				RequestHeaders:  HeaderOps(r.Transforms.RequestHeaders),
				ResponseHeaders: HeaderOps(r.Transforms.ResponseHeaders),
				StripPrefix:     r.Transforms.StripPrefix,
				Host:            r.Transforms.Host,
			},
		}
		if r.Match.Host != "" {
			route.Match.Hosts = []string{r.Match.Host}
		}
		route.Tunnel = tunnelFromConfig(&r)
		for name, value := range r.Match.Headers {
			route.Match.Headers = append(route.Match.Headers, HeaderMatch{Name: name, Value: value})
		}
		if r.Transforms.RewritePath != "" {
			// A whole-path rewrite is a regex replacement of everything.
			route.Transforms.PathRegex = "^.*$"
			route.Transforms.PathReplacement = r.Transforms.RewritePath
		}
		svc.Routes = append(svc.Routes, route)
	}
	return svc, nil
}

func poolFromConfig(p config.PoolConfig) (PoolConfig, error) {
	pool := PoolConfig{
		Name:   string(p.Name),
		Policy: string(p.Policy),
		Breaker: BreakerConfig{
			ConsecutiveFailures: p.CircuitBreaker.ConsecutiveFailures,
			ErrorRatio:          p.CircuitBreaker.ErrorRatio,
			Window:              p.CircuitBreaker.Window,
			LatencyThreshold:    p.CircuitBreaker.LatencyThreshold,
			OpenFor:             p.CircuitBreaker.OpenFor,
			HalfOpenProbes:      p.CircuitBreaker.HalfOpenProbes,
		},
	}
	for _, u := range p.Upstreams {
		url := u.URL()
		if url == nil {
			return PoolConfig{}, fmt.Errorf("upstream %q: not a URL", u.Address)
		}
		up := UpstreamConfig{
			Name:               u.Address,
			Weight:             u.Weight,
			MaxConnections:     u.MaxConns,
			MaxRequests:        u.MaxRequests,
			CAFile:             u.TLS.CA,
			ServerName:         u.TLS.ServerName,
			InsecureSkipVerify: u.TLS.InsecureSkipVerify,
		}
		port := "443"
		switch url.Scheme {
		case "http":
			up.Protocol, port = ProtoH1, "80"
		case "https":
			// HTTP/2 when the upstream offers it by ALPN, else HTTP/1.1.
			up.Protocol, up.TLS = ProtoH1, true
		case "h2c":
			up.Protocol, port = ProtoH2C, "80"
		case "h3":
			up.Protocol, up.TLS = ProtoH3, true
		default:
			return PoolConfig{}, fmt.Errorf("upstream %q: scheme %q: want http, https, h2c or h3", u.Address, url.Scheme)
		}
		if url.Port() != "" {
			port = url.Port()
		}
		up.Address = net.JoinHostPort(url.Hostname(), port)
		pool.Upstreams = append(pool.Upstreams, up)
	}
	return pool, nil
}

// retryFromConfig maps a pool's retries; in the config a count of 0 turns
// retries off, which l7 spells as a negative count.
func retryFromConfig(r config.RetryConfig) RetryConfig {
	out := RetryConfig{Attempts: r.Count, Window: r.Budget}
	if r.Count == 0 {
		out.Attempts = -1
	}
	return out
}

// tunnelFromConfig maps a route's websocket, connect and tunnel settings.
func tunnelFromConfig(r *config.RouteConfig) TunnelConfig {
	t := TunnelConfig{
		DisableWebSocket: !r.WebSocketEnabled(),
		IdleTimeout:      r.Tunnel.IdleTimeout,
		MaxLifetime:      r.Tunnel.MaxLifetime,
	}
	if r.Connect != nil {
		t.Connect = &ConnectConfig{Allow: r.Connect.Allow, DialTimeout: r.Connect.DialTimeout, UDP: r.Connect.UDP}
	}
	return t
}
