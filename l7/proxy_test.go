package l7

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"github.com/spooky-lb/spooky/health"
)

func TestProxyReachesEveryUpstreamProtocol(t *testing.T) {
	cert := mustCert(t, "app.example.com")
	for _, tc := range []struct {
		proto     Protocol
		wantProto string
	}{
		{ProtoH1, "HTTP/1.1"},
		{ProtoH2, "HTTP/2.0"},
		{ProtoH2C, "HTTP/2.0"},
		{ProtoH3, "HTTP/3.0"},
	} {
		t.Run("an HTTP/3 request reaches an "+string(tc.proto)+" upstream", func(t *testing.T) {
			up := mustUpstream(t, tc.proto, "u-"+string(tc.proto), nil)
			s := mustServer(t, oneService(t, cert, PoolConfig{Upstreams: []UpstreamConfig{up}}))
			c, _ := h3Client(t, cert, mustAddr(t, s))
			res, body := mustGet(t, c, "https://app.example.com/hello")
			if res.StatusCode != 200 || body != "u-"+string(tc.proto)+" /hello" {
				t.Fatalf("got %d %q", res.StatusCode, body)
			}
			if got := res.Header.Get("X-Seen-Proto"); got != tc.wantProto {
				t.Errorf("upstream saw %s, want %s", got, tc.wantProto)
			}
			if got := res.Header.Get("X-Seen-X-Forwarded-For"); got != "127.0.0.1" {
				t.Errorf("X-Forwarded-For = %q", got)
			}
			if got := res.Header.Get("X-Seen-X-Forwarded-Proto"); got != "https" {
				t.Errorf("X-Forwarded-Proto = %q", got)
			}
			if got := res.Header.Get("X-Seen-X-Forwarded-Host"); got != "app.example.com" {
				t.Errorf("X-Forwarded-Host = %q", got)
			}
			if got := res.Header.Get("X-Seen-Forwarded"); got != `for=127.0.0.1;host="app.example.com";proto=https` {
				t.Errorf("Forwarded = %q", got)
			}
			if got := res.Header.Get("X-Seen-Via"); got != "3 spooky" {
				t.Errorf("Via seen upstream = %q", got)
			}
			if got := res.Header.Get("X-Seen-Host"); got != "app.example.com" {
				t.Errorf("upstream Host = %q, want the client's", got)
			}
			if !strings.Contains(strings.Join(res.Header.Values("Via"), ","), "spooky") {
				t.Errorf("response Via = %q", res.Header.Values("Via"))
			}
		})
	}
}

func TestRemoveHopByHop(t *testing.T) {
	h := http.Header{
		"Connection":        {"close, X-Hop"},
		"X-Hop":             {"1"},
		"Keep-Alive":        {"timeout=5"},
		"Proxy-Connection":  {"keep-alive"},
		"Transfer-Encoding": {"chunked"},
		"Upgrade":           {"websocket"},
		"Te":                {"trailers, deflate"},
		"X-End":             {"kept"},
	}
	removeHopByHop(h)
	for _, k := range []string{"Connection", "X-Hop", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding", "Upgrade"} {
		if _, ok := h[k]; ok {
			t.Errorf("%s was forwarded", k)
		}
	}
	if h.Get("X-End") != "kept" || h.Get("Te") != "trailers" {
		t.Errorf("end-to-end fields changed: %v", h)
	}
}

func TestForwardedHeadersFromClientsAreReplacedUnlessTrusted(t *testing.T) {
	for _, tc := range []struct {
		name  string
		trust bool
		want  string
	}{
		{"an untrusted client cannot forge X-Forwarded-For", false, "127.0.0.1"},
		{"a trusted proxy's X-Forwarded-For is extended", true, "198.18.0.9, 127.0.0.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in, _ := http.NewRequest("GET", "https://a.example/", nil)
			in.Host = "a.example"
			out := in.Clone(in.Context())
			out.Header.Set("X-Forwarded-For", "198.18.0.9")
			setForwarded(out, in, "127.0.0.1", tc.trust)
			if got := out.Header.Get("X-Forwarded-For"); got != tc.want {
				t.Fatalf("X-Forwarded-For = %q, want %q", got, tc.want)
			}
		})
	}
	t.Run("an IPv6 client is quoted and bracketed in Forwarded", func(t *testing.T) {
		in, _ := http.NewRequest("GET", "https://a.example/", nil)
		out := in.Clone(in.Context())
		setForwarded(out, in, "2001:db8::1", false)
		if got := out.Header.Get("Forwarded"); !strings.HasPrefix(got, `for="[2001:db8::1]";`) {
			t.Fatalf("Forwarded = %q", got)
		}
	})
}

