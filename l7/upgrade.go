// WebSockets: an HTTP/1.1 Upgrade (RFC 6455 §4), or an extended CONNECT
// with :protocol websocket over HTTP/2 (RFC 8441) or HTTP/3 (RFC 9220),
// becomes an HTTP/1.1 Upgrade to an upstream; once the upstream has
// switched protocols the bytes are relayed both ways (tunnel.go).

package l7

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"
)

// webSocketGUID is appended to the key to compute Sec-WebSocket-Accept
// (RFC 6455 §1.3, §4.2.2).
const webSocketGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// webSocketAccept is the Sec-WebSocket-Accept value for key.
func webSocketAccept(key string) string {
	h := sha1.Sum([]byte(key + webSocketGUID))
	return base64.StdEncoding.EncodeToString(h[:])
}

// validWebSocketKey reports a Sec-WebSocket-Key that is, as RFC 6455
// §4.1 requires, 16 bytes in base64.
func validWebSocketKey(k string) bool {
	b, err := base64.StdEncoding.DecodeString(k)
	return err == nil && len(b) == 16
}

func newWebSocketKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return base64.StdEncoding.EncodeToString(b[:])
}

// isWebSocketUpgrade reports an HTTP/1.1 WebSocket opening handshake (RFC
// 6455 §4.2.1): a GET with Connection: Upgrade and Upgrade: websocket.
func isWebSocketUpgrade(r *http.Request) bool {
	return r.ProtoMajor == 1 && r.Method == http.MethodGet &&
		httpguts.HeaderValuesContainsToken(r.Header["Connection"], "upgrade") &&
		httpguts.HeaderValuesContainsToken(r.Header["Upgrade"], "websocket")
}

// extendedProtocol returns the :protocol of an extended CONNECT (RFC 8441
// §4, RFC 9220 §3), or "" for any other request. net/http's HTTP/2 server
// keeps the pseudo-header as a field (and sends SETTINGS_ENABLE_CONNECT_
// PROTOCOL only with GODEBUG=http2xconnect=1); quic-go's HTTP/3 server
// puts it in Proto.
func extendedProtocol(r *http.Request) string {
	if r.Method != http.MethodConnect {
		return ""
	}
	switch r.ProtoMajor {
	case 2:
		return r.Header.Get(":protocol")
	case 3:
		if !strings.HasPrefix(r.Proto, "HTTP/") {
			return r.Proto
		}
	}
	return ""
}

// h2ExtendedConnect says whether net/http's HTTP/2 server offers extended
// CONNECT (RFC 8441 §3), so that HTTP/2 clients can open WebSockets: in
// Go 1.26 only with GODEBUG=http2xconnect=1 in the environment, which
// net/http reads (as here) once, when the process starts. Without it,
// browsers open their WebSockets over HTTP/1.1 or HTTP/3 instead.
var h2ExtendedConnect = strings.Contains(os.Getenv("GODEBUG"), "http2xconnect=1")

// noteH2WebSockets logs, for a service with a TCP listener, whether its
// HTTP/2 clients can open WebSockets.
func noteH2WebSockets(log *slog.Logger) {
	if !h2ExtendedConnect {
		log.Info("HTTP/2 clients open WebSockets over HTTP/1.1 or HTTP/3: extended CONNECT over HTTP/2 (RFC 8441) needs GODEBUG=http2xconnect=1 in the environment")
	}
}

// wantsTunnel reports requests that serveTunnel answers: CONNECT of any
// kind and HTTP/1.1 WebSocket upgrades.
func wantsTunnel(r *http.Request) bool {
	return r.Method == http.MethodConnect || isWebSocketUpgrade(r)
}

