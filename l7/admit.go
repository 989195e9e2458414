// Which requests are proxied: CONNECT is refused.

package l7

import (
	"net/http"
)

// allowedMethods is the Allow field of a 405 answer to CONNECT: the methods
// the proxy forwards (RFC 9110 §15.5.6 requires the field in a 405).
const allowedMethods = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"

// refuseConnect answers CONNECT, plain (a tunnel, RFC 9110 §9.3.6) or
// extended (RFC 8441, RFC 9220: WebSockets and the like over HTTP/2 and
// HTTP/3): spooky routes requests to upstreams and opens no tunnels, and
// forwarding CONNECT as an ordinary request would ask an upstream to open one.
func refuseConnect(w http.ResponseWriter) {
	w.Header().Set("Allow", allowedMethods)
	writeError(w, http.StatusMethodNotAllowed, "CONNECT is not supported")
}
