package l7

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/spooky-lb/spooky/test/wstest"
)

// wsEcho is an HTTP/1.1 WebSocket upstream (github.com/coder/websocket)
// that echoes every message; "close please" makes it close with 4000,
// "die" makes it drop the connection without a close frame.
type wsEcho struct {
	mu    sync.Mutex
	heads []http.Header
	ends  chan int // per connection: the close code it got, -1 for none
}

func (e *wsEcho) seen() []http.Header {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]http.Header(nil), e.heads...)
}

// mustEnd waits for the upstream to see a connection end and returns the
// close code it got.
func (e *wsEcho) mustEnd(tb testing.TB) int {
	tb.Helper()
	select {
	case code := <-e.ends:
		return code
	case <-time.After(10 * time.Second):
		tb.Fatal("the upstream saw no WebSocket end within 10s")
		return 0
	}
}

func mustWSUpstream(tb testing.TB, name string) (UpstreamConfig, *wsEcho) {
	tb.Helper()
	e := &wsEcho{ends: make(chan int, 64)}
	return mustUpstream(tb, ProtoH1, name, e.handler()), e
}

// handler is the echo server's WebSocket endpoint.
func (e *wsEcho) handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		e.heads = append(e.heads, r.Header.Clone())
		e.mu.Unlock()
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
		if err != nil {
			return
		}
		c.SetReadLimit(4 << 20)
		ctx := context.Background()
		for {
			typ, msg, err := c.Read(ctx)
			if err != nil {
				e.ends <- int(websocket.CloseStatus(err))
				return
			}
			switch string(msg) {
			case "close please":
				_ = c.Close(4000, "bye")
				e.ends <- 4000
				return
			case "die":
				_ = c.CloseNow()
				e.ends <- -1
				return
			}
			if err := c.Write(ctx, typ, msg); err != nil {
				e.ends <- -1
				return
			}
		}
	})
}

// tunnelCounter is an Observer and TunnelObserver that counts.
type tunnelCounter struct {
	mu               sync.Mutex
	open, opened     map[string]int // by kind
	bytes            map[string]int // by kind/direction
	statuses         map[string][]int
	requestDurations map[string][]time.Duration // by route
}

func newTunnelCounter() *tunnelCounter {
	return &tunnelCounter{open: map[string]int{}, opened: map[string]int{}, bytes: map[string]int{}, statuses: map[string][]int{}, requestDurations: map[string][]time.Duration{}}
}

func (c *tunnelCounter) ObserveRequest(_, route, _, _ string, status int, took time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.statuses[route] = append(c.statuses[route], status)
	c.requestDurations[route] = append(c.requestDurations[route], took)
}
func (c *tunnelCounter) ConnOpened(string, string) {}
func (c *tunnelCounter) ConnClosed(string, string) {}
func (c *tunnelCounter) TunnelOpened(_, _, kind string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.open[kind]++
	c.opened[kind]++
}
func (c *tunnelCounter) TunnelBytes(_, _, kind, dir string, n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.bytes[kind+"/"+dir] += n
}
func (c *tunnelCounter) TunnelClosed(_, _, kind string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.open[kind]--
}

func (c *tunnelCounter) get(f func(*tunnelCounter) int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return f(c)
}

// wsRoutes are the routes of the WebSocket tests: /ws proxies WebSockets
// (the default), /nows has them turned off.
func wsRoutes() []Route {
	return []Route{
		{Name: "ws", Match: Match{PathPrefix: "/ws"}, Pool: "p"},
		{Name: "nows", Match: Match{PathPrefix: "/nows"}, Pool: "p", Tunnel: TunnelConfig{DisableWebSocket: true}},
	}
}

func TestWebSocketOverHTTP1(t *testing.T) { testWebSocket(t, h1WebSocket) }

func TestWebSocketOverHTTP3(t *testing.T) { testWebSocket(t, h3WebSocket) }

// TestWebSocketOverHTTP2 needs GODEBUG=http2xconnect=1 in the server's
// environment (net/http leaves RFC 8441 off by default in Go 1.26), so it
// runs in a child process that has it.
func TestWebSocketOverHTTP2(t *testing.T) {
	if !inH2XConnectProcess(t) {
		return
	}
	testWebSocket(t, h2WebSocket)
}