func TestErrorsAreAnswers(t *testing.T) {
	cert := mustCert(t, "app.example.com")
	slow := mustUpstream(t, ProtoH1, "slow", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}))
	live := mustUpstream(t, ProtoH1, "live", nil)
	cfg := oneService(t, cert, PoolConfig{Name: "dead", Upstreams: []UpstreamConfig{{Name: "dead", Address: deadAddress(t)}}},
		Route{Match: Match{PathPrefix: "/dead"}, Pool: "dead"},
		Route{Match: Match{PathPrefix: "/slow"}, Pool: "slow", Timeout: 200 * time.Millisecond},
		Route{Match: Match{PathPrefix: "/down"}, Pool: "down"},
	)
	cfg.Pools = append(cfg.Pools,
		PoolConfig{Name: "slow", Upstreams: []UpstreamConfig{slow}},
		PoolConfig{Name: "down", Upstreams: []UpstreamConfig{live}},
	)
	reg := health.NewRegistry(nil)
	cfg.Health = reg.Upstreams()
	reg.Report(health.Upstream("live"), health.Operator, health.Draining, "drained by the test")
	s := mustServer(t, cfg)
	c, _ := h3Client(t, cert, mustAddr(t, s))
	for _, tc := range []struct {
		name, path, wantBody string
		want                 int
	}{
		{"a refused connection answers 502 naming the cause", "/dead", "refused the connection", 502},
		{"an upstream slower than the route timeout answers 504", "/slow", "timed out", 504},
		{"a pool with no available upstream answers 503", "/down", "no available upstream in pool down", 503},
		{"a request no route matches answers 404", "/nowhere", "no route", 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, body := mustGet(t, c, "https://app.example.com"+tc.path)
			if res.StatusCode != tc.want || !strings.Contains(body, tc.wantBody) {
				t.Fatalf("got %d %q, want %d containing %q", res.StatusCode, body, tc.want, tc.wantBody)
			}
			if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
				t.Errorf("Content-Type = %q", ct)
			}
			if tc.want == 503 && res.Header.Get("Retry-After") == "" {
				t.Error("503 without Retry-After")
			}
		})
	}
}

// resettingUpstream accepts TCP connections and closes them at once, after
// the request was sent: a failure that is not a dial error.
func resettingUpstream(tb testing.TB, accepted *atomic.Int64) string {
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
			accepted.Add(1)
			go func() {
				buf := make([]byte, 1024)
				_, _ = c.Read(buf) // let the request arrive, then drop it
				if tc, ok := c.(*net.TCPConn); ok {
					_ = tc.SetLinger(0) // RST
				}
				c.Close()
			}()
		}
	}()
	return l.Addr().String()
}

