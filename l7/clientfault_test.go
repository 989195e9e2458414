package l7

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// mustRawTLS opens a TLS connection to a service's TCP listener speaking
// HTTP/1.1, for requests no well-behaved client library would write.
func mustRawTLS(tb testing.TB, cert testCert, addr string) *tls.Conn {
	tb.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: cert.pool, ServerName: "app.example.com", NextProtos: []string{"http/1.1"}})
	if err != nil {
		tb.Fatalf("dial %s: %v", addr, err)
	}
	tb.Cleanup(func() { c.Close() })
	// Bounds a test that would otherwise hang on a server that never answers.
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

func TestClientFaultsDoNotOpenTheBreaker(t *testing.T) {
	const tries = DefaultConsecutiveFails + 1
	cert := mustCert(t, "app.example.com")
	for _, tc := range []struct {
		name   string
		want   int
		send   func(t *testing.T, addr string) *http.Response
		client bool // send over HTTP/3 (else raw HTTP/1.1 over TLS)
	}{
		{
			name: "a malformed chunked body answers 400 and is not the upstream's failure",
			want: http.StatusBadRequest,
			send: func(t *testing.T, addr string) *http.Response {
				c := mustRawTLS(t, cert, addr)
				_, err := io.WriteString(c, "POST /upload HTTP/1.1\r\nHost: app.example.com\r\nTransfer-Encoding: chunked\r\n\r\n"+
					"4\r\nabcd\r\nnot-a-chunk-size\r\n")
				if err != nil {
					t.Fatal(err)
				}
				res, err := http.ReadResponse(bufio.NewReader(c), nil)
				if err != nil {
					t.Fatalf("read response: %v", err)
				}
				return res
			},
		},
		{
			name:   "an upload that stalls past the route timeout answers 408 and is not the upstream's failure",
			want:   http.StatusRequestTimeout,
			client: true,
			send: func(t *testing.T, addr string) *http.Response {
				c, _ := h3Client(t, cert, addr)
				pr, pw := io.Pipe()
				t.Cleanup(func() { pw.Close() })
				go func() { _, _ = io.WriteString(pw, "the first part, and then nothing") }()
				req, _ := http.NewRequest(http.MethodPost, "https://app.example.com/upload", pr)
				res, err := c.Do(req)
				if err != nil {
					t.Fatalf("POST: %v", err)
				}
				return res
			},
		},
	} {
		for _, proto := range []Protocol{ProtoH1, ProtoH2, ProtoH3} {
			t.Run(tc.name+" to an "+string(proto)+" upstream", func(t *testing.T) {
				up := mustUpstream(t, proto, "u", nil)
				cfg := oneService(t, cert, PoolConfig{Upstreams: []UpstreamConfig{up}},
					Route{Pool: "p", Timeout: 300 * time.Millisecond})
				cfg.Services[0].TCP = true
				s := mustServer(t, cfg)
				addr := mustAddr(t, s)
				for i := range tries {
					res := tc.send(t, addr)
					body, _ := io.ReadAll(res.Body)
					res.Body.Close()
					if res.StatusCode != tc.want {
						t.Fatalf("request %d: %d %q, want %d", i, res.StatusCode, body, tc.want)
					}
				}
				if st := s.Upstream("u").Breaker().State(); st != BreakerClosed {
					t.Fatalf("after %d client faults the upstream's breaker is %s, want closed", tries, st)
				}
				c, _ := h3Client(t, cert, addr)
				if res, body := mustGet(t, c, "https://app.example.com/after"); res.StatusCode != http.StatusOK {
					t.Fatalf("a good request after the client faults: %d %q, want 200", res.StatusCode, body)
				}
			})
		}
	}
}

// garbageUpstream answers every connection with bytes that are no HTTP
// response and that name its own address, as an error page might.
func garbageUpstream(tb testing.TB) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = c.Read(make([]byte, 4096))
				fmt.Fprintf(c, "garbage from %s\r\n\r\n", l.Addr())
			}()
		}
	}()
	return l.Addr().String()
}

