package l7

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
)

// cannedTransport answers every request with the same 1 KiB response,
// so BenchmarkProxyOverhead measures the proxy's own work and nothing of
// any network or protocol stack.
type cannedTransport struct{}

func (cannedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{
		StatusCode: http.StatusOK, ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{
			"Content-Type":   {"application/octet-stream"},
			"Content-Length": {strconv.Itoa(len(benchBody))},
			"Date":           {"Thu, 26 Nov 2026 00:00:00 GMT"},
		},
		ContentLength: int64(len(benchBody)),
		Body:          io.NopCloser(bytes.NewReader(benchBody)),
		Request:       r,
	}, nil
}

// discardWriter is a ResponseWriter that keeps nothing but its header map.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) WriteHeader(int)             {}
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }

// BenchmarkProxyOverhead runs one service's ServeHTTP — routing, request
// cloning, hop-by-hop removal, Forwarded/Via, selection, breaker, the
// response copy — against an upstream transport that answers at once. Its
// ns/op and allocs/op are the proxy's own cost per request.
func BenchmarkProxyOverhead(b *testing.B) {
	cert := mustCert(b, "app.example.com")
	up := UpstreamConfig{Name: "canned", Address: "198.18.0.1:80"}
	s, err := New(oneService(b, cert, PoolConfig{Name: "p", Upstreams: []UpstreamConfig{up}}, Route{Pool: "p"}))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	s.Upstream("canned").transport = cannedTransport{}
	var svc *service
	for _, v := range s.services {
		svc = v
	}
	req, err := http.NewRequest(http.MethodGet, "https://app.example.com/some/path?q=1", nil)
	if err != nil {
		b.Fatal(err)
	}
	req.Proto, req.ProtoMajor, req.ProtoMinor = "HTTP/3.0", 3, 0
	req.RemoteAddr = "198.18.0.9:50000"
	req.RequestURI = "/some/path?q=1"
	req.Header.Set("User-Agent", "bench")
	req.Header.Set("Accept", "*/*")
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		// Like the HTTP/3 server, a fresh cancellable context per request.
		ctx, cancel := context.WithCancel(context.Background())
		svc.ServeHTTP(w, req.WithContext(ctx))
		cancel()
	}
}

// mustCannedH1Upstream is an HTTP/1.1 upstream that answers every request
// head with the same 1 KiB response and allocates nothing per request, so
// a benchmark's allocations are the proxy's own.
func mustCannedH1Upstream(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	answer := append([]byte("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nDate: Thu, 26 Nov 2026 00:00:00 GMT\r\nContent-Length: 1024\r\n\r\n"), benchBody...)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 8<<10)
				have := 0
				for {
					n, err := c.Read(buf[have:])
					if err != nil {
						return
					}
					have += n
					// Requests without bodies: one answer per blank line.
					for {
						i := bytes.Index(buf[:have], []byte("\r\n\r\n"))
						if i < 0 {
							break
						}
						if _, err := c.Write(answer); err != nil {
							return
						}
						have = copy(buf, buf[i+4:have])
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// BenchmarkProxyH1 is BenchmarkProxyOverhead with the real HTTP/1.1
// client and a real loopback connection to an upstream that answers at
// once: the proxy's work per request plus its upstream exchange, without
// the HTTP/3 server's.
func BenchmarkProxyH1(b *testing.B) {
	cert := mustCert(b, "app.example.com")
	up := UpstreamConfig{Name: "canned", Address: mustCannedH1Upstream(b)}
	s, err := New(oneService(b, cert, PoolConfig{Name: "p", Upstreams: []UpstreamConfig{up}}, Route{Pool: "p"}))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	var svc *service
	for _, v := range s.services {
		svc = v
	}
	req, err := http.NewRequest(http.MethodGet, "https://app.example.com/some/path?q=1", nil)
	if err != nil {
		b.Fatal(err)
	}
	req.Proto, req.ProtoMajor, req.ProtoMinor = "HTTP/3.0", 3, 0
	req.RemoteAddr = "198.18.0.9:50000"
	req.RequestURI = "/some/path?q=1"
	req.Header.Set("User-Agent", "bench")
	req.Header.Set("Accept", "*/*")
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		ctx, cancel := context.WithCancel(context.Background())
		svc.ServeHTTP(w, req.WithContext(ctx))
		cancel()
	}
}
