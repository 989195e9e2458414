package l7

import (
	"context"
	"crypto/tls"
	"errors"
	"io/fs"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
)

// servedCert dials addr with sni and returns the leaf's common name.
func servedCert(tb testing.TB, addr, sni string) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := quic.DialAddr(ctx, addr, &tls.Config{ServerName: sni, InsecureSkipVerify: true, NextProtos: []string{"h3"}}, nil)
	if err != nil {
		tb.Fatalf("dial %s with SNI %q: %v", addr, sni, err)
	}
	defer conn.CloseWithError(0, "")
	return conn.ConnectionState().TLS.PeerCertificates[0].Subject.CommonName
}

func TestSNICertificateSelection(t *testing.T) {
	def := mustCert(t, "default.example")
	exact := mustCert(t, "a.example.com")
	wild := mustCert(t, "*.b.example.com")
	up := mustUpstream(t, ProtoH1, "u", nil)
	cfg := oneService(t, def, PoolConfig{Upstreams: []UpstreamConfig{up}})
	cfg.Services[0].Certificates = append(cfg.Services[0].Certificates,
		CertificateConfig{CertFile: exact.certFile, KeyFile: exact.keyFile},
		CertificateConfig{ServerNames: []string{"*.b.example.com"}, CertFile: wild.certFile, KeyFile: wild.keyFile},
	)
	s := mustServer(t, cfg)
	addr := mustAddr(t, s)
	for _, tc := range []struct{ name, sni, want string }{
		{"an exact name gets its certificate", "a.example.com", "a.example.com"},
		{"names match case-insensitively", "A.Example.COM", "a.example.com"},
		{"a wildcard covers one label", "x.b.example.com", "*.b.example.com"},
		{"a wildcard does not cover two labels", "y.x.b.example.com", "default.example"},
		{"an unknown name gets the first certificate", "other.example", "default.example"},
		{"no SNI gets the first certificate", "", "default.example"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := servedCert(t, addr, tc.sni); got != tc.want {
				t.Fatalf("served %q, want %q", got, tc.want)
			}
		})
	}
}

func TestCertificateErrors(t *testing.T) {
	a := mustCert(t, "a.example")
	b := mustCert(t, "b.example")
	for _, tc := range []struct {
		name string
		cc   CertificateConfig
		want error
	}{
		{"a key that belongs to another certificate is a mismatch", CertificateConfig{CertFile: a.certFile, KeyFile: b.keyFile}, ErrKeyMismatch},
		{"a missing certificate file says so", CertificateConfig{CertFile: a.certFile + ".missing", KeyFile: a.keyFile}, fs.ErrNotExist},
		{"a missing key file says so", CertificateConfig{CertFile: a.certFile, KeyFile: a.keyFile + ".missing"}, fs.ErrNotExist},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := oneService(t, a, PoolConfig{Upstreams: []UpstreamConfig{{Address: "127.0.0.1:1"}}})
			cfg.Services[0].Certificates = []CertificateConfig{tc.cc}
			_, err := New(cfg)
			if !errors.Is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
			t.Log(err)
		})
	}
}

func TestReloadSwapsCertificatesWithoutDroppingConnections(t *testing.T) {
	old := mustCert(t, "app.example.com")
	up := mustUpstream(t, ProtoH1, "u", nil)
	cfg := oneService(t, old, PoolConfig{Upstreams: []UpstreamConfig{up}})
	s := mustServer(t, cfg)
	addr := mustAddr(t, s)
	c, _ := h3Client(t, old, addr)
	if res, _ := mustGet(t, c, "https://app.example.com/"); res.StatusCode != 200 {
		t.Fatalf("status %d", res.StatusCode)
	}
	oldSerial := servedSerial(t, addr)

	renewed := mustCert(t, "app.example.com")
	cfg.Services[0].Certificates = []CertificateConfig{{CertFile: renewed.certFile, KeyFile: renewed.keyFile}}
	if err := s.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if got := servedSerial(t, addr); got == oldSerial || got != renewed.leaf.SerialNumber.String() {
		t.Fatalf("new connections still get the old certificate")
	}
	// The connection made before the reload carries on.
	if res, _ := mustGet(t, c, "https://app.example.com/again"); res.StatusCode != 200 {
		t.Fatalf("status %d on the pre-reload connection", res.StatusCode)
	}

	t.Run("a reload with a bad key pair changes nothing", func(t *testing.T) {
		bad := cfg
		bad.Services = []ServiceConfig{cfg.Services[0]}
		bad.Services[0].Certificates = []CertificateConfig{{CertFile: renewed.certFile, KeyFile: old.keyFile}}
		if err := s.Reload(bad); !errors.Is(err, ErrKeyMismatch) {
			t.Fatalf("reload error %v, want a key mismatch", err)
		}
		if got := servedSerial(t, addr); got != renewed.leaf.SerialNumber.String() {
			t.Fatal("a failed reload changed the certificate")
		}
	})
}

func servedSerial(tb testing.TB, addr string) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := quic.DialAddr(ctx, addr, &tls.Config{ServerName: "app.example.com", InsecureSkipVerify: true, NextProtos: []string{"h3"}}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.CloseWithError(0, "")
	return conn.ConnectionState().TLS.PeerCertificates[0].SerialNumber.String()
}
