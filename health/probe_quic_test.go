package health

import (
	"errors"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/spooky-lb/spooky/config"
)

func TestQUICProbe(t *testing.T) {
	mustNotLeak(t)
	cert, other := mustCert(t, "backend.example.test"), mustCert(t, "other.example.test")
	h := newHandler()
	srv := mustH3Server(t, cert, h)
	hung := silentUDP(t)

	for _, tc := range []struct {
		name   string
		status int
		body   string
		probe  Probe
		ok     bool
		want   []string // parts of the reason, in order
	}{
		{name: "a handshake with a self-signed certificate passes when told no one to expect",
			probe: Probe{Type: config.CheckQUIC, Addr: srv.addr}, ok: true, want: []string{"handshake"}},
		{name: "a handshake verified against the server's own ca and name passes",
			probe: Probe{Type: config.CheckQUIC, Addr: srv.addr, TLS: ProbeTLS{ServerName: "backend.example.test", CAFile: cert.certFile, Verify: true}},
			ok:    true, want: []string{"handshake"}},
		{name: "a handshake fails against a ca that did not sign the certificate",
			probe: Probe{Type: config.CheckQUIC, Addr: srv.addr, TLS: ProbeTLS{CAFile: other.certFile, Verify: true}},
			want:  []string{"handshake: ", "certificate signed by unknown authority"}},
		{name: "a handshake offering an ALPN the server does not speak fails",
			probe: Probe{Type: config.CheckQUIC, Addr: srv.addr, ALPN: "doq"},
			want:  []string{"handshake: ", "no application protocol"}},
		{name: "a server that never answers times out",
			probe: Probe{Type: config.CheckQUIC, Addr: hung, Timeout: 100 * time.Millisecond}, want: []string{"timeout after 100ms"}},
		{name: "a closed port times out (no ICMP reaches an unconnected socket)",
			probe: Probe{Type: config.CheckQUIC, Addr: deadAddr(t, "udp"), Timeout: 100 * time.Millisecond}, want: []string{"timeout after 100ms"}},
		{name: "an http3 200 passes", probe: Probe{Type: config.CheckHTTP3, Addr: srv.addr}, ok: true, want: []string{"200"}},
		{name: "an http3 503 fails with its status", status: 503, probe: Probe{Type: config.CheckHTTP3, Addr: srv.addr}, want: []string{"status 503"}},
		{name: "an http3 body that does not match fails", body: "starting",
			probe: Probe{Type: config.CheckHTTP3, Addr: srv.addr, Body: "up"}, want: []string{`body does not match "up"`}},
		{name: "an http3 probe of a server that never answers times out",
			probe: Probe{Type: config.CheckHTTP3, Addr: hung, Timeout: 100 * time.Millisecond}, want: []string{"timeout after 100ms"}},
		{name: "an http3 probe verified against a ca that did not sign the certificate fails",
			probe: Probe{Type: config.CheckHTTP3, Addr: srv.addr, TLS: ProbeTLS{CAFile: other.certFile, Verify: true}},
			want:  []string{"handshake: ", "certificate signed by unknown authority"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.set(cmpOr(tc.status, 200), cmpOr(tc.body, `{"status": "up"}`))
			tc.probe.Timeout = cmpOr(tc.probe.Timeout, time.Second)
			o := probeOnce(t, tc.probe)
			if o.ok != tc.ok || o.local || !matches(o.detail, tc.want...) {
				t.Fatalf("probe = %+v, want ok %v and a reason with %q", o, tc.ok, tc.want)
			}
		})
	}

	t.Run("a handshake probe closes with no error", func(t *testing.T) {
		srv := mustH3Server(t, cert, h) // its own, so its first connection is the probe's
		if o := probeOnce(t, Probe{Type: config.CheckQUIC, Addr: srv.addr, Timeout: time.Second}); !o.ok {
			t.Fatalf("probe = %+v", o)
		}
		waitFor(t, "the server saw the connection end", func() bool { return srv.closeOf(1) != nil })
		// H3_NO_ERROR, or, if the close came in a Handshake packet before
		// the server confirmed the handshake, the APPLICATION_ERROR that
		// stands for any application close there (RFC 9000 §10.2.3).
		var ae *quic.ApplicationError
		var te *quic.TransportError
		err := srv.closeOf(1)
		switch {
		case errors.As(err, &ae) && ae.Remote && ae.ErrorCode == quic.ApplicationErrorCode(http3.ErrCodeNoError):
		case errors.As(err, &te) && te.Remote && te.ErrorCode == quic.ApplicationErrorErrorCode:
		default:
			t.Fatalf("the server saw the connection end with %v, want the client's H3_NO_ERROR", err)
		}
		if n := srv.accepted.Load(); n != 1 {
			t.Fatalf("the server accepted %d connections, want 1", n)
		}
	})
	t.Run("an http3 request carries the authority, path and user agent asked for", func(t *testing.T) {
		h.set(204, "")
		o := probeOnce(t, Probe{Type: config.CheckHTTP3, Addr: srv.addr, Path: "/healthz?deep=1", Host: "api.example.test", Timeout: time.Second})
		host, uri, ua, proto := h.seen()
		if !o.ok || o.detail != "204" || host != "api.example.test" || uri != "/healthz?deep=1" || ua != userAgent || proto != "HTTP/3.0" {
			t.Fatalf("probe %+v; server saw host %q, uri %q, user agent %q, %s", o, host, uri, ua, proto)
		}
	})
}
