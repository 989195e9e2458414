package l7

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// recordingUpstream is an HTTP/1.1 upstream that records the method, path
// and Early-Data field of every request and answers with handle's status.
type recordingUpstream struct {
	mu   sync.Mutex
	seen []*http.Request
}

func (u *recordingUpstream) requests() []*http.Request {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]*http.Request(nil), u.seen...)
}

func mustRecordingUpstream(tb testing.TB, name string, status func(*http.Request) int) (*recordingUpstream, UpstreamConfig) {
	tb.Helper()
	rec := &recordingUpstream{}
	cfg := mustUpstream(tb, ProtoH1, name, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		rec.mu.Lock()
		rec.seen = append(rec.seen, r.Clone(context.Background()))
		rec.mu.Unlock()
		code := http.StatusOK
		if status != nil {
			code = status(r)
		}
		w.WriteHeader(code)
		_, _ = io.WriteString(w, name)
	}))
	return rec, cfg
}

func TestConnectIsRefused(t *testing.T) {
	cert := mustCert(t, "app.example.com")
	rec, up := mustRecordingUpstream(t, "u", nil)
	cfg := oneService(t, cert, PoolConfig{Upstreams: []UpstreamConfig{up}})
	cfg.Services[0].TCP = true
	cfg.Services[0].Address = freeAddr(t)
	s := mustServer(t, cfg)
	addr := mustAddr(t, s)
	h3, _ := h3Client(t, cert, addr)
	tcpClient := func(h2 bool) *http.Client {
		tr := &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: cert.pool},
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, addr)
			},
		}
		p := new(http.Protocols)
		p.SetHTTP1(!h2)
		p.SetHTTP2(h2)
		tr.Protocols = p
		t.Cleanup(tr.CloseIdleConnections)
		return &http.Client{Transport: tr, Timeout: 10 * time.Second}
	}
	for _, tc := range []struct {
		name     string
		client   *http.Client
		url      string
		protocol string // extended CONNECT's :protocol (RFC 9220)
	}{
		{"a CONNECT over HTTP/3 is refused", h3, "https://app.example.com:443", ""},
		// WebSockets are on by default (upgrade_test.go); no other
		// extended CONNECT protocol is served.
		{"an extended CONNECT for another protocol over HTTP/3 is refused", h3, "https://app.example.com/chat", "connect-udp"},
		{"a CONNECT over HTTP/2 is refused", tcpClient(true), "https://app.example.com:443", ""},
		{"a CONNECT over HTTP/1.1 is refused", tcpClient(false), "https://app.example.com:443", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodConnect, tc.url, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tc.protocol != "" {
				req.Proto = tc.protocol
			}
			res, body := mustDo(t, tc.client, req)
			if res.StatusCode != http.StatusMethodNotAllowed {
				t.Fatalf("CONNECT: %d %q, want 405", res.StatusCode, body)
			}
			if allow := res.Header.Get("Allow"); allow == "" || strings.Contains(allow, http.MethodConnect) {
				t.Errorf("Allow = %q, want the proxied methods without CONNECT", allow)
			}
		})
	}
	for _, r := range rec.requests() {
		if r.Method == http.MethodConnect {
			t.Errorf("the upstream received a CONNECT for %q", r.Host)
		}
	}
}

// headRecordingUpstream is an HTTP/1.1 upstream that records each request
// head as it came on the wire, before any parser could drop a field.
func headRecordingUpstream(tb testing.TB) (addr string, heads func() []string) {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { l.Close() })
	var mu sync.Mutex
	var seen []string
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				var raw strings.Builder
				br := bufio.NewReader(io.TeeReader(c, &raw))
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					head, _, _ := strings.Cut(raw.String(), "\r\n\r\n")
					mu.Lock()
					seen = append(seen, head)
					mu.Unlock()
					_, _ = io.Copy(io.Discard, req.Body)
					raw.Reset()
					_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				}
			}()
		}
	}()
	return l.Addr().String(), func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), seen...)
	}
}

