// Tunnels: the byte relay behind WebSockets (upgrade.go) and CONNECT
// (connect.go), their limits, and the set of open tunnels that a
// shutdown drains.

package l7

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
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

// tunnelGenKey carries the listeners generation that accepted a
// connection into its requests' contexts, so that a tunnel registers with
// the generation whose shutdown must close it.
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

// len is the number of open tunnels.
func (s *tunnelSet) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
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

// end is one side of a tunnel.
type end interface {
	io.ReadWriter
	// closeWrite ends the side's sending half; errNoHalfClose if the side
	// cannot, and then the tunnel closes.
	closeWrite() error
	// close ends both halves and unblocks their reads and writes; it may
	// be called from any goroutine, more than once.
	close()
	// closeRead ends the receiving half only, for a tunnel that ends
	// cleanly while its last bytes may still be on their way out.
	closeRead()
}

var errNoHalfClose = errors.New("no half-close")

// connEnd is a TCP (or TLS over TCP) connection: an upstream, a CONNECT
// destination, or an HTTP/1.1 client's hijacked connection. r reads it
// through whatever was buffered while the HTTP head was parsed.
type connEnd struct {
	net.Conn
	r io.Reader
}

func (c connEnd) Read(p []byte) (int, error) { return c.r.Read(p) }

func (c connEnd) closeWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errNoHalfClose
}

func (c connEnd) close() { _ = c.Conn.Close() }

func (c connEnd) closeRead() {
	if cr, ok := c.Conn.(interface{ CloseRead() error }); ok {
		_ = cr.CloseRead()
		return
	}
	_ = c.Conn.Close()
}

// streamEnd is an HTTP/2 or HTTP/3 request stream carrying a tunnel
// (RFC 9113 §8.5, RFC 9114 §4.4, RFC 8441, RFC 9220): the request body
// reads from the client, the response body writes to it, each write
// flushed at once. The response ends when the handler returns, so it has
// no half-close of its own.
type streamEnd struct {
	body io.ReadCloser
	w    http.ResponseWriter
	rc   *http.ResponseController
}

func newStreamEnd(w http.ResponseWriter, r *http.Request) *streamEnd {
	return &streamEnd{body: r.Body, w: w, rc: http.NewResponseController(w)}
}

func (s *streamEnd) Read(p []byte) (int, error) { return s.body.Read(p) }

func (s *streamEnd) Write(p []byte) (int, error) {
	n, err := s.w.Write(p)
	if err != nil {
		return n, err
	}
	return n, s.rc.Flush()
}

func (s *streamEnd) closeWrite() error { return errNoHalfClose }

func (s *streamEnd) closeRead() { _ = s.body.Close() }

func (s *streamEnd) close() {
	_ = s.body.Close()
	// A write blocked on flow control returns at the deadline.
	_ = s.rc.SetWriteDeadline(time.Now())
}

// tunnel relays bytes between a client and an upstream or destination.
type tunnel struct {
	svc          *service
	route, kind  string
	client, peer end
	idle         time.Duration
	obs          TunnelObserver // nil without one
	last         atomic.Int64   // unix ns of the last byte relayed
	timerMu      sync.Mutex
	idleTimer    *time.Timer
	once         sync.Once
	why          atomic.Pointer[string] // why the tunnel was closed, for the log
}

// newTunnel prepares a tunnel of kind on route; run starts it.
func (svc *service) newTunnel(route *compiledRoute, kind string, client, peer end) *tunnel {
	t := &tunnel{svc: svc, route: route.name, kind: kind, client: client, peer: peer, idle: route.tunnel.idle}
	t.obs, _ = svc.obs.(TunnelObserver)
	return t
}

// register adds t to the tunnels of the generation that accepted r's
// connection; the returned func removes it.
func (t *tunnel) register(r *http.Request) (func(), error) {
	set, ok := r.Context().Value(tunnelGenKey{}).(*tunnelSet)
	if !ok {
		return func() {}, nil
	}
	if err := set.add(t); err != nil {
		return nil, err
	}
	return func() { set.remove(t) }, nil
}