// serveTunnel routes a request that asks for a tunnel. A plain CONNECT
// goes to its destination if the matching route allows it (else 405, as
// before tunnels existed); a WebSocket handshake goes to the route's pool
// unless the route turned WebSockets off (403); CONNECT-UDP over HTTP/3
// goes to connectudp.go. Other extended CONNECT protocols (WebTransport,
// CONNECT-UDP over HTTP/2) get 405.
func (svc *service) serveTunnel(w http.ResponseWriter, r *http.Request) {
	proto := extendedProtocol(r)
	plain := r.Method == http.MethodConnect && proto == ""
	if proto == connectUDPProtocol && r.ProtoMajor == 3 {
		svc.serveConnectUDP(w, r)
		return
	}
	if r.Method == http.MethodConnect && proto != "" && !strings.EqualFold(proto, "websocket") {
		refuseConnect(w)
		return
	}
	if r.Method == http.MethodConnect && inEarlyData(r) {
		// RFC 8470 §5.2: CONNECT is not safe; a replay would open a
		// second tunnel.
		writeError(w, http.StatusTooEarly, "request in 0-RTT early data refused; retry after the handshake")
		return
	}
	path := normalizePath(r.URL.EscapedPath())
	mr := r
	if !plain && r.Method == http.MethodConnect {
		// Routes see a WebSocket handshake as the GET it is over HTTP/1.1
		// and to the upstream, whatever protocol the client speaks.
		get := *r
		get.Method = http.MethodGet
		mr = &get
	}
	route := svc.router.Load().match(mr, path)
	if plain {
		if route == nil || !route.tunnel.connect {
			refuseConnect(w)
			return
		}
		noteRoute(w, route)
		svc.connect(w, r, route)
		return
	}
	if route == nil {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no route for host %q path %q", r.Host, path))
		return
	}
	noteRoute(w, route)
	if !route.tunnel.webSocket {
		writeError(w, http.StatusForbidden, "WebSockets are not enabled on this route")
		return
	}
	svc.webSocket(w, r, route, path)
}

// errBadUpgrade is an upstream's 101 that does not complete the
// WebSocket handshake it was asked for (RFC 6455 §4.1, the client's checks).
var errBadUpgrade = errors.New("upstream switched protocols without a valid WebSocket handshake")