func TestRetries(t *testing.T) {
	cert := mustCert(t, "app.example.com")
	t.Run("an idempotent request whose connection fails is retried on another upstream", func(t *testing.T) {
		var accepted atomic.Int64
		live := mustUpstream(t, ProtoH1, "live", nil)
		pool := PoolConfig{Policy: PolicyRoundRobin, Upstreams: []UpstreamConfig{
			{Name: "reset", Address: resettingUpstream(t, &accepted)}, live,
		}, Breaker: BreakerConfig{Disabled: true}}
		s := mustServer(t, oneService(t, cert, pool))
		c, _ := h3Client(t, cert, mustAddr(t, s))
		for i := range 4 {
			res, body := mustGet(t, c, "https://app.example.com/x")
			if res.StatusCode != 200 || !strings.HasPrefix(body, "live") {
				t.Fatalf("request %d: %d %q", i, res.StatusCode, body)
			}
		}
		if accepted.Load() == 0 {
			t.Fatal("the resetting upstream was never tried, so no retry was tested")
		}
	})
	t.Run("a POST whose connection fails after sending is not retried", func(t *testing.T) {
		var accepted atomic.Int64
		live := mustUpstream(t, ProtoH1, "live", nil)
		pool := PoolConfig{Policy: PolicyRoundRobin, Upstreams: []UpstreamConfig{
			{Name: "reset", Address: resettingUpstream(t, &accepted)}, live,
		}, Breaker: BreakerConfig{Disabled: true}}
		s := mustServer(t, oneService(t, cert, pool))
		c, _ := h3Client(t, cert, mustAddr(t, s))
		saw502 := false
		for range 4 {
			req, _ := http.NewRequest("POST", "https://app.example.com/x", strings.NewReader("data"))
			res, body := mustDo(t, c, req)
			if res.StatusCode == 502 {
				saw502 = true
				if !strings.Contains(body, "reset") {
					t.Errorf("502 body %q does not name the reset", body)
				}
			}
		}
		if !saw502 {
			t.Fatal("POST to a resetting upstream was retried elsewhere")
		}
	})
	t.Run("retries are bounded by count", func(t *testing.T) {
		var accepted atomic.Int64
		var ups []UpstreamConfig
		for i := range 5 {
			ups = append(ups, UpstreamConfig{Name: "reset" + string(rune('a'+i)), Address: resettingUpstream(t, &accepted)})
		}
		pool := PoolConfig{Upstreams: ups, Breaker: BreakerConfig{Disabled: true}}
		cfg := oneService(t, cert, pool, Route{Pool: "p", Retry: RetryConfig{Attempts: 2}})
		s := mustServer(t, cfg)
		c, _ := h3Client(t, cert, mustAddr(t, s))
		res, _ := mustGet(t, c, "https://app.example.com/x")
		if res.StatusCode != 502 {
			t.Fatalf("status %d, want 502", res.StatusCode)
		}
		if got := accepted.Load(); got != 3 {
			t.Fatalf("%d upstream connections, want 3 (1 try + 2 retries)", got)
		}
	})
}

func TestTrailersAreForwarded(t *testing.T) {
	cert := mustCert(t, "app.example.com")
	up := mustUpstream(t, ProtoH2, "trailers", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Checksum")
		io.WriteString(w, "body")
		w.Header().Set("X-Checksum", "abc123")
	}))
	s := mustServer(t, oneService(t, cert, PoolConfig{Upstreams: []UpstreamConfig{up}}))
	c, _ := h3Client(t, cert, mustAddr(t, s))
	res, body := mustGet(t, c, "https://app.example.com/")
	if body != "body" || res.Trailer.Get("X-Checksum") != "abc123" {
		t.Fatalf("body %q trailer %v", body, res.Trailer)
	}
}

// zeroReader yields n zero bytes without holding them.
type zeroReader struct{ n int64 }

func (z *zeroReader) Read(p []byte) (int, error) {
	if z.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > z.n {
		p = p[:z.n]
	}
	clear(p)
	z.n -= int64(len(p))
	return len(p), nil
}

// heapPeak samples HeapInuse until stop is closed and returns the peak.
func heapPeak(stop <-chan struct{}) <-chan uint64 {
	out := make(chan uint64, 1)
	go func() {
		var peak uint64
		var ms runtime.MemStats
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
			select {
			case <-stop:
				out <- peak
				return
			case <-t.C:
			}
		}
	}()
	return out
}

func TestLargeBodiesStreamWithBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("streams 2 × 100 MB")
	}
	const size = 100 << 20
	cert := mustCert(t, "app.example.com")
	up := mustUpstream(t, ProtoH1, "big", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		w.Header().Set("X-Received-Bytes", strconv.FormatInt(n, 10))
		if r.Method == http.MethodGet {
			io.Copy(w, &zeroReader{n: size})
		}
	}))
	s := mustServer(t, oneService(t, cert, PoolConfig{Upstreams: []UpstreamConfig{up}}))
	c, _ := h3Client(t, cert, mustAddr(t, s))
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)

	stop := make(chan struct{})
	peakc := heapPeak(stop)
	req, _ := http.NewRequest("POST", "https://app.example.com/up", io.NopCloser(&zeroReader{n: size}))
	res, _ := mustDo(t, c, req)
	if got := res.Header.Get("X-Received-Bytes"); got != strconv.Itoa(size) {
		t.Fatalf("upstream received %s bytes, want %d", got, size)
	}
	res, err := c.Get("https://app.example.com/down")
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if err != nil || n != size {
		t.Fatalf("downloaded %d bytes (%v), want %d", n, err, size)
	}
	close(stop)
	peak := <-peakc
	grew := int64(peak) - int64(base.HeapInuse)
	t.Logf("heap in use: base %d MiB, peak %d MiB", base.HeapInuse>>20, peak>>20)
	if grew > 32<<20 {
		t.Fatalf("heap grew by %d MiB while streaming 100 MB each way: bodies are being buffered", grew>>20)
	}
}

