package l7

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/quic-go/quic-go"
)

// errRouteTimeout is the cancel cause when a route's Timeout passes before
// the upstream's response headers arrive.
var errRouteTimeout = errors.New("route timeout")

// hopByHop are the connection-specific fields of RFC 9110 §7.6.1 (plus the
// obsolete Proxy-Connection and Keep-Alive still sent by old clients); they
// are never forwarded. Fields named in Connection are removed too.
var hopByHop = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

func removeHopByHop(h http.Header) {
	for _, v := range h["Connection"] {
		for f := range strings.SplitSeq(v, ",") {
			if f = strings.TrimSpace(f); f != "" {
				h.Del(f)
			}
		}
	}
	te := h.Get("Te")
	for _, k := range hopByHop {
		delete(h, k)
	}
	// "TE: trailers" is end-to-end in meaning for gRPC over HTTP/2 and is
	// kept, as net/http/httputil does.
	if strings.Contains(strings.ToLower(te), "trailers") {
		h.Set("Te", "trailers")
	}
}

// isIdempotent reports RFC 9110 §9.2.2 idempotent methods.
func isIdempotent(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// bodyExpected reports methods whose requests usually carry content.
func bodyExpected(m string) bool {
	return m == http.MethodPost || m == http.MethodPut || m == http.MethodPatch
}

// isSafe reports RFC 9110 §9.2.1 safe methods served in 0-RTT (RFC 8470 §3
// leaves the choice to the server; we follow the common GET/HEAD/OPTIONS).
func isSafe(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// writeError answers with a short plain-text body naming the cause.
func writeError(w http.ResponseWriter, status int, msg string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	if status == http.StatusServiceUnavailable {
		h.Set("Retry-After", strconv.Itoa(int(DefaultRetryAfter/time.Second)))
	}
	w.WriteHeader(status)
	_, _ = io.WriteString(w, "spooky: "+msg+"\n")
}

// clientIP is the address part of r.RemoteAddr.
func clientIP(r *http.Request) string {
	if h, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return h
	}
	return r.RemoteAddr
}

// viaValue is the Via field value (RFC 9110 §7.6.3) for a message of the
// given protocol version; the common versions are constants, so the hot
// path does not allocate for them.
func viaValue(major, minor int) string {
	switch {
	case major == 3:
		return "3 spooky"
	case major == 2:
		return "2 spooky"
	case major == 1 && minor == 1:
		return "1.1 spooky"
	case major == 1 && minor == 0:
		return "1.0 spooky"
	case major > 2:
		return strconv.Itoa(major) + " spooky"
	}
	return strconv.Itoa(major) + "." + strconv.Itoa(minor) + " spooky"
}

// setForwarded adds RFC 7239 Forwarded and the de facto X-Forwarded-* fields.
// The new fields share one backing array and the keys are written in their
// canonical form directly: this runs for every request.
func setForwarded(out *http.Request, in *http.Request, ip string, trust bool) {
	h := out.Header
	if !trust {
		delete(h, "Forwarded")
		delete(h, "X-Forwarded-For")
		delete(h, "X-Forwarded-Proto")
		delete(h, "X-Forwarded-Host")
	}
	vals := make([]string, 0, 4)
	set := func(k, v string) {
		vals = append(vals, v)
		h[k] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
	if prior := h.Get("X-Forwarded-For"); prior != "" {
		set("X-Forwarded-For", prior+", "+ip)
	} else {
		set("X-Forwarded-For", ip)
	}
	// A trusted previous proxy's view of scheme and host is kept.
	if !trust || h.Get("X-Forwarded-Proto") == "" {
		set("X-Forwarded-Proto", "https")
	}
	if !trust || h.Get("X-Forwarded-Host") == "" {
		set("X-Forwarded-Host", in.Host)
	}
	// RFC 7239 §4: for=node;host="...";proto=https, the host a quoted
	// string; §6: IPv6 addresses are bracketed and quoted.
	var buf [128]byte
	b := append(buf[:0], "for="...)
	if strings.Contains(ip, ":") {
		b = append(append(append(b, `"[`...), ip...), `]"`...)
	} else {
		b = append(b, ip...)
	}
	b = append(b, ";host="...)
	b = strconv.AppendQuote(b, in.Host)
	b = append(b, ";proto=https"...)
	elem := string(b)
	if prior := h["Forwarded"]; len(prior) > 0 {
		h["Forwarded"] = append(prior, elem)
	} else {
		set("Forwarded", elem)
	}
}

// replayBody lets a request body be re-sent on a retry as long as nothing
// was read from it; transports close bodies on failure, so Close is held back
// until bytes flowed. At EOF it copies the client's trailers, which the
// HTTP/3 server fills only then, into the outgoing request. It also tells
// the client's failures from the upstream's: whether the client's body
// failed to read, and whether a read is waiting on the client right now.
type replayBody struct {
	rc      io.ReadCloser
	in      *http.Request
	out     *http.Request
	waiting atomic.Bool  // a Read is blocked on the client
	stalled atomic.Bool  // the route timed out while a Read waited on the client
	waited  atomic.Int64 // time spent blocked on the client in Read, ns
	mu      sync.Mutex
	read    bool  // a byte was read: the body cannot be sent again
	closed  bool  // closed by a transport: later read errors are ours
	err     error // the first error reading the client's body, EOF aside
}

func (b *replayBody) Read(p []byte) (int, error) {
	b.waiting.Store(true)
	t0 := time.Now()
	n, err := b.rc.Read(p)
	b.waited.Add(int64(time.Since(t0)))
	b.waiting.Store(false)
	if n > 0 || (err != nil && err != io.EOF) {
		b.mu.Lock()
		if n > 0 {
			b.read = true
		}
		if err != nil && err != io.EOF && !b.closed && b.err == nil {
			b.err = err
		}
		b.mu.Unlock()
	}
	if err == io.EOF && b.out.Trailer != nil {
		for k, v := range b.in.Trailer {
			b.out.Trailer[k] = v
		}
	}
	return n, err
}

func (b *replayBody) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.read || b.closed {
		return nil
	}
	b.closed = true
	return b.rc.Close()
}

func (b *replayBody) consumed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.read
}

