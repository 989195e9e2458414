// Tunnels of l7 routes: WebSockets (RFC 6455 over HTTP/1.1 Upgrade, RFC
// 8441 over HTTP/2, RFC 9220 over HTTP/3) and CONNECT (RFC 9110 §9.3.6,
// RFC 9113 §8.5, RFC 9114 §4.4).

package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Defaults of a route's tunnels, each stated on its field.
const (
	// DefaultWebSocket turns WebSockets on: a WebSocket handshake is a GET
	// the upstream must accept (101 with the matching
	// Sec-WebSocket-Accept, RFC 6455 §4.2.2), so it reaches nothing the
	// route does not already serve, and Caddy, HAProxy and Traefik users
	// expect it to work without a setting.
	DefaultWebSocket = true
	// DefaultTunnelIdleTimeout closes a tunnel that carried no byte either
	// way for this long. WebSocket clients and servers ping well within it
	// (browsers' and common servers' keep-alives are 20-60 s).
	DefaultTunnelIdleTimeout = 5 * time.Minute
	// DefaultConnectDialTimeout bounds the TCP connect to a CONNECT
	// destination.
	DefaultConnectDialTimeout = 5 * time.Second
)

// TunnelConfig bounds the tunnels a route opens: WebSockets and CONNECT.
type TunnelConfig struct {
	// IdleTimeout closes a tunnel that carried no byte either way for this
	// long. If zero, 5m.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// MaxLifetime closes a tunnel this long after it opened, whatever it
	// carries, so that long-lived clients reconnect and rebalance. If
	// zero, tunnels live as long as they are used.
	MaxLifetime time.Duration `yaml:"max_lifetime"`
}

// ConnectConfig lets a route open CONNECT tunnels (RFC 9110 §9.3.6) to the
// destinations it lists, and to nothing else, and with UDP CONNECT-UDP
// ones (RFC 9298). Without it, CONNECT is answered 405.
type ConnectConfig struct {
	// Allow lists the destinations, as host:port patterns (see
	// ParseDestination). At least one; a pattern that allows every host
	// is refused, so a route is never an open proxy.
	Allow []string `yaml:"allow"`
	// DialTimeout bounds the TCP connect to a destination. If zero, 5s.
	DialTimeout time.Duration `yaml:"dial_timeout"`
	// UDP also proxies UDP to the same destinations for HTTP/3 clients
	// (CONNECT-UDP, RFC 9298, at /.well-known/masque/udp/{host}/{port}/).
	// Default false.
	UDP bool `yaml:"udp"`
}

// WebSocketEnabled says whether the route proxies WebSockets: its
// websocket setting, or DefaultWebSocket when the file leaves it out.
func (r *RouteConfig) WebSocketEnabled() bool {
	if r.WebSocket == nil {
		return DefaultWebSocket
	}
	return *r.WebSocket
}

func (r *RouteConfig) setTunnelDefaults(d defaulter, p string) {
	def(d, p+".tunnel.idle_timeout", &r.Tunnel.IdleTimeout, DefaultTunnelIdleTimeout)
	if r.Connect != nil {
		def(d, p+".connect.dial_timeout", &r.Connect.DialTimeout, DefaultConnectDialTimeout)
	}
}

func (v *validator) tunnel(r *RouteConfig, rp string) {
	v.positiveDur(rp+".tunnel.idle_timeout", r.Tunnel.IdleTimeout)
	if r.Tunnel.MaxLifetime < 0 {
		v.errorf(rp+".tunnel.max_lifetime", "max_lifetime: must not be negative, got %v", r.Tunnel.MaxLifetime)
	}
	c := r.Connect
	if c == nil {
		return
	}
	cp := rp + ".connect"
	v.positiveDur(cp+".dial_timeout", c.DialTimeout)
	if len(c.Allow) == 0 {
		v.missing(cp + ".allow")
	}
	for i, a := range c.Allow {
		if _, err := ParseDestination(a); err != nil {
			v.errorf(fmt.Sprintf("%s.allow[%d]", cp, i), "allow: %v", err)
		}
	}
}

// Destination is a CONNECT destination pattern: a host (a DNS name, a
// "*.example.test" wildcard covering one label, an IP address or a CIDR
// prefix) and a port or port range.
type Destination struct {
	name   string       // lower case, no trailing dot; "*.x" for a wildcard
	prefix netip.Prefix // valid for address and prefix patterns
	lo, hi uint16       // port range, inclusive
}

