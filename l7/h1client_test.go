package l7

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// rawUpstream is an HTTP/1.1 upstream written by hand, for answers
// net/http's server would not give: it reads each request head (and a
// Content-Length body) and lets serve write whatever it likes. serve
// returns false to close the connection.
type rawUpstream struct {
	addr  string
	conns atomic.Int64
}

func mustRawUpstream(tb testing.TB, serve func(n int, c net.Conn, req *http.Request) bool) *rawUpstream {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	u := &rawUpstream{addr: ln.Addr().String()}
	var wg sync.WaitGroup
	tb.Cleanup(func() { ln.Close(); wg.Wait() })
	var reqs atomic.Int64
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u.conns.Add(1)
			wg.Go(func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					_, _ = io.Copy(io.Discard, req.Body)
					if !serve(int(reqs.Add(1)), c, req) {
						return
					}
				}
			})
		}
	})
	return u
}

func TestH1ClientFramesResponses(t *testing.T) {
	cert := mustCert(t, "app.example.com")
	for _, tc := range []struct {
		name     string
		method   string
		answer   string // the whole response, written at once
		keep     bool   // the upstream keeps the connection open
		status   int
		body     string
		trailer  string // X-Sum trailer expected
		oneConns bool   // both requests must share one connection
	}{
		{name: "a Content-Length body arrives and the connection is reused", method: "GET",
			answer: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", keep: true, status: 200, body: "hello", oneConns: true},
		{name: "a chunked body arrives with its trailers", method: "GET",
			answer: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\nX-Sum: 42\r\n\r\n",
			keep:   true, status: 200, body: "abcde", trailer: "42", oneConns: true},
		{name: "interim 100 and 103 responses are skipped", method: "GET",
			answer: "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
			keep:   true, status: 201, body: "ok", oneConns: true},
		{name: "a body delimited by the connection's close arrives whole", method: "GET",
			answer: "HTTP/1.1 200 OK\r\n\r\nuntil the end", status: 200, body: "until the end"},
		{name: "a HEAD answer has no body though it states a length", method: "HEAD",
			answer: "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", keep: true, status: 200, body: "", oneConns: true},
		{name: "a 204 has no body", method: "GET",
			answer: "HTTP/1.1 204 No Content\r\n\r\n", keep: true, status: 204, body: "", oneConns: true},
		{name: "conflicting Content-Length fields are a bad gateway", method: "GET",
			answer: "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", status: 502},
		{name: "an unknown transfer coding is a bad gateway", method: "GET",
			answer: "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxx", status: 502},
		{name: "a malformed status line is a bad gateway", method: "GET",
			answer: "HTTP/1.1 OK\r\n\r\n", status: 502},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := mustRawUpstream(t, func(_ int, c net.Conn, _ *http.Request) bool {
				_, _ = io.WriteString(c, tc.answer)
				return tc.keep
			})
			s := mustServer(t, oneService(t, cert, PoolConfig{Upstreams: []UpstreamConfig{{Name: "raw", Address: up.addr}}}))
			c, _ := h3Client(t, cert, mustAddr(t, s))
			for range 2 {
				req, _ := http.NewRequest(tc.method, "https://app.example.com/x", nil)
				res, body := mustDo(t, c, req)
				if res.StatusCode != tc.status {
					t.Fatalf("status %d, want %d (body %q)", res.StatusCode, tc.status, body)
				}
				if tc.status == 502 {
					continue
				}
				if body != tc.body {
					t.Errorf("body %q, want %q", body, tc.body)
				}
				if got := res.Trailer.Get("X-Sum"); got != tc.trailer {
					t.Errorf("trailer X-Sum %q, want %q", got, tc.trailer)
				}
			}
			if n := up.conns.Load(); tc.oneConns && n != 1 {
				t.Errorf("%d upstream connections for 2 requests, want 1", n)
			}
		})
	}
}