func TestHTTP2ListenerOffersNoExtendedConnectWithoutGODEBUG(t *testing.T) {
	if strings.Contains(os.Getenv("GODEBUG"), h2xconnect) {
		t.Skip("this process has " + h2xconnect)
	}
	cert := mustCert(t, "app.example.com")
	up, _ := mustWSUpstream(t, "ws")
	cfg := oneService(t, cert, PoolConfig{Upstreams: []UpstreamConfig{up}}, wsRoutes()...)
	cfg.Services[0].TCP = true
	cfg.Services[0].Address = freeAddr(t)
	s := mustServer(t, cfg)
	_, _, _, err := h2Stream(t, cert, mustAddr(t, s), "websocket", "https://app.example.com/ws", nil)
	if err == nil || !strings.Contains(err.Error(), "extended connect") {
		t.Fatalf("extended CONNECT over HTTP/2: err = %v, want the client to find the setting missing", err)
	}
}

func testWebSocket(t *testing.T, mk func(testCert, string) wsDialer) {
	cert := mustCert(t, "app.example.com")
	up, echo := mustWSUpstream(t, "ws")
	cfg := oneService(t, cert, PoolConfig{Upstreams: []UpstreamConfig{up}}, wsRoutes()...)
	cfg.Services[0].TCP = true
	cfg.Services[0].Address = freeAddr(t)
	obs := newTunnelCounter()
	cfg.Observer = obs
	s := mustServer(t, cfg)
	dial := mk(cert, mustAddr(t, s))
	ctx := context.Background()
	mustDial := func(t *testing.T, path string) wsConn {
		t.Helper()
		c, status, err := dial(t, path)
		if err != nil || c == nil {
			t.Fatalf("dial %s: status %d, %v", path, status, err)
		}
		return c
	}

	t.Run("messages go both ways unchanged", func(t *testing.T) {
		c := mustDial(t, "/ws/chat?room=1")
		big := make([]byte, 300<<10)
		_, _ = rand.Read(big)
		for _, msg := range [][]byte{[]byte("hello"), big, []byte("again")} {
			if err := c.send(ctx, msg); err != nil {
				t.Fatalf("send: %v", err)
			}
			got, err := c.recv(ctx)
			if err != nil {
				t.Fatalf("recv: %v", err)
			}
			if !bytes.Equal(got, msg) {
				t.Fatalf("echo of %d bytes came back as %d different bytes", len(msg), len(got))
			}
		}
		if err := c.close(1000, ""); err != nil {
			t.Errorf("close: %v", err)
		}
		echo.mustEnd(t)
		heads := echo.seen()
		h := heads[len(heads)-1]
		if h.Get("X-Forwarded-For") != "127.0.0.1" || !strings.Contains(h.Get("Via"), "spooky") {
			t.Errorf("upstream saw X-Forwarded-For %q, Via %q", h.Get("X-Forwarded-For"), h.Get("Via"))
		}
		if h.Get(":protocol") != "" {
			t.Errorf("the :protocol pseudo-header reached the upstream as a field")
		}
	})

	t.Run("the client closes", func(t *testing.T) {
		c := mustDial(t, "/ws")
		if err := c.close(4001, "client done"); err != nil {
			t.Fatalf("closing handshake: %v", err)
		}
		if code := echo.mustEnd(t); code != 4001 {
			t.Errorf("upstream saw close code %d, want 4001", code)
		}
	})

	t.Run("the upstream closes", func(t *testing.T) {
		c := mustDial(t, "/ws")
		if err := c.send(ctx, []byte("close please")); err != nil {
			t.Fatal(err)
		}
		if _, err := c.recv(ctx); closeCode(err) != 4000 {
			t.Fatalf("recv after the upstream closed: %v, want close frame 4000", err)
		}
		echo.mustEnd(t)
	})

	t.Run("the upstream goes away mid-tunnel", func(t *testing.T) {
		c := mustDial(t, "/ws")
		if err := c.send(ctx, []byte("die")); err != nil {
			t.Fatal(err)
		}
		_, err := c.recv(ctx)
		if err == nil || closeCode(err) != -1 && closeCode(err) != int(websocket.StatusAbnormalClosure) {
			t.Fatalf("recv after the upstream dropped the connection: %v, want the connection to end without a close frame", err)
		}
		echo.mustEnd(t)
	})

	t.Run("a route with WebSockets off refuses the handshake", func(t *testing.T) {
		before := len(echo.seen())
		c, status, err := dial(t, "/nows")
		if err != nil || c != nil || status != http.StatusForbidden {
			t.Fatalf("dial /nows: conn %v, status %d, err %v; want 403", c, status, err)
		}
		if len(echo.seen()) != before {
			t.Errorf("the upstream got a handshake for a route with WebSockets off")
		}
	})

	t.Run("tunnels and their bytes are counted", func(t *testing.T) {
		waitFor(t, 10*time.Second, "every tunnel to close", func() bool {
			return obs.get(func(c *tunnelCounter) int { return c.open[TunnelWebSocket] }) == 0
		})
		if n := obs.get(func(c *tunnelCounter) int { return c.opened[TunnelWebSocket] }); n != 4 {
			t.Errorf("%d websocket tunnels opened, want 4", n)
		}
		for _, dir := range []string{DirUp, DirDown} {
			if n := obs.get(func(c *tunnelCounter) int { return c.bytes[TunnelWebSocket+"/"+dir] }); n < 300<<10 {
				t.Errorf("%s bytes = %d, want at least the 300 KiB message", dir, n)
			}
		}
		obs.mu.Lock()
		defer obs.mu.Unlock()
		for _, st := range obs.statuses["ws"] {
			if st != http.StatusSwitchingProtocols && st != http.StatusOK {
				t.Errorf("a tunnel request was reported with status %d", st)
			}
		}
	})
}