// webSocket opens a WebSocket through one of route's HTTP/1.1 upstreams.
// The handshake follows the route's retries and timeout; a failed one
// (no connection, no or a malformed answer, a 101 with the wrong
// Sec-WebSocket-Accept) counts against the upstream's breaker like a
// failed request. An answer other than 101 goes back to the client as it
// is, except a 2xx: over HTTP/2 and HTTP/3 a 2xx would tell the client
// its tunnel was open (RFC 8441 §5), so it becomes 502.
func (svc *service) webSocket(w http.ResponseWriter, r *http.Request, route *compiledRoute, path string) {
	start := time.Now()
	h1 := r.ProtoMajor == 1
	key := r.Header.Get("Sec-WebSocket-Key")
	if h1 && !validWebSocketKey(key) {
		writeError(w, http.StatusBadRequest, "WebSocket handshake without a valid Sec-WebSocket-Key")
		return
	}
	if !h1 {
		// RFC 8441 §5: the key and accept fields are not used over
		// HTTP/2 and HTTP/3; the HTTP/1.1 hop to the upstream needs them.
		key = newWebSocketKey()
	}
	ip := clientIP(r)
	out := &http.Request{Method: http.MethodGet, URL: &url.URL{RawQuery: r.URL.RawQuery}, Header: r.Header.Clone(), Host: r.Host}
	setEscapedPath(out.URL, path)
	removeHopByHop(out.Header)
	delete(out.Header, ":protocol")
	delete(out.Header, "Host") // written from out.Host
	setForwarded(out, r, ip, svc.trustForwarded.Load())
	out.Header.Add("Via", viaValue(r.ProtoMajor, r.ProtoMinor))
	route.transforms.request(out)
	if !httpguts.ValidHostHeader(out.Host) || !validRequestTarget(out.URL.RequestURI()) {
		// The head is written by hand: nothing may break its framing.
		writeError(w, http.StatusBadRequest, "invalid host or path for a WebSocket handshake")
		return
	}
	h := out.Header
	h.Set("Connection", "Upgrade")
	h.Set("Upgrade", "websocket")
	h.Set("Sec-WebSocket-Key", key)
	if h.Get("Sec-WebSocket-Version") == "" {
		h.Set("Sec-WebSocket-Version", "13")
	}

	var tried []*Upstream
	var lastErr error
	var lastUp *Upstream
	attempts, sawH1 := 0, false
	for {
		u := route.pool.Select(r, ip, tried)
		if u == nil {
			break
		}
		tried = append(tried, u)
		if u.cfg.Protocol != ProtoH1 {
			continue // an Upgrade is HTTP/1.1's (RFC 9110 §7.8)
		}
		sawH1 = true
		if !u.begin() {
			continue
		}
		attempts++
		t0 := time.Now()
		// The route's timeout bounds the handshake, retries included.
		conn, br, res, err := upgradeUpstream(r.Context(), u, out, start.Add(route.timeout))
		latency := time.Since(t0)
		if err == nil && res.StatusCode == http.StatusSwitchingProtocols && !upgradeAccepted(res, key) {
			_ = conn.Close()
			err = errBadUpgrade
		}
		if err != nil {
			u.end()
			if r.Context().Err() != nil {
				u.breaker.release()
				return
			}
			u.breaker.RecordMetric(0, latency)
			lastErr, lastUp = err, u
			svc.log.Debug("websocket handshake failed", "route", route.name, "upstream", u.name, "error", err)
			if attempts <= route.retry.Attempts && time.Since(start) < route.retry.Window {
				continue
			}
			break
		}
		u.observe(latency)
		u.breaker.RecordMetric(res.StatusCode, latency)
		noteUpstream(w, u)
		if res.StatusCode != http.StatusSwitchingProtocols {
			svc.upgradeRefused(w, res, route)
			_ = conn.Close()
			u.end()
			return
		}
		svc.openWebSocket(w, r, route, connEnd{conn, br}, res, start)
		u.end()
		return
	}
	switch {
	case lastErr != nil:
		svc.log.Warn("websocket handshake failed", "route", route.name, "upstream", lastUp.name, "attempts", attempts, "error", lastErr)
		if errors.Is(lastErr, errBadUpgrade) {
			writeError(w, http.StatusBadGateway, "upstream answered the WebSocket handshake wrongly")
		} else if isTimeout(lastErr) && !isDialError(lastErr) {
			writeError(w, http.StatusGatewayTimeout, "upstream timed out")
		} else {
			writeError(w, http.StatusBadGateway, "upstream "+describe(lastErr))
		}
	case !sawH1 && len(tried) > 0:
		writeError(w, http.StatusBadGateway, fmt.Sprintf("pool %s has no HTTP/1.1 upstream for WebSockets", route.pool.name))
	default:
		writeError(w, http.StatusServiceUnavailable, fmt.Sprintf("no available upstream in pool %s", route.pool.name))
	}
}

// validRequestTarget reports a request-target that can be written on an
// HTTP/1.1 request line as it is (RFC 9112 §3.2): visible ASCII only.
func validRequestTarget(t string) bool {
	for i := 0; i < len(t); i++ {
		if t[i] <= ' ' || t[i] >= 0x7f {
			return false
		}
	}
	return t != ""
}

// upgradeUpstream connects to u and sends out as an HTTP/1.1 Upgrade
// request; it returns the connection, its reader (which may hold bytes the
// upstream sent after its 101) and the response head. deadline bounds the
// handshake after the connect, and the reading of a body that is not a
// 101's; ctx ending (the client left) aborts it.
func upgradeUpstream(ctx context.Context, u *Upstream, out *http.Request, deadline time.Time) (net.Conn, *bufio.Reader, *http.Response, error) {
	conn, err := dialH1(ctx, u)
	if err != nil {
		return nil, nil, nil, err
	}
	_ = conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	bw := bufio.NewWriterSize(conn, 4<<10)
	_, _ = fmt.Fprintf(bw, "GET %s HTTP/1.1\r\nHost: %s\r\n", out.URL.RequestURI(), out.Host)
	_ = out.Header.Write(bw)
	_, _ = bw.WriteString("\r\n")
	if err := bw.Flush(); err != nil {
		_ = conn.Close()
		return nil, nil, nil, err
	}
	br := bufio.NewReaderSize(conn, 4<<10)
	res, err := http.ReadResponse(br, out)
	if err != nil {
		_ = conn.Close()
		return nil, nil, nil, err
	}
	if !stop() {
		_ = conn.Close()
		return nil, nil, nil, ctx.Err()
	}
	if res.StatusCode == http.StatusSwitchingProtocols {
		_ = conn.SetDeadline(time.Time{})
	}
	return conn, br, res, nil
}