func TestH1ClientRetriesAConnectionTheUpstreamClosedWhileIdle(t *testing.T) {
	cert := mustCert(t, "app.example.com")
	closed := make(chan struct{}, 10)
	up := mustRawUpstream(t, func(_ int, c net.Conn, _ *http.Request) bool {
		// Keep-alive promised, then the connection is closed at once, as
		// an upstream whose idle timeout passes does.
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		c.Close()
		closed <- struct{}{}
		return false
	})
	s := mustServer(t, oneService(t, cert, PoolConfig{Upstreams: []UpstreamConfig{{Name: "raw", Address: up.addr}}}))
	c, _ := h3Client(t, cert, mustAddr(t, s))
	for _, m := range []string{"GET", "POST", "GET"} {
		req, _ := http.NewRequest(m, "https://app.example.com/", nil)
		res, body := mustDo(t, c, req)
		if res.StatusCode != 200 || body != "ok" {
			t.Fatalf("%s: status %d body %q, want 200 ok", m, res.StatusCode, body)
		}
		<-closed
	}
	if n := up.conns.Load(); n != 3 {
		t.Errorf("%d upstream connections, want 3 (one per request)", n)
	}
}

func TestH1ClientSendsBodiesOfUnknownLengthChunked(t *testing.T) {
	cert := mustCert(t, "app.example.com")
	up := mustUpstream(t, ProtoH1, "u", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Seen-TE", strings.Join(r.TransferEncoding, ","))
		w.Header().Set("X-Seen-Length", strings.TrimSpace(r.Header.Get("Content-Length")))
		_, _ = w.Write(b)
	}))
	s := mustServer(t, oneService(t, cert, PoolConfig{Upstreams: []UpstreamConfig{up}}))
	c, _ := h3Client(t, cert, mustAddr(t, s))
	for _, tc := range []struct {
		name, method string
		body         io.Reader
		want, te     string
	}{
		{"a POST of unknown length goes chunked", "POST", io.MultiReader(strings.NewReader("abc"), strings.NewReader("def")), "abcdef", "chunked"},
		{"a POST of known length goes with Content-Length", "POST", strings.NewReader("abcdef"), "abcdef", ""},
		{"an empty POST goes with Content-Length 0", "POST", nil, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, "https://app.example.com/", tc.body)
			res, body := mustDo(t, c, req)
			if body != tc.want || res.Header.Get("X-Seen-TE") != tc.te {
				t.Errorf("upstream saw body %q TE %q, want %q %q", body, res.Header.Get("X-Seen-TE"), tc.want, tc.te)
			}
		})
	}
}

func TestH1RequestsThatWouldSplitAreRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(r *http.Request)
	}{
		{"a CR LF in a field value", func(r *http.Request) { r.Header["X-A"] = []string{"a\r\nX-Smuggled: 1"} }},
		{"a space in a field name", func(r *http.Request) { r.Header["X A"] = []string{"1"} }},
		{"a CR LF in the host", func(r *http.Request) { r.Host = "a\r\nb" }},
		{"a space in the method", func(r *http.Request) { r.Method = "GET /x" }},
		{"a CR LF in a trailer", func(r *http.Request) { r.Trailer = http.Header{"X-T": {"a\nb"}} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &http.Request{Method: "GET", URL: &url.URL{Scheme: "http", Host: "u", Path: "/"}, Host: "u", Header: http.Header{}}
			if err := validH1Request(r); err != nil {
				t.Fatalf("the unedited request is refused: %v", err)
			}
			tc.edit(r)
			if err := validH1Request(r); err == nil {
				t.Error("accepted")
			}
		})
	}
}