// run relays until both directions ended, the tunnel was idle for its
// idle timeout or lived its lifetime, or close was called; then it closes
// both sides. A side's end of stream half-closes the other side where it
// can (TCP FIN), so a CONNECT tunnel carries a protocol that half-closes.
func (t *tunnel) run(lifetime time.Duration) {
	if t.obs != nil {
		t.obs.TunnelOpened(t.svc.name, t.route, t.kind)
		defer t.obs.TunnelClosed(t.svc.name, t.route, t.kind)
	}
	t.touch()
	t.timerMu.Lock()
	t.idleTimer = time.AfterFunc(t.idle, t.checkIdle)
	t.timerMu.Unlock()
	defer func() {
		t.timerMu.Lock()
		t.idleTimer.Stop()
		t.timerMu.Unlock()
	}()
	if lifetime > 0 {
		life := time.AfterFunc(lifetime, func() { t.closeFor("lifetime reached") })
		defer life.Stop()
	}
	start := time.Now()
	var up, down atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() { t.pump(t.peer, t.client, DirUp, &up) })
	wg.Go(func() { t.pump(t.client, t.peer, DirDown, &down) })
	wg.Wait()
	t.closeFor("ended")
	why := "ended"
	if p := t.why.Load(); p != nil {
		why = *p
	}
	t.svc.log.Debug("tunnel closed", "kind", t.kind, "route", t.route, "reason", why,
		"bytes_up", up.Load(), "bytes_down", down.Load(), "lasted", time.Since(start))
}

func (t *tunnel) touch() { t.last.Store(time.Now().UnixNano()) }

// checkIdle closes the tunnel if it was idle for its timeout, or waits
// again for the rest of it. One timer per tunnel, not one reset per read.
func (t *tunnel) checkIdle() {
	since := time.Duration(time.Now().UnixNano() - t.last.Load())
	if since >= t.idle {
		t.closeFor("idle timeout")
		return
	}
	t.timerMu.Lock()
	t.idleTimer.Reset(t.idle - since)
	t.timerMu.Unlock()
}

func (t *tunnel) close() { t.closeFor("closed by shutdown") }

// closeFor aborts the tunnel: both sides' reads and writes end now.
func (t *tunnel) closeFor(why string) {
	t.once.Do(func() {
		t.why.Store(&why)
		t.client.close()
		t.peer.close()
	})
}

// finish ends a tunnel whose peer ended cleanly toward a client that
// cannot half-close (an HTTP/2 or HTTP/3 stream): everything the peer
// sent was written, so only the client's reading half is closed, and the
// handler's return ends the stream cleanly. Aborting would reset the
// stream (net/http's HTTP/2 server resets a stream at its write deadline).
func (t *tunnel) finish(why string) {
	t.once.Do(func() {
		t.why.Store(&why)
		t.client.closeRead()
		t.peer.close()
	})
}

// tunnelBufPool holds the relay's buffers: 32 KiB takes a TCP read at
// full speed and any QUIC stream read or datagram.
var tunnelBufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// pump copies src to dst until src ends.
func (t *tunnel) pump(dst, src end, dir string, n *atomic.Int64) {
	bp := tunnelBufPool.Get().(*[]byte)
	defer tunnelBufPool.Put(bp)
	buf := *bp
	for {
		k, rerr := src.Read(buf)
		if k > 0 {
			t.touch()
			if _, werr := dst.Write(buf[:k]); werr != nil {
				t.closeFor(dir + " write failed")
				return
			}
			n.Add(int64(k))
			if t.obs != nil {
				t.obs.TunnelBytes(t.svc.name, t.route, t.kind, dir, k)
			}
		}
		if rerr == io.EOF {
			if dst.closeWrite() != nil {
				t.finish(dir + " ended")
			}
			return
		}
		if rerr != nil {
			t.closeFor(dir + " read failed")
			return
		}
	}
}