// clientErr is the error the client's body failed with, if it did.
func (b *replayBody) clientErr() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

// clientFailed reports a body the client did not deliver whole: it failed
// to read, or it stalled past the route's timeout.
func (b *replayBody) clientFailed() bool {
	return b.stalled.Load() || b.clientErr() != nil
}

var copyBufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// proxy sends r to route's pool and copies the answer to w. path is the
// request's path in normal form (normalizePath), the one route matched;
// early reports a request received in TLS early data (0-RTT).
func (s *service) proxy(w http.ResponseWriter, r *http.Request, route *compiledRoute, path string, early bool) {
	start := time.Now()
	ip := clientIP(r)

	ctx, cancel := context.WithCancelCause(r.Context())
	defer cancel(nil)

	out := r.Clone(ctx)
	out.RequestURI = ""
	out.Close = false
	// The upstream resolves the path the route matched, spelled as it was
	// matched: "%2F" stays encoded, never a separator.
	setEscapedPath(out.URL, path)
	removeHopByHop(out.Header)
	if early {
		// RFC 8470 §5.1: a request forwarded before the client's handshake
		// completed might be a replay; the upstream decides, and may answer
		// 425, which goes back to the client as it is.
		out.Header.Set("Early-Data", "1")
	}
	setForwarded(out, r, ip, s.trustForwarded.Load())
	out.Header.Add("Via", viaValue(r.ProtoMajor, r.ProtoMinor))
	route.transforms.request(out)
	if len(r.Trailer) > 0 {
		out.Trailer = make(http.Header, len(r.Trailer))
		for k := range r.Trailer {
			out.Trailer[k] = nil
		}
	} else {
		out.Trailer = nil
	}
	var body *replayBody
	if r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
		body = &replayBody{rc: r.Body, in: r, out: out}
		out.Body = body
		if r.ContentLength == -1 && !bodyExpected(r.Method) {
			// HTTP/3 cannot tell an absent body from one of unknown length
			// (RFC 9114 §4.1). ContentLength 0 with a body makes net/http
			// probe it and send none if it is empty, instead of a chunked GET.
			out.ContentLength = 0
		}
	} else {
		out.Body = http.NoBody
		out.ContentLength = 0
	}
	if out.Header.Get("User-Agent") == "" {
		out.Header["User-Agent"] = []string{""} // keep Go from adding its own
	}
	timer := time.AfterFunc(route.timeout, func() {
		if body != nil && body.waiting.Load() {
			// The upload is what is late. An HTTP/1.1 transport waits for
			// its body reader before it returns, so the read waiting on the
			// client is ended here, or the timeout would never answer.
			body.stalled.Store(true)
			_ = http.NewResponseController(w).SetReadDeadline(time.Now())
		}
		cancel(errRouteTimeout)
	})
	defer timer.Stop()

	var triedBuf [4]*Upstream // retries rarely go past a few upstreams
	tried := triedBuf[:0]
	var lastErr error
	var lastUp *Upstream
	attempts := 0
	for {
		u := route.pool.Select(r, ip, tried)
		if u == nil {
			break
		}
		tried = append(tried, u)
		if !u.begin() {
			continue // became full or its breaker closed meanwhile
		}
		attempts++
		out.URL.Scheme = u.scheme
		out.URL.Host = u.cfg.Address
		t0 := time.Now()
		var waited0 int64
		if body != nil {
			waited0 = body.waited.Load()
		}
		res, err := u.transport.RoundTrip(out)
		latency := time.Since(t0)
		if body != nil {
			// A slow upload is the client's time, not the upstream's: the
			// breaker's latency threshold and the latency-aware policies
			// see only the rest.
			latency = max(latency-time.Duration(body.waited.Load()-waited0), 0)
		}
		if body != nil && body.clientFailed() {
			// A body the client garbled, cut short or stopped sending is no
			// verdict on the upstream, whether the attempt failed or the
			// upstream answered the broken request anyway.
			timer.Stop()
			if err == nil {
				res.Body.Close()
			}
			u.end()
			u.breaker.release()
			s.log.Debug("client request body failed", "route", route.name, "upstream", u.name,
				"stalled", body.stalled.Load(), "error", body.clientErr(), "upstream_error", err)
			if r.Context().Err() == nil {
				clientBodyFailed(w, r, body.stalled.Load())
			}
			return
		}
		if err == nil {
			timer.Stop()
			u.observe(latency)
			u.breaker.RecordMetric(res.StatusCode, latency)
			noteUpstream(w, u)
			s.copyResponse(w, res, route)
			u.end()
			return
		}
		u.end()
		if r.Context().Err() != nil {
			// The client left; there is nobody to answer and the upstream is not to blame.
			u.breaker.release()
			return
		}
		timedOut := errors.Is(context.Cause(ctx), errRouteTimeout)
		u.breaker.RecordMetric(0, latency)
		lastErr, lastUp = err, u
		if timedOut {
			s.log.Warn("upstream timed out", "route", route.name, "upstream", u.name, "timeout", route.timeout, "error", err)
			writeError(w, http.StatusGatewayTimeout, fmt.Sprintf("upstream timed out after %s", route.timeout))
			return
		}
		s.log.Debug("upstream attempt failed", "route", route.name, "upstream", u.name, "error", err)
		dialFailed := isDialError(err)
		retryable := (dialFailed || isIdempotent(r.Method)) &&
			(body == nil || !body.consumed()) &&
			attempts <= route.retry.Attempts &&
			time.Since(start) < route.retry.Window
		if !retryable {
			break
		}
	}
	if lastErr == nil {
		writeError(w, http.StatusServiceUnavailable, fmt.Sprintf("no available upstream in pool %s", route.pool.name))
		return
	}
	// Addresses and the transport's own words go to the log, not to the
	// client: they map the internal network.
	s.log.Warn("upstream request failed", "route", route.name, "upstream", lastUp.name, "attempts", attempts, "error", lastErr)
	if isTimeout(lastErr) && !isDialError(lastErr) {
		writeError(w, http.StatusGatewayTimeout, "upstream timed out")
		return
	}
	writeError(w, http.StatusBadGateway, "upstream "+describe(lastErr))
}