func TestH1FieldsParse(t *testing.T) {
	for _, tc := range []struct {
		name, head string
		want       http.Header
		bad        bool
	}{
		{name: "canonical names, trimmed values", head: "Content-Length: 5\r\nX-A:  a b \t\r\n\r\n",
			want: http.Header{"Content-Length": {"5"}, "X-A": {"a b"}}},
		{name: "names are made canonical", head: "content-type: text/plain\r\nx-rAY-id: 7\r\n\r\n",
			want: http.Header{"Content-Type": {"text/plain"}, "X-Ray-Id": {"7"}}},
		{name: "repeated fields keep their order", head: "Set-Cookie: a=1\r\nX: 0\r\nSet-Cookie: b=2\r\n\r\n",
			want: http.Header{"Set-Cookie": {"a=1", "b=2"}, "X": {"0"}}},
		{name: "bare LF line ends", head: "A: 1\nB: 2\n\n", want: http.Header{"A": {"1"}, "B": {"2"}}},
		{name: "an empty value", head: "X-Empty:\r\n\r\n", want: http.Header{"X-Empty": {""}}},
		{name: "no fields", head: "\r\n", want: http.Header{}},
		{name: "obs-fold is refused", head: "X: a\r\n b\r\n\r\n", bad: true},
		{name: "a line without a colon is refused", head: "X a\r\n\r\n", bad: true},
		{name: "a space before the colon is refused", head: "X : a\r\n\r\n", bad: true},
		{name: "a NUL in a value is refused", head: "X: a\x00b\r\n\r\n", bad: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := parseH1Fields(tc.head)
			if tc.bad {
				if err == nil {
					t.Fatalf("accepted as %v", h)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(h, tc.want) {
				t.Errorf("got %v, want %v", h, tc.want)
			}
		})
	}
}

func TestH1HeadIsBounded(t *testing.T) {
	head := "HTTP/1.1 200 OK\r\n" + strings.Repeat("X-Long: "+strings.Repeat("a", 1000)+"\r\n", maxH1HeadBytes/1000+1) + "\r\n"
	_, _, err := readH1Head(bufio.NewReaderSize(strings.NewReader(head), 4096), nil)
	if !errors.Is(err, errH1HeadTooLarge) {
		t.Fatalf("err %v, want %v", err, errH1HeadTooLarge)
	}
	got, _, err := readH1Head(bufio.NewReaderSize(strings.NewReader("HTTP/1.1 204 No Content\r\nA: "+strings.Repeat("b", 9000)+"\r\n\r\nnext"), 4096), nil)
	if err != nil || !strings.HasSuffix(got, "\r\n\r\n") || strings.Contains(got, "next") {
		t.Fatalf("a head longer than the reader's buffer: %q, %v", got[max(0, len(got)-10):], err)
	}
}

// TestH1UpstreamConnectionsStayWithinMaxConnections holds MaxConnections
// requests at an HTTP/1.1 upstream: one more is refused as the pool has no
// room (503), and every request, held or later, rides on at most
// MaxConnections connections.
func TestH1UpstreamConnectionsStayWithinMaxConnections(t *testing.T) {
	const maxConns = 2
	cert := mustCert(t, "app.example.com")
	release := make(chan struct{})
	var held atomic.Int64
	var opened atomic.Int64
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			held.Add(1)
			<-release
		}
		_, _ = io.WriteString(w, "ok")
	}))
	up.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			opened.Add(1)
		}
	}
	up.Start()
	t.Cleanup(up.Close)
	s := mustServer(t, oneService(t, cert, PoolConfig{Upstreams: []UpstreamConfig{{Name: "u", Address: up.Listener.Addr().String(), MaxConnections: maxConns}}}))
	c, _ := h3Client(t, cert, mustAddr(t, s))
	var wg sync.WaitGroup
	for range maxConns {
		wg.Go(func() {
			res, body := mustGet(t, c, "https://app.example.com/hold")
			if res.StatusCode != 200 || body != "ok" {
				t.Errorf("held request: %d %q", res.StatusCode, body)
			}
		})
	}
	waitFor(t, 5*time.Second, "the held requests at the upstream", func() bool { return held.Load() == maxConns })
	if res, body := mustGet(t, c, "https://app.example.com/more"); res.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("a request past MaxConnections: %d %q, want 503", res.StatusCode, body)
	}
	close(release)
	wg.Wait()
	for range 10 {
		if res, _ := mustGet(t, c, "https://app.example.com/later"); res.StatusCode != 200 {
			t.Fatalf("later request: %d", res.StatusCode)
		}
	}
	if n := opened.Load(); n > maxConns {
		t.Errorf("upstream saw %d connections, want at most %d", n, maxConns)
	}
}

