package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"math/big"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go/http3"
)

func TestLoadOpensDistinctConnectionsAndCountsBackends(t *testing.T) {
	addr, peers := mustServer(t, "alpha")
	o, err := parseArgs([]string{"--url", "https://" + addr + "/", "--conns", "3", "--requests", "4", "--concurrency", "2", "--insecure"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	rep := load(context.Background(), o)
	if rep.Requests != 12 || rep.OK != 12 || rep.Failed != 0 {
		t.Fatalf("requests=%d ok=%d failed=%d errors=%v, want 12 ok", rep.Requests, rep.OK, rep.Failed, rep.Errors)
	}
	if rep.Backends["alpha"] != 12 || rep.ConnBackends["alpha"] != 3 || rep.SwitchedConns != 0 {
		t.Errorf("backends=%v conn backends=%v switched=%d, want alpha: 12 responses on 3 connections", rep.Backends, rep.ConnBackends, rep.SwitchedConns)
	}
	if n := peers(); n != 3 {
		t.Errorf("server saw %d client addresses, want one per connection (3)", n)
	}
	if rep.Latency.P50 <= 0 || rep.Latency.P99 < rep.Latency.P50 || rep.Latency.Max < rep.Latency.P99 {
		t.Errorf("latency %+v: want 0 < p50 ≤ p99 ≤ max", rep.Latency)
	}
}

func TestLoadCountsFailuresWhenNothingAnswers(t *testing.T) {
	// A bound socket that never reads: handshakes time out.
	silent, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	o, err := parseArgs([]string{"--url", "https://" + silent.LocalAddr().String() + "/", "--conns", "2", "--timeout", "200ms", "--insecure"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	rep := load(context.Background(), o)
	if rep.Failed != 2 || rep.OK != 0 || len(rep.Errors) == 0 {
		t.Errorf("failed=%d ok=%d errors=%v, want 2 failures with their errors", rep.Failed, rep.OK, rep.Errors)
	}
}

func TestReport(t *testing.T) {
	r := newReport("https://x/", 2)
	r.add(result{conn: 0, backend: "b1", latency: 1 * time.Millisecond})
	r.add(result{conn: 0, backend: "b2", latency: 3 * time.Millisecond})
	r.add(result{conn: 1, backend: "b2", latency: 2 * time.Millisecond})
	r.add(result{conn: 1, err: io.ErrUnexpectedEOF})
	r.finish(time.Second)

	t.Run("a connection answered by two backends counts as switched", func(t *testing.T) {
		if r.SwitchedConns != 1 {
			t.Errorf("switched = %d, want 1", r.SwitchedConns)
		}
	})
	t.Run("connections count by the backend of their first response", func(t *testing.T) {
		if r.ConnBackends["b1"] != 1 || r.ConnBackends["b2"] != 1 {
			t.Errorf("conn backends = %v, want b1: 1, b2: 1", r.ConnBackends)
		}
	})
	t.Run("percentiles are nearest-rank over successful requests", func(t *testing.T) {
		if r.Latency.P50 != 2 || r.Latency.P99 != 3 || r.Latency.Max != 3 {
			t.Errorf("latency = %+v, want p50 2, p99 3, max 3", r.Latency)
		}
	})
	t.Run("the JSON report carries counts, backends and errors", func(t *testing.T) {
		var buf bytes.Buffer
		if err := r.write(&buf, true); err != nil {
			t.Fatal(err)
		}
		var got map[string]any
		if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
			t.Fatalf("not JSON: %v\n%s", err, buf.String())
		}
		if got["ok"] != 3.0 || got["failed"] != 1.0 || got["backends"].(map[string]any)["b2"] != 2.0 {
			t.Errorf("JSON report %s", buf.String())
		}
	})
	t.Run("the text report lists every backend and error", func(t *testing.T) {
		var buf bytes.Buffer
		if err := r.write(&buf, false); err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"3 ok, 1 failed", "b1", "b2", "p50 2.000 ms", "unexpected EOF", "more than one backend: 1"} {
			if !strings.Contains(buf.String(), want) {
				t.Errorf("text report lacks %q:\n%s", want, buf.String())
			}
		}
	})
}

func TestParseArgs(t *testing.T) {
	bad := []struct {
		name string
		args []string
		want string
	}{
		{"a missing URL is refused", nil, "--url"},
		{"a plain http URL is refused", []string{"--url", "http://198.18.0.10/"}, "https"},
		{"zero connections are refused", []string{"--url", "https://198.18.0.10/", "--conns", "0"}, "--conns"},
		{"zero requests are refused", []string{"--url", "https://198.18.0.10/", "--requests", "0"}, "--requests"},
		{"negative concurrency is refused", []string{"--url", "https://198.18.0.10/", "--concurrency", "-1"}, "--concurrency"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := parseArgs(tt.args, io.Discard); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("parseArgs(%q) = %v, want an error mentioning %q", tt.args, err, tt.want)
			}
		})
	}
	t.Run("concurrency defaults to one request per connection", func(t *testing.T) {
		o, err := parseArgs([]string{"--url", "https://[2001:db8::a]:443/", "--conns", "7"}, io.Discard)
		if err != nil || o.concurrency != 7 {
			t.Errorf("concurrency = %d (%v), want 7", o.concurrency, err)
		}
	})
}

// mustServer runs an HTTP/3 server on loopback that names itself in
// X-Backend; peers reports how many client addresses it has seen.
func mustServer(tb testing.TB, name string) (addr string, peers func() int) {
	tb.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatal(err)
	}
	var mu sync.Mutex
	seen := map[string]bool{}
	srv := &http3.Server{
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{mustCert(tb)}},
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			seen[r.RemoteAddr] = true
			mu.Unlock()
			w.Header().Set("X-Backend", name)
			io.WriteString(w, name+"\n")
		}),
	}
	go func() { _ = srv.Serve(conn) }()
	tb.Cleanup(func() { srv.Close(); conn.Close() })
	return conn.LocalAddr().String(), func() int { mu.Lock(); defer mu.Unlock(); return len(seen) }
}

func mustCert(tb testing.TB) tls.Certificate {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
