package l7

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

func TestTCPListenerServesTheSameRoutesAndAdvertisesHTTP3(t *testing.T) {
	cert := mustCert(t, "app.example.com")
	up := mustUpstream(t, ProtoH1, "u", nil)
	cfg := oneService(t, cert, PoolConfig{Upstreams: []UpstreamConfig{up}})
	cfg.Services[0].TCP = true
	s := mustServer(t, cfg)
	addr := mustAddr(t, s)
	_, port, _ := net.SplitHostPort(addr)
	for _, tc := range []struct {
		name      string
		h2        bool
		wantProto string
	}{
		{"an HTTP/1.1 client over TLS is proxied", false, "HTTP/1.1"},
		{"an HTTP/2 client over TLS is proxied", true, "HTTP/2.0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := &http.Transport{
				TLSClientConfig: &tls.Config{RootCAs: cert.pool},
				DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
					return (&net.Dialer{}).DialContext(ctx, network, addr)
				},
			}
			p := new(http.Protocols)
			p.SetHTTP1(!tc.h2)
			p.SetHTTP2(tc.h2)
			tr.Protocols = p
			defer tr.CloseIdleConnections()
			req, _ := http.NewRequest("GET", "https://app.example.com/x", nil)
			if !tc.h2 { // HTTP/2 forbids Connection (RFC 9113 §8.2.2)
				req.Header.Set("Connection", "X-Hop")
				req.Header.Set("X-Hop", "secret")
			}
			res, body := mustDo(t, &http.Client{Transport: tr}, req)
			if res.StatusCode != 200 || body != "u /x" || res.Proto != tc.wantProto {
				t.Fatalf("got %s %d %q", res.Proto, res.StatusCode, body)
			}
			if got, want := res.Header.Get("Alt-Svc"), fmt.Sprintf(`h3=":%s"; ma=86400`, port); got != want {
				t.Errorf("Alt-Svc = %q, want %q", got, want)
			}
			if got := res.Header.Get("X-Seen-X-Hop"); got != "" {
				t.Errorf("a field named in Connection reached the upstream: %q", got)
			}
		})
	}
}

// capturingClient is an HTTP/3 client that hands out its QUIC connections.
func capturingClient(tb testing.TB, cert testCert, addr string) (*http.Client, <-chan *quic.Conn) {
	tb.Helper()
	conns := make(chan *quic.Conn, 16)
	tr := &http3.Transport{
		TLSClientConfig: &tls.Config{RootCAs: cert.pool},
		QUICConfig:      &quic.Config{MaxIdleTimeout: time.Minute},
		Dial: func(ctx context.Context, _ string, tc *tls.Config, qc *quic.Config) (*quic.Conn, error) {
			c, err := quic.DialAddrEarly(ctx, addr, tc, qc)
			if err == nil {
				conns <- c
			}
			return c, err
		},
	}
	tb.Cleanup(func() { tr.Close() })
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}, conns
}

func TestIdleConnectionsTimeOut(t *testing.T) {
	cert := mustCert(t, "app.example.com")
	up := mustUpstream(t, ProtoH1, "u", nil)
	cfg := oneService(t, cert, PoolConfig{Upstreams: []UpstreamConfig{up}})
	cfg.Services[0].IdleTimeout = 300 * time.Millisecond
	s := mustServer(t, cfg)
	c, conns := capturingClient(t, cert, mustAddr(t, s))
	if res, _ := mustGet(t, c, "https://app.example.com/"); res.StatusCode != 200 {
		t.Fatalf("status %d", res.StatusCode)
	}
	conn := <-conns
	select {
	case <-conn.Context().Done():
		t.Logf("closed: %v", context.Cause(conn.Context()))
	case <-time.After(5 * time.Second):
		t.Fatal("an idle connection was still open 5s after a 300ms idle timeout")
	}
}

