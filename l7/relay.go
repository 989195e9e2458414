// The relay of a tunnel: its two ends and the pumps between them, with the
// idle timeout and lifetime.

package l7

import (
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

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

// hijackTunnel takes over an HTTP/1.1 client's connection, writes the
// response head (status line head, then hdr) and relays between it and
// peer. status is what the observer is told the client got.
func (svc *service) hijackTunnel(w http.ResponseWriter, r *http.Request, route *compiledRoute, kind string, peer connEnd, head string, hdr http.Header, status int, start time.Time) {
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		peer.close()
		svc.log.Warn("hijack for tunnel failed", "route", route.name, "error", err)
		writeError(w, http.StatusInternalServerError, "tunnel not supported on this connection")
		return
	}
	// net/http's header read deadline must not end the tunnel.
	_ = conn.SetDeadline(time.Time{})
	t := svc.newTunnel(route, kind, connEnd{conn, brw.Reader}, peer)
	done, err := t.register(r)
	if err != nil {
		_, _ = brw.WriteString("HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
		_ = brw.Flush()
		_ = conn.Close()
		peer.close()
		noteTunnel(w, http.StatusServiceUnavailable, time.Since(start))
		return
	}
	defer done()
	_, _ = brw.WriteString(head)
	_ = hdr.Write(brw)
	_, _ = brw.WriteString("\r\n")
	if err := brw.Flush(); err != nil {
		_ = conn.Close()
		peer.close()
		return
	}
	noteTunnel(w, status, time.Since(start))
	t.run(route.tunnel.lifetime)
}

// streamTunnel answers an HTTP/2 or HTTP/3 client's (extended) CONNECT
// with 200 and hdr and relays between its stream and peer.
func (svc *service) streamTunnel(w http.ResponseWriter, r *http.Request, route *compiledRoute, kind string, peer connEnd, hdr http.Header, start time.Time) {
	t := svc.newTunnel(route, kind, newStreamEnd(w, r), peer)
	done, err := t.register(r)
	if err != nil {
		peer.close()
		writeError(w, http.StatusServiceUnavailable, "server shutting down")
		return
	}
	defer done()
	h := w.Header()
	for k, v := range hdr {
		h[k] = v
	}
	w.WriteHeader(http.StatusOK)
	if err := http.NewResponseController(w).Flush(); err != nil {
		peer.close()
		return
	}
	noteTunnel(w, http.StatusOK, time.Since(start))
	t.run(route.tunnel.lifetime)
}
