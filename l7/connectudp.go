// CONNECT-UDP (RFC 9298): UDP proxied over HTTP/3 in HTTP Datagrams (RFC
// 9297), to the destinations a route's connect section allows.

package l7

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"github.com/quic-go/quic-go/quicvarint"

	"github.com/spooky-lb/spooky/config"
)

// connectUDPProtocol is the :protocol of CONNECT-UDP (RFC 9298 §3).
const connectUDPProtocol = "connect-udp"

// connectUDPPrefix starts the path of RFC 9298's default URI template
// (§3): /.well-known/masque/udp/{target_host}/{target_port}/.
const connectUDPPrefix = "/.well-known/masque/udp/"

// parseConnectUDPPath returns the target a CONNECT-UDP path names, its
// host in the form config.Destination compares.
func parseConnectUDPPath(escaped string) (string, uint16, error) {
	rest, ok := strings.CutPrefix(escaped, connectUDPPrefix)
	parts := strings.Split(strings.TrimSuffix(rest, "/"), "/")
	if !ok || len(parts) != 2 {
		return "", 0, fmt.Errorf("path %q is not %s{host}/{port}/", escaped, connectUDPPrefix)
	}
	// An IPv6 address has its colons percent-encoded (§3).
	host, err := url.PathUnescape(parts[0])
	if err != nil {
		return "", 0, err
	}
	return config.SplitDestination(net.JoinHostPort(host, parts[1]))
}

// serveConnectUDP answers an extended CONNECT with :protocol connect-udp.
// The route that matches it must allow UDP (connect.udp) and list the
// target, and the client's connection must carry HTTP Datagrams.
func (svc *service) serveConnectUDP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	if inEarlyData(r) {
		writeError(w, http.StatusTooEarly, "request in 0-RTT early data refused; retry after the handshake")
		return
	}
	route := svc.router.Load().match(r, normalizePath(r.URL.EscapedPath()))
	if route == nil || !route.tunnel.udp {
		refuseConnect(w)
		return
	}
	noteRoute(w, route)
	host, port, err := parseConnectUDPPath(r.URL.EscapedPath())
	if err != nil {
		writeError(w, http.StatusBadRequest, "CONNECT-UDP target: "+err.Error())
		return
	}
	if !route.tunnel.allows(host, port) {
		svc.log.Info("CONNECT-UDP destination refused", "route", route.name, "host", host, "port", port, "client", r.RemoteAddr)
		writeError(w, http.StatusForbidden, "CONNECT-UDP to this destination is not allowed")
		return
	}
	qc, _ := r.Context().Value(connKey{}).(*quic.Conn)
	if qc == nil || !qc.ConnectionState().SupportsDatagrams.Remote {
		writeError(w, http.StatusBadRequest, "CONNECT-UDP needs QUIC and HTTP datagrams (RFC 9221, RFC 9297)")
		return
	}
	d := net.Dialer{Timeout: route.tunnel.dialTimeout}
	conn, err := d.DialContext(r.Context(), "udp", net.JoinHostPort(host, strconv.Itoa(int(port))))
	if err != nil {
		if r.Context().Err() == nil {
			svc.log.Warn("CONNECT-UDP destination unreachable", "route", route.name, "host", host, "error", err)
			writeError(w, http.StatusBadGateway, "destination "+describe(err))
		}
		return
	}
	peer := connEnd{conn, conn}
	streamer, err := datagramStream(w)
	if err != nil {
		peer.close()
		writeError(w, http.StatusInternalServerError, "CONNECT-UDP not supported on this connection")
		return
	}
	// §3.2: the response says the stream carries capsules (RFC 9297 §3.4).
	w.Header().Set("Capsule-Protocol", "?1")
	w.WriteHeader(http.StatusOK)
	client, err := newDatagramEnd(streamer)
	if err != nil {
		peer.close()
		return
	}
	noteTunnel(w, http.StatusOK, time.Since(start))
	t := svc.newTunnel(route, TunnelConnectUDP, client, peer)
	done, err := t.register(r)
	if err != nil {
		t.closeFor("shutting down")
		return
	}
	defer done()
	t.run(route.tunnel.lifetime)
}

// datagramStream finds the HTTP/3 stream under w (through the observer's
// recorder) that carries the request's datagrams.
func datagramStream(w http.ResponseWriter) (http3.HTTPStreamer, error) {
	for {
		if s, ok := w.(http3.HTTPStreamer); ok {
			return s, nil
		}
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			return nil, errors.New("not an HTTP/3 stream")
		}
		w = u.Unwrap()
	}
}

// datagramEnd is the client's side of a CONNECT-UDP tunnel: each UDP
// payload travels in an HTTP Datagram with context ID 0 (RFC 9298 §4).
// The request stream itself carries only capsules, which spooky reads and
// ignores (RFC 9297 §3.2 allows it for unknown types): its end is the
// tunnel's.
type datagramEnd struct {
	str    *http3.Stream
	ctx    context.Context
	cancel context.CancelFunc
}

// newDatagramEnd takes the stream over, sending the response head written
// before.
func newDatagramEnd(s http3.HTTPStreamer) (*datagramEnd, error) {
	str, err := s.HTTPStream()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &datagramEnd{str: str, ctx: ctx, cancel: cancel}
	go func() {
		_, _ = io.Copy(io.Discard, str)
		cancel()
	}()
	return e, nil
}

func (e *datagramEnd) Read(p []byte) (int, error) {
	for {
		d, err := e.str.ReceiveDatagram(e.ctx)
		if err != nil {
			if e.ctx.Err() != nil {
				return 0, io.EOF
			}
			return 0, err
		}
		id, n, err := quicvarint.Parse(d)
		if err != nil || id != 0 {
			continue // §4: datagrams of unknown context IDs are dropped
		}
		return copy(p, d[n:]), nil
	}
}

func (e *datagramEnd) Write(p []byte) (int, error) {
	b := make([]byte, 1, 1+len(p)) // context ID 0
	if err := e.str.SendDatagram(append(b, p...)); err != nil {
		if _, ok := errors.AsType[*quic.DatagramTooLargeError](err); ok {
			return len(p), nil // UDP may lose it; the tunnel goes on
		}
		return 0, err
	}
	return len(p), nil
}

func (e *datagramEnd) closeWrite() error { return errNoHalfClose }

func (e *datagramEnd) closeRead() { e.close() }

func (e *datagramEnd) close() {
	e.cancel()
	e.str.CancelRead(quic.StreamErrorCode(http3.ErrCodeNoError))
	_ = e.str.Close()
}