func TestGracefulShutdown(t *testing.T) {
	cert := mustCert(t, "app.example.com")
	arrived := make(chan struct{})
	release := make(chan struct{})
	up := mustUpstream(t, ProtoH1, "slow", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		<-release
		io.WriteString(w, "finished")
	}))
	s := mustServer(t, oneService(t, cert, PoolConfig{Upstreams: []UpstreamConfig{up}}))
	addr := mustAddr(t, s)
	c, _ := h3Client(t, cert, addr)

	type result struct {
		status int
		body   string
		err    error
	}
	inflight := make(chan result, 1)
	go func() {
		res, err := c.Get("https://app.example.com/slow")
		if err != nil {
			inflight <- result{err: err}
			return
		}
		b, err := io.ReadAll(res.Body)
		res.Body.Close()
		inflight <- result{res.StatusCode, string(b), err}
	}()
	<-arrived

	shutdownDone := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shutdownDone <- s.Shutdown(ctx)
	}()

	// New connections are refused once shutdown has begun.
	waitFor(t, 5*time.Second, "new connections to be refused", func() bool {
		fresh, _ := h3Client(t, cert, addr)
		fresh.Timeout = time.Second
		res, err := fresh.Get("https://app.example.com/new")
		if err == nil {
			res.Body.Close()
		}
		return err != nil
	})
	select {
	case err := <-shutdownDone:
		t.Fatalf("shutdown returned (%v) while a request was in flight", err)
	default:
	}
	close(release)
	r := <-inflight
	if r.err != nil || r.status != 200 || r.body != "finished" {
		t.Fatalf("in-flight request: %d %q %v, want 200 finished", r.status, r.body, r.err)
	}
	select {
	case err := <-shutdownDone:
		if err != nil {
			t.Fatalf("shutdown: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("shutdown did not return after the last request finished")
	}
}

func TestShutdownDeadlineCutsOffLongRequests(t *testing.T) {
	cert := mustCert(t, "app.example.com")
	arrived := make(chan struct{})
	var once sync.Once
	up := mustUpstream(t, ProtoH1, "stuck", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		once.Do(func() { close(arrived) })
		<-r.Context().Done()
	}))
	s := mustServer(t, oneService(t, cert, PoolConfig{Upstreams: []UpstreamConfig{up}}))
	c, _ := h3Client(t, cert, mustAddr(t, s))
	go func() {
		if res, err := c.Get("https://app.example.com/"); err == nil {
			res.Body.Close()
		}
	}()
	<-arrived
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := s.Shutdown(ctx)
	if err == nil {
		t.Fatal("shutdown reported success while a request was stuck")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("shutdown took %s with a 200ms deadline", d)
	}
}

func TestZeroRTT(t *testing.T) {
	cert := mustCert(t, "app.example.com")
	up := mustUpstream(t, ProtoH1, "u", nil)
	for _, tc := range []struct {
		name      string
		allow     bool
		wantEarly bool
	}{
		{"with 0-RTT off, resumed connections do not use early data", false, false},
		{"with 0-RTT on, safe requests are served and others get 425", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := oneService(t, cert, PoolConfig{Upstreams: []UpstreamConfig{up}})
			cfg.Services[0].Allow0RTT = tc.allow
			s := mustServer(t, cfg)
			addr := mustAddr(t, s)
			tlsConf := &tls.Config{RootCAs: cert.pool, ServerName: "app.example.com", ClientSessionCache: tls.NewLRUClientSessionCache(8), NextProtos: []string{http3.NextProtoH3}}
			tr := &http3.Transport{}
			defer tr.Close()

			// First connection: obtain a session ticket.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			first, err := quic.DialAddrEarly(ctx, addr, tlsConf, &quic.Config{})
			if err != nil {
				t.Fatal(err)
			}
			cc := tr.NewClientConn(first)
			req, _ := http.NewRequest("GET", "https://app.example.com/", nil)
			res, err := cc.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			first.CloseWithError(0, "")

			// Hold back the client's handshake completion so the server
			// sees the 0-RTT request before the handshake is done, as it
			// would on a long path.
			udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			qtr := &quic.Transport{Conn: &handshakeDelayConn{PacketConn: udp, delay: 300 * time.Millisecond}}
			defer qtr.Close()
			raddr, _ := net.ResolveUDPAddr("udp", addr)
			second, err := qtr.DialEarly(ctx, raddr, tlsConf, &quic.Config{})
			if err != nil {
				t.Fatal(err)
			}
			defer second.CloseWithError(0, "")
			cc = tr.NewClientConn(second)
			// A POST written before the handshake completes goes out as 0-RTT.
			str, err := cc.OpenRequestStream(ctx)
			if err != nil {
				t.Fatal(err)
			}
			post, _ := http.NewRequest("POST", "https://app.example.com/", nil) // body written on the stream below
			if err := str.SendRequestHeader(post); err != nil {
				t.Fatal(err)
			}
			str.Write([]byte("x"))
			str.Close()
			// A GET sent as 0-RTT is served.
			get, _ := http.NewRequest(http3.MethodGet0RTT, "https://app.example.com/", nil)
			getRes, err := cc.RoundTrip(get)
			if err != nil {
				t.Fatal(err)
			}
			getRes.Body.Close()
			if getRes.StatusCode != 200 {
				t.Fatalf("GET status %d, want 200", getRes.StatusCode)
			}
			postRes, err := str.ReadResponse()
			if err != nil {
				t.Fatal(err)
			}
			<-second.HandshakeComplete()
			if used := second.ConnectionState().Used0RTT; used != tc.wantEarly {
				t.Fatalf("Used0RTT = %v, want %v", used, tc.wantEarly)
			}
			wantPost := 200
			if tc.wantEarly {
				wantPost = http.StatusTooEarly
			}
			if postRes.StatusCode != wantPost {
				t.Fatalf("POST status %d, want %d", postRes.StatusCode, wantPost)
			}
		})
	}
}

