package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/quic-go/quic-go/http3"

	"github.com/spooky-lb/spooky/cid"
)

// The example certificate (examples/certs) covers example.test and
// *.example.test; it is its own CA.
const (
	exampleCert = "../../examples/certs/example.test.crt"
	exampleKey  = "../../examples/certs/example.test.key"
)

func TestEachProtocolAnswersItsClientsOnEveryPath(t *testing.T) {
	tests := []struct {
		name      string
		proto     protocol
		client    *http.Protocols // what the client offers
		wantProto string          // what the response must arrive as
	}{
		{"an HTTP/1.1-over-TLS backend answers a client offering h2 and http/1.1 with HTTP/1.1",
			protoH1, protocols(true, true, false), "HTTP/1.1"},
		{"an HTTP/2-over-TLS backend answers a client offering h2 with HTTP/2",
			protoH2, protocols(true, true, false), "HTTP/2.0"},
		{"an HTTP/2-over-TLS backend falls back to HTTP/1.1 for a client without h2",
			protoH2, protocols(true, false, false), "HTTP/1.1"},
		{"an h2c backend answers a prior-knowledge HTTP/2 client with cleartext HTTP/2",
			protoH2C, protocols(false, false, true), "HTTP/2.0"},
		{"an h2c backend answers a plain HTTP/1.1 client on the same listener",
			protoH2C, protocols(true, false, false), "HTTP/1.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := "b-" + string(tt.proto)
			addr := mustServeTCP(t, options{proto: tt.proto, name: name})
			tr := &http.Transport{Protocols: tt.client, TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
			t.Cleanup(tr.CloseIdleConnections)
			client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
			scheme := "https://"
			if !tt.proto.tls() {
				scheme = "http://"
			}
			for _, path := range []string{"/", "/static/app.css"} {
				resp := mustGet(t, client, scheme+addr.String()+path)
				if resp.proto != tt.wantProto {
					t.Errorf("GET %s arrived as %s, want %s", path, resp.proto, tt.wantProto)
				}
				if resp.status != http.StatusOK || resp.body != name+"\n" || resp.backend != name {
					t.Errorf("GET %s = %d %q X-Backend=%q, want 200 %q and X-Backend %q",
						path, resp.status, resp.body, resp.backend, name+"\n", name)
				}
			}
			if resp := mustGet(t, client, scheme+addr.String()+"/healthz"); resp.status != http.StatusOK || resp.backend != name {
				t.Errorf("GET /healthz = %d X-Backend=%q, want 200 and %q", resp.status, resp.backend, name)
			}
		})
	}
}

