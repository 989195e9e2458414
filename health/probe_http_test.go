package health

import (
	"crypto/tls"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/spooky-lb/spooky/config"
)

func mustHTTPServer(tb testing.TB, h http.Handler, mode string, cert testCert) *httptest.Server {
	tb.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // failed handshakes are the point of some tests
	switch mode {
	case "https", "https-p256":
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert.tls}}
		if mode == "https-p256" {
			srv.TLS.CurvePreferences = []tls.CurveID{tls.CurveP256}
		}
		srv.EnableHTTP2 = true
		srv.StartTLS()
	case "h2c":
		p := new(http.Protocols)
		p.SetUnencryptedHTTP2(true) // HTTP/2 only: HTTP/1.1 is refused
		srv.Config.Protocols = p
		srv.Start()
	default:
		srv.Start()
	}
	tb.Cleanup(srv.Close)
	return srv
}

func TestHTTPProbe(t *testing.T) {
	mustNotLeak(t)
	cert, other := mustCert(t, "backend.example.test"), mustCert(t, "other.example.test")
	h := newHandler()
	plain := mustHTTPServer(t, h, "http", cert).Listener.Addr().String()
	secure := mustHTTPServer(t, h, "https", cert).Listener.Addr().String()
	hung := silentTCP(t)

	for _, tc := range []struct {
		name   string
		status int
		body   string
		probe  Probe
		ok     bool
		want   []string // parts of the reason, in order
	}{
		{name: "a 200 passes", probe: Probe{Type: config.CheckHTTP, Addr: plain}, ok: true, want: []string{"200"}},
		{name: "a 503 fails with its status", status: 503, probe: Probe{Type: config.CheckHTTP, Addr: plain}, want: []string{"status 503"}},
		{name: "a 404 passes when expected", status: 404,
			probe: Probe{Type: config.CheckHTTP, Addr: plain, ExpectStatus: []config.StatusRange{{Lo: 404, Hi: 404}}}, ok: true, want: []string{"404"}},
		{name: "a redirect passes by default and is not followed", status: 302, probe: Probe{Type: config.CheckHTTP, Addr: plain}, ok: true, want: []string{"302"}},
		{name: "a body that matches passes", probe: Probe{Type: config.CheckHTTP, Addr: plain, Body: `"status": ?"up"`}, ok: true, want: []string{"200"}},
		{name: "a body that does not match fails", body: `{"status": "degraded"}`,
			probe: Probe{Type: config.CheckHTTP, Addr: plain, Body: `"status": ?"up"`}, want: []string{`body does not match "\"status\": ?\"up\""`}},
		{name: "a refused connection fails", probe: Probe{Type: config.CheckHTTP, Addr: deadAddr(t, "tcp")}, want: []string{"connect: connection refused"}},
		{name: "a server that never answers times out",
			probe: Probe{Type: config.CheckHTTP, Addr: hung, Timeout: 50 * time.Millisecond}, want: []string{"timeout after 50ms"}},
		{name: "https accepts a self-signed certificate when told no one to expect",
			probe: Probe{Type: config.CheckHTTPS, Addr: secure}, ok: true, want: []string{"200"}},
		{name: "https verifies against the given ca and name",
			probe: Probe{Type: config.CheckHTTPS, Addr: secure, TLS: ProbeTLS{ServerName: "backend.example.test", CAFile: cert.certFile, Verify: true}},
			ok:    true, want: []string{"200"}},
		{name: "https fails against a ca that did not sign the certificate",
			probe: Probe{Type: config.CheckHTTPS, Addr: secure, TLS: ProbeTLS{CAFile: other.certFile, Verify: true}},
			want:  []string{"request: tls: failed to verify certificate", "unknown authority"}},
		{name: "https fails for a name the certificate does not cover",
			probe: Probe{Type: config.CheckHTTPS, Addr: secure, TLS: ProbeTLS{ServerName: "wrong.example.test", CAFile: cert.certFile, Verify: true}},
			want:  []string{"valid for backend.example.test, not wrong.example.test"}},
		{name: "a missing ca file is spooky's problem, not the target's",
			probe: Probe{Type: config.CheckHTTPS, Addr: secure, TLS: ProbeTLS{CAFile: "/nonexistent/ca.pem", Verify: true}},
			want:  []string{"read ca: open /nonexistent/ca.pem: no such file or directory"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.set(cmpOr(tc.status, 200), cmpOr(tc.body, `{"status": "up"}`))
			tc.probe.Timeout = cmpOr(tc.probe.Timeout, time.Second)
			o := probeOnce(t, tc.probe)
			if o.ok != tc.ok || !matches(o.detail, tc.want...) {
				t.Fatalf("probe = %+v, want ok %v and a reason with %q", o, tc.ok, tc.want)
			}
			if o.local != (tc.name == "a missing ca file is spooky's problem, not the target's") {
				t.Fatalf("local = %v", o.local)
			}
		})
	}

	t.Run("the request carries the host, path and user agent asked for", func(t *testing.T) {
		h.set(200, "")
		o := probeOnce(t, Probe{Type: config.CheckHTTPS, Addr: secure, Path: "/healthz?deep=1", Host: "api.example.test", Timeout: time.Second})
		host, uri, ua, proto := h.seen()
		if !o.ok || host != "api.example.test" || uri != "/healthz?deep=1" || ua != userAgent || proto != "HTTP/2.0" {
			t.Fatalf("probe %+v; server saw host %q, uri %q, user agent %q, %s; want api.example.test, /healthz?deep=1, %s, HTTP/2.0 (offered by ALPN)",
				o, host, uri, ua, proto, userAgent)
		}
	})
	t.Run("a server that has only P-256 for key exchange is still reached", func(t *testing.T) {
		h.set(200, "")
		p256 := mustHTTPServer(t, h, "https-p256", cert).Listener.Addr().String()
		if o := probeOnce(t, Probe{Type: config.CheckHTTPS, Addr: p256, Timeout: time.Second}); !o.ok {
			t.Fatalf("probe = %+v", o)
		}
	})
	t.Run("an h2c probe speaks HTTP/2 to a server that speaks nothing else", func(t *testing.T) {
		h2c := mustHTTPServer(t, h, "h2c", cert).Listener.Addr().String()
		if o := probeOnce(t, Probe{Type: config.CheckHTTP, Addr: h2c, Timeout: time.Second}); o.ok {
			t.Fatalf("an HTTP/1.1 probe of an h2c-only server passed: %+v", o)
		}
		o := probeOnce(t, Probe{Type: config.CheckHTTP, H2C: true, Addr: h2c, Timeout: time.Second})
		if _, _, _, proto := h.seen(); !o.ok || proto != "HTTP/2.0" {
			t.Fatalf("probe = %+v, server saw %s", o, proto)
		}
	})
}

func cmpOr[T comparable](a, b T) T {
	var zero T
	if a != zero {
		return a
	}
	return b
}
