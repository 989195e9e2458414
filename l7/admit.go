// Which requests are proxied and how they are marked: CONNECT no route
// allows is refused, early data is recognised, ambiguous HTTP/1.x framing
// closes the connection.

package l7

import (
	"net/http"

	"github.com/quic-go/quic-go"
)

// allowedMethods is the Allow field of a 405 answer to CONNECT: the methods
// the proxy forwards (RFC 9110 §15.5.6 requires the field in a 405).
const allowedMethods = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"

// refuseConnect answers a CONNECT that no route allows: plain (a tunnel,
// RFC 9110 §9.3.6) where the matching route has no connect section, or
// extended (RFC 8441, RFC 9220) for a protocol spooky does not serve.
// Forwarding CONNECT as an ordinary request would ask an upstream to open
// a tunnel; spooky opens its own only where a route says so (tunnel.go).
func refuseConnect(w http.ResponseWriter) {
	w.Header().Set("Allow", allowedMethods)
	writeError(w, http.StatusMethodNotAllowed, "CONNECT is not supported")
}

// inEarlyData reports an HTTP/3 request handled before its connection's
// handshake completed: it can only have come in 0-RTT (RFC 9001 §4.6.1),
// so it might be a replay (RFC 8470 §1). quic-go does not say which packets
// carried a stream, so a 0-RTT request whose handler starts only after the
// handshake completed is not reported; that copy is the client's own, since
// a replayed flight never completes a handshake, and every replay of it is
// reported and marked.
func inEarlyData(r *http.Request) bool {
	c, ok := r.Context().Value(connKey{}).(*quic.Conn)
	if !ok {
		return false
	}
	select {
	case <-c.HandshakeComplete():
		return false
	default:
		return true
	}
}

// closeAfter reports an HTTP/1.x request after which the connection must
// close because its framing may be ambiguous. RFC 9112 §6.1 requires it
// after a request with both Transfer-Encoding and Content-Length (a request
// smuggling attempt, §11.2) and after an HTTP/1.0 request with
// Transfer-Encoding; net/http drops the Content-Length of the first and the
// Transfer-Encoding of the second before a handler runs, so every chunked
// request and every HTTP/1.0 request closes its connection: what follows on
// it is never read as another request. Clients rarely send either.
func closeAfter(r *http.Request) bool {
	if r.ProtoMajor != 1 {
		return false
	}
	return r.ProtoMinor == 0 || len(r.TransferEncoding) > 0
}