// badAcceptUpstream answers every request with a 101 whose
// Sec-WebSocket-Accept does not match the key.
func badAcceptUpstream(tb testing.TB) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
					return
				}
				_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: d3Jvbmc=\r\n\r\n")
				_, _ = io.Copy(io.Discard, c)
			}()
		}
	}()
	return l.Addr().String()
}

func TestWebSocketHandshakeFailures(t *testing.T) {
	cert := mustCert(t, "app.example.com")
	for _, tc := range []struct {
		name string
		up   func(t *testing.T) UpstreamConfig
		want int
		open bool // the breaker opens: the failure counts against the upstream
	}{
		{"an upstream that refuses connections is a failed upgrade", func(t *testing.T) UpstreamConfig {
			return UpstreamConfig{Name: "dead", Address: deadAddress(t)}
		}, http.StatusBadGateway, true},
		{"a 101 with the wrong Sec-WebSocket-Accept is a failed upgrade", func(t *testing.T) UpstreamConfig {
			return UpstreamConfig{Name: "liar", Address: badAcceptUpstream(t)}
		}, http.StatusBadGateway, true},
		{"an upstream that answers 200 does not open a tunnel", func(t *testing.T) UpstreamConfig {
			return mustUpstream(t, ProtoH1, "plain", nil)
		}, http.StatusBadGateway, false},
		{"an upstream's 403 goes back to the client", func(t *testing.T) UpstreamConfig {
			return mustUpstream(t, ProtoH1, "auth", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				http.Error(w, "no", http.StatusForbidden)
			}))
		}, http.StatusForbidden, false},
		{"an HTTP/3 upstream cannot take a WebSocket", func(t *testing.T) UpstreamConfig {
			return mustUpstream(t, ProtoH3, "h3", nil)
		}, http.StatusBadGateway, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := tc.up(t)
			pool := PoolConfig{Upstreams: []UpstreamConfig{up}, Breaker: BreakerConfig{ConsecutiveFailures: 1, OpenFor: time.Hour}}
			cfg := oneService(t, cert, pool, wsRoutes()...)
			s := mustServer(t, cfg)
			c, status, err := h3WebSocket(cert, mustAddr(t, s))(t, "/ws")
			if err != nil || c != nil || status != tc.want {
				t.Fatalf("dial: conn %v, status %d, err %v; want %d", c, status, err, tc.want)
			}
			if open := s.Upstream(up.Name).Breaker().State() == BreakerOpen; open != tc.open {
				t.Errorf("breaker open = %v, want %v", open, tc.open)
			}
			if n := s.Upstream(up.Name).InFlight(); n != 0 {
				t.Errorf("%d requests still in flight", n)
			}
		})
	}
}