func TestTLSBackendsPresentTheGivenCertificate(t *testing.T) {
	// The demo's api upstreams verify against the example CA with the
	// server name api.example.test: the backends must present that
	// certificate, over TCP and over QUIC alike.
	roots := x509.NewCertPool()
	pem, err := os.ReadFile(exampleCert)
	if err != nil {
		t.Fatal(err)
	}
	if !roots.AppendCertsFromPEM(pem) {
		t.Fatalf("%s: no certificate", exampleCert)
	}
	verify := &tls.Config{RootCAs: roots, ServerName: "api.example.test"}
	withCert := func(p protocol) options {
		o := options{proto: p, name: "api-" + string(p), certFile: exampleCert, keyFile: exampleKey}
		if p == protoH3 {
			o.cid, o.serverID = cid.Config{ServerIDLen: 1, NonceLen: 4}, []byte{1}
		}
		return o
	}

	for _, p := range []protocol{protoH1, protoH2} {
		t.Run("an "+string(p)+" backend's certificate verifies as api.example.test", func(t *testing.T) {
			addr := mustServeTCP(t, withCert(p))
			tr := &http.Transport{Protocols: protocols(true, true, false), TLSClientConfig: verify.Clone()}
			t.Cleanup(tr.CloseIdleConnections)
			resp := mustGet(t, &http.Client{Transport: tr, Timeout: 5 * time.Second}, "https://"+addr.String()+"/")
			if resp.status != http.StatusOK || resp.backend != "api-"+string(p) {
				t.Errorf("GET / = %d X-Backend=%q", resp.status, resp.backend)
			}
		})
	}
	t.Run("an h3 backend's certificate verifies as api.example.test", func(t *testing.T) {
		addr := mustServe(t, withCert(protoH3))
		tr := &http3.Transport{TLSClientConfig: verify.Clone()}
		t.Cleanup(func() { tr.Close() })
		resp := mustGet(t, &http.Client{Transport: tr, Timeout: 5 * time.Second}, "https://"+addr.String()+"/")
		if resp.status != http.StatusOK || resp.proto != "HTTP/3.0" || resp.backend != "api-h3" {
			t.Errorf("GET / = %d %s X-Backend=%q, want 200 HTTP/3.0 api-h3", resp.status, resp.proto, resp.backend)
		}
	})
	t.Run("a client expecting another name refuses the certificate", func(t *testing.T) {
		addr := mustServeTCP(t, withCert(protoH2))
		conf := verify.Clone()
		conf.ServerName = "api.example.com"
		tr := &http.Transport{TLSClientConfig: conf}
		t.Cleanup(tr.CloseIdleConnections)
		resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("https://" + addr.String() + "/")
		if err == nil {
			resp.Body.Close()
			t.Fatal("a certificate for *.example.test verified as api.example.com")
		}
	})
}

func TestServeTCPReturnsCleanlyWhenItsContextEnds(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	readyc := make(chan net.Addr, 1)
	go func() {
		done <- serveTCP(ctx, ln, options{proto: protoH2C, name: "s"}, slog.New(slog.DiscardHandler),
			func(a net.Addr) { readyc <- a })
	}()
	addr := <-readyc
	// An idle HTTP/2 connection stays open: shutdown must still end.
	tr := &http.Transport{Protocols: protocols(false, false, true)}
	defer tr.CloseIdleConnections()
	mustGet(t, &http.Client{Transport: tr, Timeout: 5 * time.Second}, "http://"+addr.String()+"/")
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serveTCP returned %v after its context ended, want nil", err)
		}
	case <-time.After(2 * shutdownGrace):
		t.Fatal("serveTCP did not return after its context ended")
	}
}

func TestRunBindsTCPForTCPProtocols(t *testing.T) {
	// Bind a free TCP port first, then ask run for the same one: it
	// must fail with "address in use", which only a TCP bind can hit.
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	o, err := parseArgs([]string{"--protocol", "h2c", "--listen", held.Addr().String(), "--name", "x"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if err := run(context.Background(), o, slog.New(slog.DiscardHandler), nil); err == nil {
		t.Errorf("run bound TCP %s, which another listener holds", held.Addr())
	}
}

// protocols returns the set of HTTP versions a client offers.
func protocols(h1, h2, h2c bool) *http.Protocols {
	p := new(http.Protocols)
	p.SetHTTP1(h1)
	p.SetHTTP2(h2)
	p.SetUnencryptedHTTP2(h2c)
	return p
}

// response is what the tests look at in an answer.
type response struct {
	status  int
	proto   string
	body    string
	backend string
}

func mustGet(tb testing.TB, c *http.Client, url string) response {
	tb.Helper()
	resp, err := c.Get(url)
	if err != nil {
		tb.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("GET %s: read body: %v", url, err)
	}
	return response{status: resp.StatusCode, proto: resp.Proto, body: string(body), backend: resp.Header.Get("X-Backend")}
}

// mustServeTCP serves o on a loopback TCP port until the test ends.
func mustServeTCP(tb testing.TB, o options) net.Addr {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	return mustRunServer(tb, "serveTCP", func(ctx context.Context, ready func(net.Addr)) error {
		return serveTCP(ctx, ln, o, slog.New(slog.DiscardHandler), ready)
	})
}
