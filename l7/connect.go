// CONNECT tunnels (RFC 9110 §9.3.6; RFC 9113 §8.5 over HTTP/2; RFC 9114
// §4.4 over HTTP/3) to the destinations a route allows.

package l7

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/spooky-lb/spooky/config"
)

// connect opens a TCP connection to the request's authority, if route
// allows that destination, and relays between it and the client. The
// destination is checked as the client wrote it: a name against name
// patterns, an address literal against address and prefix patterns
// (config.ParseDestination). A refused destination is 403; a destination
// that cannot be reached is 502 (504 when the connect timed out), as RFC
// 9110 §9.3.6 leaves the failure's status to the proxy.
func (svc *service) connect(w http.ResponseWriter, r *http.Request, route *compiledRoute) {
	start := time.Now()
	host, port, err := config.SplitDestination(r.Host)
	if err != nil {
		writeError(w, http.StatusBadRequest, "CONNECT needs host:port")
		return
	}
	if !route.tunnel.allows(host, port) {
		svc.log.Info("CONNECT destination refused", "route", route.name, "destination", r.Host, "client", r.RemoteAddr)
		writeError(w, http.StatusForbidden, "CONNECT to this destination is not allowed")
		return
	}
	d := net.Dialer{Timeout: route.tunnel.dialTimeout, KeepAlive: 30 * time.Second}
	conn, err := d.DialContext(r.Context(), "tcp", net.JoinHostPort(host, strconv.Itoa(int(port))))
	if err != nil {
		if r.Context().Err() != nil {
			return
		}
		svc.log.Warn("CONNECT destination unreachable", "route", route.name, "destination", r.Host, "error", err)
		var dnsErr *net.DNSError
		switch {
		case isTimeout(err):
			writeError(w, http.StatusGatewayTimeout, "destination did not accept a connection in time")
		case errors.As(err, &dnsErr):
			writeError(w, http.StatusBadGateway, fmt.Sprintf("destination %s not found", host))
		default:
			writeError(w, http.StatusBadGateway, "destination "+describe(err))
		}
		return
	}
	peer := connEnd{conn, conn}
	if r.ProtoMajor == 1 {
		svc.hijackTunnel(w, r, route, TunnelConnect, peer, "HTTP/1.1 200 Connection established\r\n", http.Header{}, http.StatusOK, start)
		return
	}
	svc.streamTunnel(w, r, route, TunnelConnect, peer, nil, start)
}
