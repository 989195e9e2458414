package l7

import (
	"io"
	"net/http"
	"sync"
	"time"
)

// Observer is told of the request tier's traffic, for metrics. Its methods
// are called on the serving goroutines, concurrently, and must be cheap and
// not block.
type Observer interface {
	// ObserveRequest is called once per client request, after the response
	// was written (or the handler gave up on it). route and pool are empty
	// when no route matched; upstream is the one whose response the client
	// got, empty when none answered (an error spooky wrote itself, such as
	// 404, 502, 503 or 504). status is the status the client got: 0 if the
	// client left before any was written. took runs from the start of the
	// handler to the end of the response body.
	ObserveRequest(service, route, pool, upstream string, status int, took time.Duration)
	// ConnOpened is called when service accepts a connection; proto is
	// "quic" or "tcp".
	ConnOpened(service, proto string)
	// ConnClosed is called once for every ConnOpened, when the connection ends.
	ConnClosed(service, proto string)
}

// Connection protocols passed to an Observer.
const (
	ProtoQUIC = "quic"
	ProtoTCP  = "tcp"
)

// recorder is the per-request record behind Observer.ObserveRequest: it
// wraps the client's ResponseWriter to see the status, and the handler
// fills in the route, pool and answering upstream. Recorders are pooled,
// so observing costs no allocation per request.
type recorder struct {
	http.ResponseWriter
	status      int
	route, pool string
	upstream    string
	// tunnelTook, set when the request opened a tunnel, is the time the
	// handshake took: the request is reported when the tunnel ends, and
	// its lifetime is not the request's latency.
	tunnelTook time.Duration
}

var recorderPool = sync.Pool{New: func() any { return new(recorder) }}

func getRecorder(w http.ResponseWriter) *recorder {
	rec := recorderPool.Get().(*recorder)
	rec.ResponseWriter = w
	return rec
}

func putRecorder(rec *recorder) {
	*rec = recorder{}
	recorderPool.Put(rec)
}

// WriteHeader records the final status; 1xx responses are interim (RFC
// 9110 §15.2) and are not what the client ends up with.
func (rec *recorder) WriteHeader(code int) {
	if rec.status == 0 && code >= 200 {
		rec.status = code
	}
	rec.ResponseWriter.WriteHeader(code)
}

func (rec *recorder) Write(b []byte) (int, error) {
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	return rec.ResponseWriter.Write(b)
}

// WriteString keeps the wrapped writer's io.StringWriter, which spares a
// copy of the string.
func (rec *recorder) WriteString(str string) (int, error) {
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	return io.WriteString(rec.ResponseWriter, str)
}

// Flush keeps the wrapped writer's http.Flusher visible to type assertions.
func (rec *recorder) Flush() { _ = rec.FlushError() }

// FlushError is what http.ResponseController.Flush calls first; it passes
// the wrapped writer's error on.
func (rec *recorder) FlushError() error {
	switch f := rec.ResponseWriter.(type) {
	case interface{ FlushError() error }:
		return f.FlushError()
	case http.Flusher:
		f.Flush()
		return nil
	}
	return http.ErrNotSupported
}

// Unwrap lets http.ResponseController reach the client's writer.
func (rec *recorder) Unwrap() http.ResponseWriter { return rec.ResponseWriter }

// statusFor is the status to report for r once the handler returned: net/http
// and http3 answer 200 for a handler that wrote nothing, unless the client
// is gone.
func (rec *recorder) statusFor(r *http.Request) int {
	if rec.status == 0 && r.Context().Err() == nil {
		return http.StatusOK
	}
	return rec.status
}

// noteUpstream records, for the observer, that u answered the request
// whose writer is w. It is a no-op without an observer.
func noteUpstream(w http.ResponseWriter, u *Upstream) {
	if rec, ok := w.(*recorder); ok {
		rec.upstream = u.name
	}
}

// noteTunnel records that the request opened a tunnel after took, and
// the status the client got (an HTTP/1.1 tunnel's status line is written
// on the hijacked connection, past the recorder).
func noteTunnel(w http.ResponseWriter, status int, took time.Duration) {
	if rec, ok := w.(*recorder); ok {
		rec.tunnelTook = max(took, 1)
		if rec.status == 0 {
			rec.status = status
		}
	}
}

// noteRoute records the matched route and its pool.
func noteRoute(w http.ResponseWriter, route *compiledRoute) {
	if rec, ok := w.(*recorder); ok {
		rec.route, rec.pool = route.name, route.pool.name
	}
}