// clientBodyFailed answers a request whose body the client did not deliver:
// 408 when it stalled past the route's timeout (RFC 9110 §15.5.9), 400 when
// it was malformed or cut short (§15.5.1). An HTTP/1.1 connection is closed
// after the answer, since the rest of its bytes cannot be framed (RFC 9112
// §6.3, §9.6).
func clientBodyFailed(w http.ResponseWriter, r *http.Request, stalled bool) {
	if r.ProtoMajor == 1 {
		w.Header().Set("Connection", "close")
	}
	if stalled {
		writeError(w, http.StatusRequestTimeout, "request body not received in time")
		return
	}
	writeError(w, http.StatusBadRequest, "malformed or incomplete request body")
}

// isDialError reports failures to establish a connection, when the request
// was certainly not sent, so any method may be retried.
func isDialError(err error) bool {
	if ope, ok := errors.AsType[*net.OpError](err); ok && ope.Op == "dial" {
		return true
	}
	if _, ok := errors.AsType[*quic.HandshakeTimeoutError](err); ok {
		return true
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}

func isTimeout(err error) bool {
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		return true
	}
	return errors.Is(err, context.DeadlineExceeded)
}

// describe names the cause of a transport error in a few words.
func describe(err error) string {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused the connection"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF),
		// Writing the request body when the upstream has gone: the
		// write meets its close (EPIPE) or net/http's read side has
		// seen it first and closed the connection (net.ErrClosed).
		errors.Is(err, syscall.EPIPE), errors.Is(err, net.ErrClosed):
		return "reset the connection"
	case isDialError(err) && isTimeout(err):
		return "did not accept a connection in time"
	}
	if _, ok := errors.AsType[*quic.ApplicationError](err); ok {
		return "closed the connection"
	}
	if _, ok := errors.AsType[*quic.StreamError](err); ok {
		return "reset the stream"
	}
	return "failed"
}

