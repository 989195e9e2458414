package l7

import (
	"context"
	"crypto/tls"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/spooky-lb/spooky/config"
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

// mustFIFO makes a named pipe that nothing writes to. If a reader is still
// blocked on it when the test ends (the bug under test), the cleanup opens
// and closes the write end, which gives that reader end-of-file.
func mustFIFO(tb testing.TB) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "fifo.pem")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if w, err := os.OpenFile(path, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			w.Close()
		}
	})
	return path
}

// mustReturn runs f and fails the test if f is still running after a
// minute (or half the time left to the test's deadline): f must not block,
// and returns at once when it is right, so only a hang comes near the limit.
func mustReturn[T any](t *testing.T, what string, f func() T) T {
	t.Helper()
	done := make(chan T, 1)
	go func() { done <- f() }()
	wait := time.Minute
	if d, ok := t.Deadline(); ok {
		wait = min(wait, time.Until(d)/2)
	}
	select {
	case v := <-done:
		return v
	case <-time.After(wait):
		t.Fatalf("%s still blocked after %v", what, wait)
		panic("unreachable")
	}
}

func TestReloadRefusesCertificateAndCAFilesThatAreNotSmallRegularFiles(t *testing.T) {
	good := mustCert(t, "app.example.com")
	up := mustUpstream(t, ProtoH1, "u", nil)
	s := mustServer(t, oneService(t, good, PoolConfig{Upstreams: []UpstreamConfig{up}}))
	addr := mustAddr(t, s)

	big := filepath.Join(t.TempDir(), "big.key")
	if err := os.WriteFile(big, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(big, config.MaxPEMFileSize+1); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want error
	}{
		{"a certificate that is a FIFO is refused without blocking", func(c *Config) {
			c.Services[0].Certificates[0].CertFile = mustFIFO(t)
		}, config.ErrNotRegularFile},
		{"a key that is a device is refused unread", func(c *Config) {
			c.Services[0].Certificates[0].KeyFile = "/dev/zero"
		}, config.ErrNotRegularFile},
		{"a key over the size limit is refused unread", func(c *Config) {
			c.Services[0].Certificates[0].KeyFile = big
		}, config.ErrFileTooLarge},
		{"an upstream CA file that is a FIFO is refused without blocking", func(c *Config) {
			c.Pools[0].Upstreams[0].CAFile = mustFIFO(t)
		}, config.ErrNotRegularFile},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := oneService(t, good, PoolConfig{Upstreams: []UpstreamConfig{up}})
			tc.edit(&cfg)
			err := mustReturn(t, "Reload", func() error { return s.Reload(cfg) })
			// By text: pool errors keep only the text of their cause.
			if err == nil || !strings.Contains(err.Error(), tc.want.Error()) {
				t.Fatalf("Reload = %v, want an error saying %q", err, tc.want)
			}
			if got := servedCert(t, addr, "app.example.com"); got != "app.example.com" {
				t.Errorf("after the refused reload the server serves %q, want the old app.example.com", got)
			}
		})
	}
}