func TestUpstreamRequestLimit(t *testing.T) {
	cert := mustCert(t, "app.example.com")
	arrived := make(chan struct{}, 4)
	release := make(chan struct{})
	up := mustUpstream(t, ProtoH2C, "one-at-a-time", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-release
	}))
	up.MaxRequests = 1
	s := mustServer(t, oneService(t, cert, PoolConfig{Upstreams: []UpstreamConfig{up}}))
	c, _ := h3Client(t, cert, mustAddr(t, s))
	first := make(chan int, 1)
	go func() {
		res, err := c.Get("https://app.example.com/first")
		if err != nil {
			first <- 0
			return
		}
		res.Body.Close()
		first <- res.StatusCode
	}()
	<-arrived
	res, body := mustGet(t, c, "https://app.example.com/second")
	if res.StatusCode != 503 {
		t.Fatalf("second request while the upstream is at its limit: %d %q, want 503", res.StatusCode, body)
	}
	close(release)
	if got := <-first; got != 200 {
		t.Fatalf("first request: %d", got)
	}
	if n := s.Upstream("one-at-a-time").InFlight(); n != 0 {
		t.Fatalf("%d requests still counted in flight", n)
	}
}

func TestRequestTrailersAreForwarded(t *testing.T) {
	cert := mustCert(t, "app.example.com")
	up := mustUpstream(t, ProtoH1, "u", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("X-Got-Trailer", r.Trailer.Get("X-Sum"))
	}))
	s := mustServer(t, oneService(t, cert, PoolConfig{Upstreams: []UpstreamConfig{up}}))
	c, _ := h3Client(t, cert, mustAddr(t, s))
	req, _ := http.NewRequest("POST", "https://app.example.com/", io.NopCloser(strings.NewReader("payload")))
	req.Trailer = http.Header{"X-Sum": nil}
	req.ContentLength = -1
	req.Body = &trailerBody{r: strings.NewReader("payload"), req: req}
	res, _ := mustDo(t, c, req)
	if got := res.Header.Get("X-Got-Trailer"); got != "42" {
		t.Fatalf("upstream saw trailer %q, want 42", got)
	}
}

// trailerBody sets the request trailer when the body ends, as a streaming client would.
type trailerBody struct {
	r   io.Reader
	req *http.Request
}

func (b *trailerBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err == io.EOF {
		b.req.Trailer.Set("X-Sum", "42")
	}
	return n, err
}

func (b *trailerBody) Close() error { return nil }

func TestViaNamesTheProtocolVersion(t *testing.T) {
	for _, tc := range []struct {
		name         string
		major, minor int
		want         string
	}{
		{"HTTP/3 is named by its major version", 3, 0, "3 spooky"},
		{"HTTP/2 is named by its major version", 2, 0, "2 spooky"},
		{"HTTP/1.1 keeps its minor version", 1, 1, "1.1 spooky"},
		{"HTTP/1.0 keeps its minor version", 1, 0, "1.0 spooky"},
		{"an unusual HTTP/1.x is spelled out", 1, 2, "1.2 spooky"},
		{"a future major version is named by it", 4, 0, "4 spooky"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := viaValue(tc.major, tc.minor); got != tc.want {
				t.Fatalf("viaValue(%d, %d) = %q, want %q", tc.major, tc.minor, got, tc.want)
			}
		})
	}
}