func TestWebSocketHandshakeRetriesAnotherUpstream(t *testing.T) {
	cert := mustCert(t, "app.example.com")
	up, _ := mustWSUpstream(t, "ws")
	dead := UpstreamConfig{Name: "dead", Address: deadAddress(t)}
	pool := PoolConfig{Policy: "round_robin", Upstreams: []UpstreamConfig{dead, up}}
	s := mustServer(t, oneService(t, cert, pool, wsRoutes()...))
	dial := h3WebSocket(cert, mustAddr(t, s))
	for i := range 2 { // round robin starts one of them on the dead upstream
		c, status, err := dial(t, "/ws")
		if err != nil || c == nil {
			t.Fatalf("dial %d: status %d, %v", i, status, err)
		}
		if err := c.send(context.Background(), []byte("x")); err != nil {
			t.Fatal(err)
		}
		if _, err := c.recv(context.Background()); err != nil {
			t.Fatal(err)
		}
		c.abort()
	}
}

func TestTunnelLimits(t *testing.T) {
	cert := mustCert(t, "app.example.com")
	up, echo := mustWSUpstream(t, "ws")
	for _, tc := range []struct {
		name   string
		tunnel TunnelConfig
	}{
		{"an idle tunnel is closed after its idle timeout", TunnelConfig{IdleTimeout: 100 * time.Millisecond}},
		{"a tunnel is closed at its maximum lifetime", TunnelConfig{MaxLifetime: 100 * time.Millisecond}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := oneService(t, cert, PoolConfig{Upstreams: []UpstreamConfig{up}}, Route{Pool: "p", Tunnel: tc.tunnel})
			s := mustServer(t, cfg)
			c, _, err := h3WebSocket(cert, mustAddr(t, s))(t, "/")
			if err != nil || c == nil {
				t.Fatalf("dial: %v", err)
			}
			if err := c.send(context.Background(), []byte("x")); err != nil {
				t.Fatal(err)
			}
			if _, err := c.recv(context.Background()); err != nil {
				t.Fatal(err)
			}
			// The next read waits until the proxy closes the tunnel.
			if _, err := c.recv(context.Background()); err == nil || closeCode(err) != -1 {
				t.Fatalf("recv: %v, want the tunnel closed without a close frame", err)
			}
			if code := echo.mustEnd(t); code != -1 && code != int(websocket.StatusAbnormalClosure) {
				t.Errorf("upstream saw close code %d, want the connection dropped", code)
			}
		})
	}
}