func TestErrorBodiesDoNotNameInternalAddresses(t *testing.T) {
	cert := mustCert(t, "app.example.com")
	dead := deadAddress(t)
	garbage := garbageUpstream(t)
	// Unnamed upstreams are named by their address, as the config package
	// names them by their URL.
	cfg := oneService(t, cert, PoolConfig{Name: "dead", Upstreams: []UpstreamConfig{{Address: dead}}, Breaker: BreakerConfig{Disabled: true}},
		Route{Match: Match{PathPrefix: "/dead"}, Pool: "dead"},
		Route{Match: Match{PathPrefix: "/garbage"}, Pool: "garbage"},
	)
	cfg.Pools = append(cfg.Pools, PoolConfig{Name: "garbage", Upstreams: []UpstreamConfig{{Address: garbage}}, Breaker: BreakerConfig{Disabled: true}})
	s := mustServer(t, cfg)
	c, _ := h3Client(t, cert, mustAddr(t, s))
	for _, tc := range []struct{ name, path, addr string }{
		{"a refused connection is answered without the upstream's address", "/dead", dead},
		{"a malformed response is answered without the upstream's words", "/garbage", garbage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, body := mustGet(t, c, "https://app.example.com"+tc.path)
			if res.StatusCode != http.StatusBadGateway {
				t.Fatalf("status %d %q, want 502", res.StatusCode, body)
			}
			_, port, _ := net.SplitHostPort(tc.addr)
			for _, leak := range []string{tc.addr, port, "127.0.0.1", "dial", "tcp", "garbage"} {
				if strings.Contains(body, leak) {
					t.Errorf("error body %q shows %q", body, leak)
				}
			}
		})
	}
}

// slowBody yields its parts one at a time with a pause before each but the
// first: a client on a slow link.
type slowBody struct {
	parts []string
	pause time.Duration
	sent  int
}

func (b *slowBody) Read(p []byte) (int, error) {
	if b.sent == len(b.parts) {
		return 0, io.EOF
	}
	if b.sent > 0 {
		time.Sleep(b.pause)
	}
	n := copy(p, b.parts[b.sent])
	b.sent++
	return n, nil
}

func TestSlowUploadsAreNotSlowUpstreams(t *testing.T) {
	const threshold = 300 * time.Millisecond
	cert := mustCert(t, "app.example.com")
	for _, proto := range []Protocol{ProtoH1, ProtoH2, ProtoH3} {
		t.Run("a body that takes longer than the latency threshold to arrive leaves an "+string(proto)+" upstream's breaker closed", func(t *testing.T) {
			up := mustUpstream(t, proto, "u", nil)
			// One slow response would open this breaker.
			pool := PoolConfig{Upstreams: []UpstreamConfig{up}, Breaker: BreakerConfig{ConsecutiveFailures: 1, LatencyThreshold: threshold}}
			s := mustServer(t, oneService(t, cert, pool))
			c, _ := h3Client(t, cert, mustAddr(t, s))
			body := &slowBody{parts: []string{"one ", "two ", "three"}, pause: threshold}
			req, _ := http.NewRequest(http.MethodPost, "https://app.example.com/upload", io.NopCloser(body))
			res, got := mustDo(t, c, req)
			if res.StatusCode != http.StatusOK || res.Header.Get("X-Seen-Body-Bytes") != "13" {
				t.Fatalf("slow upload: %d %q, upstream saw %s bytes; want 200 and 13", res.StatusCode, got, res.Header.Get("X-Seen-Body-Bytes"))
			}
			if st := s.Upstream("u").Breaker().State(); st != BreakerClosed {
				t.Fatalf("after one slow upload the upstream's breaker is %s, want closed", st)
			}
		})
	}
}