func TestHTTP1RequestWithTwoFramingsClosesTheConnection(t *testing.T) {
	cert := mustCert(t, "app.example.com")
	upAddr, heads := headRecordingUpstream(t)
	cfg := oneService(t, cert, PoolConfig{Upstreams: []UpstreamConfig{{Name: "u", Address: upAddr}}})
	cfg.Services[0].TCP = true
	s := mustServer(t, cfg)
	addr := mustAddr(t, s)
	for _, tc := range []struct{ name, request string }{
		{
			"a chunked request with a Content-Length is answered and its connection closed",
			"POST /first HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n" +
				"4\r\nabcd\r\n0\r\n\r\n" +
				"GET /smuggled HTTP/1.1\r\nHost: app.example.com\r\n\r\n",
		},
		{
			"an HTTP/1.0 request with Transfer-Encoding is answered and its connection closed",
			"POST /first HTTP/1.0\r\nHost: app.example.com\r\nConnection: keep-alive\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n" +
				"0\r\n\r\n" +
				"GET /smuggled HTTP/1.1\r\nHost: app.example.com\r\n\r\n",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := mustRawTLS(t, cert, addr)
			if _, err := io.WriteString(c, tc.request); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(c)
			res, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("read the first response: %v", err)
			}
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != http.StatusOK {
				t.Fatalf("first request: %d, want 200", res.StatusCode)
			}
			// RFC 9112 §6.1: the server closes the connection, so what came
			// after the first request is never served.
			extra, err := br.ReadString('\n')
			if errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("the connection stayed open after the first response")
			}
			if err != io.EOF || extra != "" {
				t.Fatalf("after the first response: %q, %v; want the connection closed", extra, err)
			}
		})
	}
	got := heads()
	if len(got) == 0 {
		t.Fatal("the upstream received no request")
	}
	for _, h := range got {
		if strings.Contains(h, "/smuggled") {
			t.Errorf("the bytes after a chunked body reached the upstream as a request: %q", h)
		}
		// The upstream side: whatever came in, one framing goes out.
		lower := strings.ToLower(h)
		if strings.Contains(lower, "\r\ncontent-length:") && strings.Contains(lower, "\r\ntransfer-encoding:") {
			t.Errorf("the upstream received a request with both Content-Length and Transfer-Encoding: %q", h)
		}
	}
}

func TestEarlyDataIsMarkedForTheUpstream(t *testing.T) {
	cert := mustCert(t, "app.example.com")
	// Both upstreams refuse requests that may be replays (RFC 8470 §5.2), so
	// a retry on the other one would be seen.
	tooEarly := func(r *http.Request) int {
		if r.Header.Get("Early-Data") == "1" {
			return http.StatusTooEarly
		}
		return http.StatusOK
	}
	recA, a := mustRecordingUpstream(t, "a", tooEarly)
	recB, b := mustRecordingUpstream(t, "b", tooEarly)
	cfg := oneService(t, cert, PoolConfig{Upstreams: []UpstreamConfig{a, b}})
	cfg.Services[0].Allow0RTT = true
	s := mustServer(t, cfg)
	addr := mustAddr(t, s)
	tlsConf := &tls.Config{RootCAs: cert.pool, ServerName: "app.example.com", ClientSessionCache: tls.NewLRUClientSessionCache(8), NextProtos: []string{http3.NextProtoH3}}
	tr := &http3.Transport{}
	defer tr.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// A first connection leaves a session ticket that allows 0-RTT.
	first, err := quic.DialAddrEarly(ctx, addr, tlsConf, &quic.Config{})
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, "https://app.example.com/ticket", nil)
	res, err := tr.NewClientConn(first).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("request after a full handshake: %d, want 200", res.StatusCode)
	}
	_ = first.CloseWithError(0, "")

	// The second resumes and sends a GET in 0-RTT; the client's handshake
	// completion is held back so the server handles it in early data.
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
	cc := tr.NewClientConn(second)
	early, _ := http.NewRequestWithContext(ctx, http3.MethodGet0RTT, "https://app.example.com/early", nil)
	res, err = cc.RoundTrip(early)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if !second.ConnectionState().Used0RTT {
		t.Fatal("the second connection did not use 0-RTT, so nothing was tested")
	}
	if res.StatusCode != http.StatusTooEarly {
		t.Fatalf("0-RTT GET: %d, want the upstream's 425", res.StatusCode)
	}
	<-second.HandshakeComplete()
	after, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://app.example.com/after", nil)
	res, err = cc.RoundTrip(after)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET after the handshake: %d, want 200", res.StatusCode)
	}

	seen := map[string][]string{}
	for _, r := range append(recA.requests(), recB.requests()...) {
		seen[r.URL.Path] = append(seen[r.URL.Path], r.Header.Get("Early-Data"))
	}
	for _, tc := range []struct {
		path string
		want []string
	}{
		{"/ticket", []string{""}},
		{"/early", []string{"1"}}, // once: a 425 is not retried on the other upstream
		{"/after", []string{""}},
	} {
		if got := seen[tc.path]; strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("upstreams saw %s with Early-Data %q, want %q", tc.path, got, tc.want)
		}
	}
}