func TestForwardedFieldsStayIndependent(t *testing.T) {
	t.Run("adding to one forwarded field leaves the others alone", func(t *testing.T) {
		in, _ := http.NewRequest("GET", "https://a.example/", nil)
		out := in.Clone(in.Context())
		setForwarded(out, in, "198.18.0.9", false)
		// The fields share a backing array; a later Add must not spill into a neighbour.
		out.Header.Add("X-Forwarded-For", "198.18.0.10")
		out.Header.Add("X-Forwarded-Proto", "http")
		want := http.Header{
			"X-Forwarded-For":   {"198.18.0.9", "198.18.0.10"},
			"X-Forwarded-Proto": {"https", "http"},
			"X-Forwarded-Host":  {"a.example"},
			"Forwarded":         {`for=198.18.0.9;host="a.example";proto=https`},
		}
		for k, v := range want {
			if got := out.Header.Values(k); !slices.Equal(got, v) {
				t.Errorf("%s = %q, want %q", k, got, v)
			}
		}
	})
	t.Run("a trusted proxy's Forwarded and scheme are kept and extended", func(t *testing.T) {
		in, _ := http.NewRequest("GET", "https://a.example/", nil)
		out := in.Clone(in.Context())
		out.Header.Set("Forwarded", "for=198.18.0.1")
		out.Header.Set("X-Forwarded-Proto", "http")
		setForwarded(out, in, "198.18.0.9", true)
		if got, want := out.Header.Values("Forwarded"), []string{"for=198.18.0.1", `for=198.18.0.9;host="a.example";proto=https`}; !slices.Equal(got, want) {
			t.Errorf("Forwarded = %q, want %q", got, want)
		}
		if got := out.Header.Get("X-Forwarded-Proto"); got != "http" {
			t.Errorf("X-Forwarded-Proto = %q, want the trusted proxy's http", got)
		}
	})
	t.Run("a host with a quote is escaped in Forwarded", func(t *testing.T) {
		in, _ := http.NewRequest("GET", "https://a.example/", nil)
		in.Host = `a"b.example`
		out := in.Clone(in.Context())
		setForwarded(out, in, "198.18.0.9", false)
		if got, want := out.Header.Get("Forwarded"), `for=198.18.0.9;host="a\"b.example";proto=https`; got != want {
			t.Errorf("Forwarded = %q, want %q", got, want)
		}
	})
}

func TestUpstreamConnectionsAreReused(t *testing.T) {
	const workers, each = 8, 25
	cert := mustCert(t, "app.example.com")
	var h1Conns, h3Conns atomic.Int64
	h1 := httptest.NewUnstartedServer(echoHandler("h1"))
	h1.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			h1Conns.Add(1)
		}
	}
	h1.Start()
	t.Cleanup(h1.Close)
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	upCert := mustCert(t, "localhost")
	h3 := &http3.Server{
		Handler:   echoHandler("h3"),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{upCert.tls}},
		ConnContext: func(ctx context.Context, _ *quic.Conn) context.Context {
			h3Conns.Add(1)
			return ctx
		},
	}
	go func() { _ = h3.Serve(udp) }()
	t.Cleanup(func() { h3.Close(); udp.Close() })

	cfg := oneService(t, cert, PoolConfig{Name: "h1", Upstreams: []UpstreamConfig{{Name: "h1", Address: h1.Listener.Addr().String()}}},
		Route{Match: Match{PathPrefix: "/h1"}, Pool: "h1"},
		Route{Match: Match{PathPrefix: "/h3"}, Pool: "h3"},
	)
	cfg.Pools = append(cfg.Pools, PoolConfig{Name: "h3", Upstreams: []UpstreamConfig{{Name: "h3", Address: udp.LocalAddr().String(), Protocol: ProtoH3, InsecureSkipVerify: true}}})
	s := mustServer(t, cfg)
	c, _ := h3Client(t, cert, mustAddr(t, s))
	for _, tc := range []struct {
		name  string
		path  string
		conns *atomic.Int64
		max   int64
	}{
		// net/http may dial a new connection while another is on its
		// way back to the idle pool, so a busy machine sees a few more
		// than workers; without reuse it would be one per request.
		{"HTTP/1.1 upstream connections are kept alive and reused", "/h1", &h1Conns, 2 * workers},
		{"one HTTP/3 upstream connection carries every request", "/h3", &h3Conns, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var wg sync.WaitGroup
			for range workers {
				wg.Go(func() {
					for range each {
						res, err := c.Get("https://app.example.com" + tc.path)
						if err != nil {
							t.Error(err)
							return
						}
						_, _ = io.Copy(io.Discard, res.Body)
						res.Body.Close()
						if res.StatusCode != http.StatusOK {
							t.Errorf("status %d", res.StatusCode)
						}
					}
				})
			}
			wg.Wait()
			if n := tc.conns.Load(); n < 1 || n > tc.max {
				t.Errorf("%d requests opened %d upstream connections, want 1 to %d", workers*each, n, tc.max)
			}
		})
	}
}