func TestShutdownClosesTunnelsAfterTheDrain(t *testing.T) {
	cert := mustCert(t, "app.example.com")
	up, _ := mustWSUpstream(t, "ws")
	cfg := oneService(t, cert, PoolConfig{Upstreams: []UpstreamConfig{up}}, wsRoutes()...)
	cfg.Services[0].TCP = true
	cfg.Services[0].Address = freeAddr(t)
	s := mustServer(t, cfg)
	addr := mustAddr(t, s)
	var conns []wsConn
	for _, dial := range []wsDialer{h1WebSocket(cert, addr), h3WebSocket(cert, addr)} {
		c, status, err := dial(t, "/ws")
		if err != nil || c == nil {
			t.Fatalf("dial: status %d, %v", status, err)
		}
		conns = append(conns, c)
	}
	// The clients read, as WebSocket clients always do, so they see their
	// tunnels end (and an HTTP/3 client, its last stream done after
	// GOAWAY, closes its connection).
	ended := make(chan error, len(conns))
	for _, c := range conns {
		go func() {
			_, err := c.recv(context.Background())
			ended <- err
		}()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	// Tunnels are closed at the end of the drain, just before its
	// deadline, so that a shutdown with only tunnels left ends cleanly.
	if err := s.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown with open tunnels: %v, want them closed at the end of the drain", err)
	}
	for range conns {
		select {
		case err := <-ended:
			if err == nil {
				t.Errorf("a tunnel still carries messages after shutdown")
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a tunnel is still open 10s after shutdown")
		}
	}
}

func TestRoutesSeeAWebSocketHandshakeAsAGET(t *testing.T) {
	cert := mustCert(t, "app.example.com")
	up, _ := mustWSUpstream(t, "ws")
	cfg := oneService(t, cert, PoolConfig{Upstreams: []UpstreamConfig{up}},
		Route{Name: "connect", Match: Match{Methods: []string{http.MethodConnect}}, Pool: "p", Tunnel: TunnelConfig{DisableWebSocket: true, Connect: &ConnectConfig{Allow: []string{"db.test:5432"}}}},
		Route{Name: "get", Match: Match{Methods: []string{http.MethodGet}}, Pool: "p"},
	)
	s := mustServer(t, cfg)
	c, status, err := h3WebSocket(cert, mustAddr(t, s))(t, "/ws")
	if err != nil || c == nil {
		t.Fatalf("an extended CONNECT for a WebSocket matched the CONNECT route: status %d, %v", status, err)
	}
}

func TestWebSocketHandshakeTimesOutAtTheRouteTimeout(t *testing.T) {
	cert := mustCert(t, "app.example.com")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() { // accepts, reads the request, never answers
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(io.Discard, c) }()
		}
	}()
	up := UpstreamConfig{Name: "mute", Address: l.Addr().String()}
	pool := PoolConfig{Upstreams: []UpstreamConfig{up}, Breaker: BreakerConfig{ConsecutiveFailures: 1, OpenFor: time.Hour}}
	s := mustServer(t, oneService(t, cert, pool, Route{Pool: "p", Timeout: 200 * time.Millisecond, Retry: RetryConfig{Attempts: -1}}))
	c, status, err := h3WebSocket(cert, mustAddr(t, s))(t, "/")
	if err != nil || c != nil || status != http.StatusGatewayTimeout {
		t.Fatalf("dial: conn %v, status %d, err %v; want 504", c, status, err)
	}
	if st := s.Upstream("mute").Breaker().State(); st != BreakerOpen {
		t.Errorf("breaker %v after a handshake timed out, want open", st)
	}
}

func TestWebSocketHandshakeHeadsAreWrittenOnlyWhenSafe(t *testing.T) {
	for _, tc := range []struct {
		target string
		want   bool
	}{
		{"/chat?room=1", true},
		{"/a%20b", true},
		{"/a b", false},
		{"/a\r\nX-Injected: 1", false},
		{"/caf\xc3\xa9", false},
		{"", false},
	} {
		if got := validRequestTarget(tc.target); got != tc.want {
			t.Errorf("validRequestTarget(%q) = %v, want %v", tc.target, got, tc.want)
		}
	}
}

func TestReloadAppliesTunnelSettingsToNewTunnels(t *testing.T) {
	cert := mustCert(t, "app.example.com")
	up, _ := mustWSUpstream(t, "ws")
	cfg := oneService(t, cert, PoolConfig{Upstreams: []UpstreamConfig{up}}, Route{Pool: "p"})
	s := mustServer(t, cfg)
	dial := h3WebSocket(cert, mustAddr(t, s))
	ctx := context.Background()
	open, status, err := dial(t, "/")
	if err != nil || open == nil {
		t.Fatalf("dial: %d, %v", status, err)
	}
	cfg.Services[0].Routes[0].Tunnel.DisableWebSocket = true
	if err := s.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if c, status, err := dial(t, "/"); err != nil || c != nil || status != http.StatusForbidden {
		t.Fatalf("a handshake after the reload: conn %v, status %d, err %v; want 403", c, status, err)
	}
	if err := open.send(ctx, []byte("still here")); err != nil {
		t.Fatal(err)
	}
	if got, err := open.recv(ctx); err != nil || string(got) != "still here" {
		t.Fatalf("the tunnel opened before the reload: %q, %v", got, err)
	}
	bad := cfg
	bad.Services = []ServiceConfig{cfg.Services[0]}
	bad.Services[0].Routes = []Route{{Pool: "p", Tunnel: TunnelConfig{Connect: &ConnectConfig{Allow: []string{"*:443"}}}}}
	if err := s.Reload(bad); err == nil || !strings.Contains(err.Error(), "never open") {
		t.Fatalf("reload with an open CONNECT pattern: %v, want it refused", err)
	}
	if _, status, _ := dial(t, "/"); status != http.StatusForbidden {
		t.Errorf("after a refused reload the old settings serve: status %d, want 403", status)
	}
}