// ParseDestination parses a CONNECT destination pattern:
//
//	db.internal:5432          a name (matches only that name, as asked)
//	*.example.test:443        any name one label below example.test
//	198.18.0.10:443           an address
//	198.18.0.0/24:8000-8999   addresses in a prefix, ports in a range
//	[2001:db8::/64]:443       IPv6 addresses and prefixes in brackets
//
// Names match names and addresses match address literals: a request for a
// name is not resolved to be compared with a prefix, and a name pattern
// lets the name be dialled whatever it resolves to. The port is required;
// "*" as a host and a /0 prefix are refused, so a pattern never allows
// every host.
func ParseDestination(s string) (Destination, error) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return Destination{}, fmt.Errorf("%q: want host:port", echo(s))
	}
	host, port := s[:i], s[i+1:]
	var d Destination
	lo, hi, ok := strings.Cut(port, "-")
	if !ok {
		hi = lo
	}
	a, err1 := strconv.ParseUint(lo, 10, 16)
	b, err2 := strconv.ParseUint(hi, 10, 16)
	if err1 != nil || err2 != nil || a == 0 || b < a {
		return Destination{}, fmt.Errorf("%q: port %q is not a port (1-65535) or a range such as 8000-8999", echo(s), echo(port))
	}
	d.lo, d.hi = uint16(a), uint16(b)
	if h, ok := strings.CutPrefix(host, "["); ok {
		if host, ok = strings.CutSuffix(h, "]"); !ok {
			return Destination{}, fmt.Errorf("%q: unbalanced brackets", echo(s))
		}
	}
	switch {
	case host == "" || host == "*":
		return Destination{}, fmt.Errorf("%q: a host is required; CONNECT is never open to every host", echo(s))
	case strings.Contains(host, "/"):
		p, err := netip.ParsePrefix(host)
		if err != nil {
			return Destination{}, fmt.Errorf("%q: %v", echo(s), err)
		}
		if p.Bits() == 0 {
			return Destination{}, fmt.Errorf("%q: a /0 prefix allows every address; CONNECT is never open to every host", echo(s))
		}
		d.prefix = p.Masked()
	default:
		if a, err := netip.ParseAddr(host); err == nil {
			if a.Zone() != "" {
				return Destination{}, fmt.Errorf("%q: zoned addresses are not allowed", echo(s))
			}
			d.prefix = netip.PrefixFrom(a, a.BitLen())
			break
		}
		name := strings.ToLower(strings.TrimSuffix(host, "."))
		if !validHostname(strings.TrimPrefix(name, "*.")) || strings.Contains(strings.TrimPrefix(name, "*."), "*") {
			return Destination{}, fmt.Errorf("%q: %q is not a host name, *.name wildcard, address or prefix", echo(s), echo(host))
		}
		d.name = name
	}
	return d, nil
}

// ErrDestination is wrapped by SplitDestination's errors.
var ErrDestination = errors.New("invalid CONNECT destination")

// SplitDestination splits a CONNECT request's authority (RFC 9110 §9.3.6:
// host and port, always both) into the host, in the form Allows compares,
// and the port.
func SplitDestination(authority string) (string, uint16, error) {
	host, port, err := net.SplitHostPort(authority)
	if err != nil {
		return "", 0, fmt.Errorf("%w: %v", ErrDestination, err)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return "", 0, fmt.Errorf("%w: port %q", ErrDestination, port)
	}
	if host == "" {
		return "", 0, fmt.Errorf("%w: no host", ErrDestination)
	}
	return strings.ToLower(strings.TrimSuffix(host, ".")), uint16(p), nil
}

// Allows reports whether the pattern admits host (as SplitDestination
// returns it) and port.
func (d Destination) Allows(host string, port uint16) bool {
	if port < d.lo || port > d.hi {
		return false
	}
	if d.prefix.IsValid() {
		a, err := netip.ParseAddr(host)
		return err == nil && a.Zone() == "" && d.prefix.Contains(a.Unmap())
	}
	if rest, ok := strings.CutPrefix(d.name, "*."); ok {
		_, hrest, ok := strings.Cut(host, ".")
		return ok && hrest == rest
	}
	return host == d.name
}
