package l7

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
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
		{"an extended CONNECT over HTTP/3 is refused", h3, "https://app.example.com/chat", "websocket"},
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