func TestWebSocketSubprotocolIsNegotiatedEndToEnd(t *testing.T) {
	cert := mustCert(t, "app.example.com")
	up := mustUpstream(t, ProtoH1, "sub", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{"chat.v2"}, InsecureSkipVerify: true})
		if err != nil {
			return
		}
		defer c.CloseNow()
		_ = c.Write(r.Context(), websocket.MessageText, []byte(c.Subprotocol()))
	}))
	cfg := oneService(t, cert, PoolConfig{Upstreams: []UpstreamConfig{up}}, Route{Pool: "p"})
	cfg.Services[0].TCP = true
	cfg.Services[0].Address = freeAddr(t)
	s := mustServer(t, cfg)
	addr := mustAddr(t, s)

	t.Run("over HTTP/1.1", func(t *testing.T) {
		tr := &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: cert.pool},
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, addr)
			},
		}
		p := new(http.Protocols)
		p.SetHTTP1(true)
		tr.Protocols = p
		defer tr.CloseIdleConnections()
		c, _, err := websocket.Dial(context.Background(), "wss://app.example.com/", &websocket.DialOptions{
			HTTPClient: &http.Client{Transport: tr}, Subprotocols: []string{"chat.v1", "chat.v2"},
		})
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseNow()
		if c.Subprotocol() != "chat.v2" {
			t.Errorf("client got subprotocol %q, want chat.v2", c.Subprotocol())
		}
		if _, msg, err := c.Read(context.Background()); err != nil || string(msg) != "chat.v2" {
			t.Errorf("upstream chose %q (%v), want chat.v2", msg, err)
		}
	})

	t.Run("over HTTP/3", func(t *testing.T) {
		str, res, err := h3ConnectResponse(t, cert, addr, "websocket", "https://app.example.com/",
			http.Header{"Sec-Websocket-Protocol": {"chat.v1, chat.v2"}})
		if err != nil || res.StatusCode != http.StatusOK {
			t.Fatalf("extended CONNECT: %v, %v", res, err)
		}
		if got := res.Header.Get("Sec-Websocket-Protocol"); got != "chat.v2" {
			t.Errorf("Sec-WebSocket-Protocol = %q, want chat.v2", got)
		}
		if res.Header.Get("Sec-Websocket-Accept") != "" {
			t.Error("the upstream's Sec-WebSocket-Accept reached an HTTP/3 client (RFC 8441 §5 has none)")
		}
		if msg, err := wstest.New(str, str, str.Close).Recv(); err != nil || string(msg) != "chat.v2" {
			t.Errorf("upstream chose %q (%v), want chat.v2", msg, err)
		}
	})
}

func TestWebSocketToATLSUpstreamOffersOnlyHTTP1(t *testing.T) {
	cert := mustCert(t, "app.example.com")
	echo := &wsEcho{ends: make(chan int, 4)}
	sawProto := make(chan string, 1)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sawProto <- r.Proto
		echo.handler().ServeHTTP(w, r)
	}))
	srv.EnableHTTP2 = true // it would speak HTTP/2 if the proxy offered it
	srv.StartTLS()
	t.Cleanup(srv.Close)
	up := UpstreamConfig{Name: "tls", Address: srv.Listener.Addr().String(), Protocol: ProtoH1, TLS: true, InsecureSkipVerify: true}
	s := mustServer(t, oneService(t, cert, PoolConfig{Upstreams: []UpstreamConfig{up}}, Route{Pool: "p"}))
	c, status, err := h3WebSocket(cert, mustAddr(t, s))(t, "/")
	if err != nil || c == nil {
		t.Fatalf("dial: %d, %v", status, err)
	}
	if err := c.send(context.Background(), []byte("over tls")); err != nil {
		t.Fatal(err)
	}
	if got, err := c.recv(context.Background()); err != nil || string(got) != "over tls" {
		t.Fatalf("echo: %q, %v", got, err)
	}
	if p := <-sawProto; p != "HTTP/1.1" {
		t.Errorf("upstream saw %s, want HTTP/1.1", p)
	}
}
