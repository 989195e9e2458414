// Tunnels behind WebSockets (upgrade.go), CONNECT (connect.go) and
// CONNECT-UDP (connectudp.go): a route's tunnel settings, the observer of
// tunnels, and the set of open tunnels that a shutdown drains. The relay
// itself is in relay.go.

package l7

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/spooky-lb/spooky/config"
)

// Defaults of TunnelConfig, the config package's.
const (
	DefaultTunnelIdleTimeout  = config.DefaultTunnelIdleTimeout
	DefaultConnectDialTimeout = config.DefaultConnectDialTimeout
)

// TunnelConfig says which tunnels a route opens and bounds them.
type TunnelConfig struct {
	// DisableWebSocket answers WebSocket handshakes with 403. Default
	// false: WebSockets are proxied (config.DefaultWebSocket says why).
	DisableWebSocket bool
	// IdleTimeout closes a tunnel that carried no byte either way for this
	// long. If zero, DefaultTunnelIdleTimeout (5m).
	IdleTimeout time.Duration
	// MaxLifetime closes a tunnel this long after it opened. If zero,
	// tunnels live as long as they are used.
	MaxLifetime time.Duration
	// Connect, if set, opens CONNECT tunnels to the destinations it
	// allows. If nil, CONNECT is answered 405.
	Connect *ConnectConfig
}

// ConnectConfig lists where a route's CONNECT tunnels may go.
type ConnectConfig struct {
	// Allow lists host:port patterns (config.ParseDestination). At least one.
	Allow []string
	// DialTimeout bounds the TCP connect to the destination. If zero,
	// DefaultConnectDialTimeout (5s).
	DialTimeout time.Duration
	// UDP also proxies UDP to the allowed destinations for HTTP/3 clients
	// (CONNECT-UDP, RFC 9298; connectudp.go). Default false.
	UDP bool
}

// compiledTunnel is a route's TunnelConfig with defaults applied and the
// destinations parsed.
type compiledTunnel struct {
	webSocket   bool
	idle        time.Duration
	lifetime    time.Duration
	connect     bool
	udp         bool
	allow       []config.Destination
	dialTimeout time.Duration
}

func compileTunnel(c TunnelConfig) (*compiledTunnel, error) {
	t := &compiledTunnel{webSocket: !c.DisableWebSocket, idle: c.IdleTimeout, lifetime: c.MaxLifetime}
	if t.idle == 0 {
		t.idle = DefaultTunnelIdleTimeout
	}
	if t.idle < 0 || t.lifetime < 0 {
		return nil, errors.New("tunnel idle timeout and lifetime must not be negative")
	}
	if c.Connect == nil {
		return t, nil
	}
	if len(c.Connect.Allow) == 0 {
		return nil, errors.New("connect: no allowed destinations")
	}
	for _, a := range c.Connect.Allow {
		d, err := config.ParseDestination(a)
		if err != nil {
			return nil, fmt.Errorf("connect: %w", err)
		}
		t.allow = append(t.allow, d)
	}
	t.connect = true
	t.udp = c.Connect.UDP
	t.dialTimeout = c.Connect.DialTimeout
	if t.dialTimeout <= 0 {
		t.dialTimeout = DefaultConnectDialTimeout
	}
	return t, nil
}

// allows reports whether a CONNECT to host and port is allowed.
func (t *compiledTunnel) allows(host string, port uint16) bool {
	for _, d := range t.allow {
		if d.Allows(host, port) {
			return true
		}
	}
	return false
}

// Tunnel kinds passed to a TunnelObserver.
const (
	TunnelWebSocket  = "websocket"
	TunnelConnect    = "connect"
	TunnelConnectUDP = "connect-udp"
)

// Tunnel directions passed to TunnelObserver.TunnelBytes.
const (
	// DirUp is from the client to the upstream or CONNECT destination.
	DirUp = "up"
	// DirDown is toward the client.
	DirDown = "down"
)

// TunnelObserver is an Observer that also counts tunnels. The request that
// opens a tunnel is reported to ObserveRequest as usual (101 or 200, with
// the time the handshake took) when the tunnel ends.
type TunnelObserver interface {
	// TunnelOpened is called when a tunnel of kind (TunnelWebSocket,
	// TunnelConnect or TunnelConnectUDP) opens on route of service.
	TunnelOpened(service, route, kind string)
	// TunnelBytes is called as bytes are relayed, direction DirUp or DirDown.
	TunnelBytes(service, route, kind, direction string, n int)
	// TunnelClosed is called once for every TunnelOpened.
	TunnelClosed(service, route, kind string)
}

// tunnelGenKey carries the tunnel set of the listeners generation that
// accepted a connection into its requests' contexts, so that a tunnel
// registers with the generation whose shutdown must close it.
type tunnelGenKey struct{}

// errShuttingDown refuses a tunnel once its listeners are draining.
var errShuttingDown = errors.New("shutting down")

// tunnelSet is the open tunnels of one listeners generation. net/http does
// not track hijacked connections (http.Server.Shutdown neither waits for
// nor closes them), so the set does, for both TCP and QUIC.
type tunnelSet struct {
	mu     sync.Mutex
	m      map[*tunnel]struct{}
	closed bool
	empty  chan struct{} // closed when the set empties during a drain
}

func (s *tunnelSet) add(t *tunnel) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errShuttingDown
	}
	if s.m == nil {
		s.m = map[*tunnel]struct{}{}
	}
	s.m[t] = struct{}{}
	return nil
}

func (s *tunnelSet) remove(t *tunnel) {
	s.mu.Lock()
	delete(s.m, t)
	if len(s.m) == 0 && s.empty != nil {
		close(s.empty)
		s.empty = nil
	}
	s.mu.Unlock()
}

// drain refuses new tunnels and waits for the open ones to end, and
// closes those still open at the end of the drain. A WebSocket may never
// end on its own, so being closed there is how a tunnel ends in a
// shutdown, not a failure of it: they are closed a little before ctx's
// deadline (a quarter of the time left, at most a second), so that their
// handlers return within it and a shutdown with only tunnels left ends
// cleanly.
func (s *tunnelSet) drain(ctx context.Context) {
	s.mu.Lock()
	s.closed = true
	if len(s.m) == 0 {
		s.mu.Unlock()
		return
	}
	if s.empty == nil {
		s.empty = make(chan struct{})
	}
	empty := s.empty
	s.mu.Unlock()
	var closeAt <-chan time.Time
	if dl, ok := ctx.Deadline(); ok {
		left := time.Until(dl)
		t := time.NewTimer(left - min(left/4, time.Second))
		defer t.Stop()
		closeAt = t.C
	}
	select {
	case <-empty:
	case <-closeAt:
		s.closeAll()
	case <-ctx.Done():
		s.closeAll()
	}
}

// closeAll refuses new tunnels and closes the open ones.
func (s *tunnelSet) closeAll() {
	s.mu.Lock()
	s.closed = true
	open := make([]*tunnel, 0, len(s.m))
	for t := range s.m {
		open = append(open, t)
	}
	s.mu.Unlock()
	for _, t := range open {
		t.close()
	}
}