// handshakeDelayConn passes the client's first datagram (its Initial with
// 0-RTT) at once and delays later Initial/Handshake datagrams, which carry
// the client's Finished (RFC 9001 §4.1.2).
type handshakeDelayConn struct {
	net.PacketConn
	delay time.Duration
	mu    sync.Mutex
	sent  int
}

func (c *handshakeDelayConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	c.mu.Lock()
	c.sent++
	first := c.sent == 1
	c.mu.Unlock()
	// Long header (RFC 9000 §17.2): type bits 0x30; 0x10 is 0-RTT.
	if !first && len(p) > 0 && p[0]&0x80 != 0 && p[0]&0x30 != 0x10 {
		b := bytes.Clone(p)
		time.AfterFunc(c.delay, func() { _, _ = c.PacketConn.WriteTo(b, addr) })
		return len(p), nil
	}
	return c.PacketConn.WriteTo(p, addr)
}

func TestShutdownTellsOpenConnectionsToGoAway(t *testing.T) {
	cert := mustCert(t, "app.example.com")
	arrived := make(chan struct{}, 1)
	release := make(chan struct{})
	up := mustUpstream(t, ProtoH1, "u", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			arrived <- struct{}{}
			select {
			case <-release:
			case <-r.Context().Done(): // the test failed and is cleaning up
				return
			}
		}
		io.WriteString(w, "finished")
	}))
	cfg := oneService(t, cert, PoolConfig{Upstreams: []UpstreamConfig{up}})
	// Long idle timeouts on both sides: a request left unanswered would hang
	// past the test's deadline instead of ending for another reason.
	cfg.Services[0].IdleTimeout = time.Minute
	s := mustServer(t, cfg)
	addr := mustAddr(t, s)
	tr := &http3.Transport{
		TLSClientConfig: &tls.Config{RootCAs: cert.pool},
		QUICConfig:      &quic.Config{MaxIdleTimeout: time.Minute, HandshakeIdleTimeout: time.Minute},
		Dial: func(ctx context.Context, _ string, tc *tls.Config, qc *quic.Config) (*quic.Conn, error) {
			return quic.DialAddr(ctx, addr, tc, qc)
		},
	}
	t.Cleanup(func() { tr.Close() })
	c := &http.Client{Transport: tr}

	// One connection: a first request opens it, a slow one stays in flight.
	if res, body := mustGet(t, c, "https://app.example.com/first"); res.StatusCode != 200 {
		t.Fatalf("first request: %d %q", res.StatusCode, body)
	}
	inflight := make(chan string, 1)
	go func() {
		res, err := c.Get("https://app.example.com/slow")
		if err != nil {
			inflight <- err.Error()
			return
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		inflight <- fmt.Sprintf("%d %s", res.StatusCode, b)
	}()
	<-arrived
	shutdownDone := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		shutdownDone <- s.Shutdown(ctx)
	}()

	// Requests sent once shutdown has begun fail, and promptly: after GOAWAY
	// the client may not use its connection and must find a new one, which
	// the server refuses. Each waits at most until a deadline far shorter
	// than the idle timeouts, so an ignored request shows as that deadline.
	var lastErr error
	waitFor(t, 20*time.Second, "a request after shutdown to be refused", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://app.example.com/after", nil)
		res, err := c.Do(req)
		if err == nil {
			res.Body.Close() // served before shutdown took hold
			return false
		}
		lastErr = err
		return true
	})
	if errors.Is(lastErr, context.DeadlineExceeded) {
		t.Fatalf("a request after shutdown got no answer: %v", lastErr)
	}
	var terr *quic.TransportError
	if !errors.As(lastErr, &terr) || terr.ErrorCode != quic.ConnectionRefused {
		t.Errorf("a request after shutdown failed with %v, want the new connection refused", lastErr)
	}
	select {
	case err := <-shutdownDone:
		t.Fatalf("shutdown returned (%v) with a request in flight", err)
	default:
	}
	close(release)
	if got := <-inflight; got != "200 finished" {
		t.Fatalf("the request in flight at shutdown: %s, want 200 finished", got)
	}
	if err := <-shutdownDone; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}