// copyResponse streams the upstream's response to the client.
func (s *service) copyResponse(w http.ResponseWriter, res *http.Response, route *compiledRoute) {
	defer res.Body.Close()
	removeHopByHop(res.Header)
	h := w.Header()
	for k, v := range res.Header {
		h[k] = v
	}
	h.Add("Via", viaValue(res.ProtoMajor, res.ProtoMinor))
	if len(res.Trailer) > 0 {
		names := make([]string, 0, len(res.Trailer))
		for k := range res.Trailer {
			names = append(names, k)
		}
		h["Trailer"] = []string{strings.Join(names, ", ")}
	}
	route.transforms.response(h)
	w.WriteHeader(res.StatusCode)

	// Stream bodies of unknown length (server-sent events, gRPC) as they
	// come; for known lengths the writer's own buffering is cheaper.
	var rc *http.ResponseController
	if res.ContentLength == -1 {
		rc = http.NewResponseController(w)
	}
	bp := copyBufPool.Get().(*[]byte)
	defer copyBufPool.Put(bp)
	buf := *bp
	for {
		n, rerr := res.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return // client gone; the deferred Close stops the upstream
			}
			if rc != nil {
				_ = rc.Flush()
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			// The status line is out; all we can do is abort the stream so
			// the client sees a truncated response, not a complete one.
			s.log.Debug("upstream body read failed", "route", route.name, "error", rerr)
			panic(http.ErrAbortHandler)
		}
	}
	// Declared above, so set under their own names (net/http and quic-go's
	// http3 both send declared trailers from the header map after the body).
	for k, v := range res.Trailer {
		h[k] = v
	}
}