// TestH1ExchangeEndsWhenTheClientLeaves cancels a request the upstream
// holds: spooky must give up its side (closing the connection, which is
// how an HTTP/1.1 upstream learns of it), not wait for the answer.
func TestH1ExchangeEndsWhenTheClientLeaves(t *testing.T) {
	cert := mustCert(t, "app.example.com")
	arrived, gone := make(chan struct{}), make(chan struct{})
	up := mustUpstream(t, ProtoH1, "u", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		select {
		case <-r.Context().Done(): // the connection closed
			close(gone)
		case <-time.After(15 * time.Second): // so that a failing test ends
		}
	}))
	s := mustServer(t, oneService(t, cert, PoolConfig{Upstreams: []UpstreamConfig{up}}))
	c, _ := h3Client(t, cert, mustAddr(t, s))
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://app.example.com/", nil)
	errc := make(chan error, 1)
	go func() {
		res, err := c.Do(req)
		if err == nil {
			res.Body.Close()
		}
		errc <- err
	}()
	<-arrived
	cancel()
	if err := <-errc; err == nil {
		t.Error("the cancelled request got an answer")
	}
	select {
	case <-gone:
	case <-time.After(10 * time.Second):
		t.Fatal("the upstream still holds the request 10 s after the client left")
	}
}

// TestH1RequestBodyFailureClosesTheUpstreamConnection sends a body that
// breaks off malformed: the upstream, still waiting for the rest, must see
// its connection closed and the client get its 400 at once, not when the
// route's (here long) timeout passes.
func TestH1RequestBodyFailureClosesTheUpstreamConnection(t *testing.T) {
	cert := mustCert(t, "app.example.com")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	closed := make(chan struct{})
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, c) // never answers; reads until the close
		c.Close()
		close(closed)
	}()
	cfg := oneService(t, cert, PoolConfig{Upstreams: []UpstreamConfig{{Name: "u", Address: ln.Addr().String()}}},
		Route{Pool: "p", Timeout: time.Minute})
	cfg.Services[0].TCP = true
	s := mustServer(t, cfg)
	c := mustRawTLS(t, cert, mustAddr(t, s))
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(c, "POST /upload HTTP/1.1\r\nHost: app.example.com\r\nTransfer-Encoding: chunked\r\n\r\n"+
		"4\r\nabcd\r\nnot-a-chunk-size\r\n"); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer within 20 s (the route timeout is a minute): %v", err)
	}
	if res.StatusCode != http.StatusBadRequest {
		t.Errorf("status %d, want 400", res.StatusCode)
	}
	select {
	case <-closed:
	case <-time.After(20 * time.Second):
		t.Error("the upstream connection stayed open")
	}
}

// TestH1ClientDoesNotSendABodyOnAConnectionTheUpstreamClosed: a request
// with a body cannot be sent again once it went out, so an idle connection
// the upstream closed must be found closed before it is used.
func TestH1ClientDoesNotSendABodyOnAConnectionTheUpstreamClosed(t *testing.T) {
	cert := mustCert(t, "app.example.com")
	closed := make(chan struct{}, 10)
	up := mustRawUpstream(t, func(_ int, c net.Conn, _ *http.Request) bool {
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		c.Close() // as an upstream whose idle timeout passes does
		closed <- struct{}{}
		return false
	})
	s := mustServer(t, oneService(t, cert, PoolConfig{Upstreams: []UpstreamConfig{{Name: "raw", Address: up.addr}}}))
	// Check every reuse, not only those after h1CheckIdleAfter, so the
	// test need not wait.
	s.Upstream("raw").transport.(*h1Client).checkIdleAfter = 0
	c, _ := h3Client(t, cert, mustAddr(t, s))
	for i := range 3 {
		req, _ := http.NewRequest(http.MethodPost, "https://app.example.com/", strings.NewReader("a body"))
		res, body := mustDo(t, c, req)
		if res.StatusCode != 200 || body != "ok" {
			t.Fatalf("POST %d: status %d body %q, want 200 ok", i, res.StatusCode, body)
		}
		<-closed
	}
	if n := up.conns.Load(); n != 3 {
		t.Errorf("%d upstream connections, want 3", n)
	}
}