// dialH1 opens a connection to an HTTP/1.1 upstream, over TLS if it
// speaks TLS (offering only http/1.1 by ALPN: an Upgrade needs it).
func dialH1(ctx context.Context, u *Upstream) (net.Conn, error) {
	timeout := u.cfg.DialTimeout
	if timeout == 0 {
		timeout = DefaultDialTimeout
	}
	d := net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", u.cfg.Address)
	if err != nil || !u.cfg.TLS {
		return conn, err
	}
	tc, err := u.tlsConfig()
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	tc.NextProtos = []string{"http/1.1"}
	tconn := tls.Client(conn, tc)
	hctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := tconn.HandshakeContext(hctx); err != nil {
		_ = conn.Close()
		return nil, err
	}
	return tconn, nil
}

// upgradeAccepted checks an upstream's 101 as a WebSocket client would
// (RFC 6455 §4.1): Upgrade websocket, Connection upgrade, and the accept
// value of the key sent.
func upgradeAccepted(res *http.Response, key string) bool {
	return httpguts.HeaderValuesContainsToken(res.Header["Upgrade"], "websocket") &&
		httpguts.HeaderValuesContainsToken(res.Header["Connection"], "upgrade") &&
		res.Header.Get("Sec-WebSocket-Accept") == webSocketAccept(key)
}

// upgradeRefused passes on an upstream's answer other than 101: a 4xx
// (the application refused, say, an unauthenticated client) or 5xx as it
// is, body included; a 2xx or 1xx becomes 502.
func (svc *service) upgradeRefused(w http.ResponseWriter, res *http.Response, route *compiledRoute) {
	defer res.Body.Close()
	if res.StatusCode < 300 {
		svc.log.Warn("upstream did not switch to WebSocket", "route", route.name, "status", res.StatusCode)
		writeError(w, http.StatusBadGateway, fmt.Sprintf("upstream answered the WebSocket handshake with %d, not 101", res.StatusCode))
		return
	}
	removeHopByHop(res.Header)
	h := w.Header()
	for k, v := range res.Header {
		h[k] = v
	}
	h.Add("Via", viaValue(res.ProtoMajor, res.ProtoMinor))
	route.transforms.response(h)
	w.WriteHeader(res.StatusCode)
	bp := tunnelBufPool.Get().(*[]byte)
	defer tunnelBufPool.Put(bp)
	for {
		n, err := res.Body.Read(*bp)
		if n > 0 {
			if _, werr := w.Write((*bp)[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// openWebSocket answers the client once the upstream switched protocols
// and relays until the tunnel ends: to an HTTP/1.1 client with the
// upstream's 101 on the hijacked connection, to an HTTP/2 or HTTP/3
// client with 200 on its stream (RFC 8441 §5, RFC 9220 §3).
func (svc *service) openWebSocket(w http.ResponseWriter, r *http.Request, route *compiledRoute, up connEnd, res *http.Response, start time.Time) {
	hdr := res.Header
	removeHopByHop(hdr)
	hdr.Add("Via", viaValue(res.ProtoMajor, res.ProtoMinor))
	route.transforms.response(hdr)
	if r.ProtoMajor == 1 {
		hdr.Set("Connection", "Upgrade")
		hdr.Set("Upgrade", "websocket")
		head := "HTTP/1.1 101 Switching Protocols\r\n"
		svc.hijackTunnel(w, r, route, TunnelWebSocket, up, head, hdr, http.StatusSwitchingProtocols, start)
		return
	}
	// The accept value answered a key the client never sent.
	delete(hdr, "Sec-Websocket-Accept")
	svc.streamTunnel(w, r, route, TunnelWebSocket, up, hdr, start)
}
