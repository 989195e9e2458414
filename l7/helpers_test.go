package l7

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// testCert is a self-signed certificate (its own root) written to files.
type testCert struct {
	certFile, keyFile string
	pool              *x509.CertPool
	tls               tls.Certificate
	leaf              *x509.Certificate
}

func mustCert(tb testing.TB, names ...string) testCert {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: names[0]},
		DNSNames:              names,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	dir := tb.TempDir()
	c := testCert{certFile: filepath.Join(dir, "cert.pem"), keyFile: filepath.Join(dir, "key.pem")}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
	if err := os.WriteFile(c.certFile, certPEM, 0o600); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(c.keyFile, keyPEM, 0o600); err != nil {
		tb.Fatal(err)
	}
	c.leaf, _ = x509.ParseCertificate(der)
	c.pool = x509.NewCertPool()
	c.pool.AddCert(c.leaf)
	c.tls, err = tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// echoHandler answers with the upstream's name and what it received.
func echoHandler(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Upstream", name)
		w.Header().Set("X-Seen-Path", r.URL.Path)
		w.Header().Set("X-Seen-Host", r.Host)
		w.Header().Set("X-Seen-Proto", r.Proto)
		for _, k := range []string{"Forwarded", "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "Via", "Connection", "X-Hop", "X-Added", "X-Removed", "X-Set"} {
			if v := r.Header.Values(k); len(v) > 0 {
				w.Header()["X-Seen-"+k] = v
			}
		}
		n, _ := io.Copy(io.Discard, r.Body)
		w.Header().Set("X-Seen-Body-Bytes", fmt.Sprint(n))
		fmt.Fprintf(w, "%s %s", name, r.URL.Path)
	})
}

// mustUpstream starts a real upstream server speaking proto on loopback.
func mustUpstream(tb testing.TB, proto Protocol, name string, h http.Handler) UpstreamConfig {
	tb.Helper()
	if h == nil {
		h = echoHandler(name)
	}
	uc := UpstreamConfig{Name: name, Protocol: proto, InsecureSkipVerify: true}
	switch proto {
	case ProtoH1:
		srv := httptest.NewUnstartedServer(h)
		srv.EnableHTTP2 = false
		srv.Start()
		tb.Cleanup(srv.Close)
		uc.Address = srv.Listener.Addr().String()
	case ProtoH2:
		srv := httptest.NewUnstartedServer(h)
		srv.EnableHTTP2 = true
		srv.StartTLS()
		tb.Cleanup(srv.Close)
		uc.Address = srv.Listener.Addr().String()
	case ProtoH2C:
		srv := httptest.NewUnstartedServer(h)
		p := new(http.Protocols)
		p.SetUnencryptedHTTP2(true)
		srv.Config.Protocols = p
		srv.Start()
		tb.Cleanup(srv.Close)
		uc.Address = srv.Listener.Addr().String()
	case ProtoH3:
		cert := mustCert(tb, "localhost")
		udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			tb.Fatal(err)
		}
		srv := &http3.Server{Handler: h, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert.tls}}}
		go func() { _ = srv.Serve(udp) }()
		tb.Cleanup(func() { srv.Close(); udp.Close() })
		uc.Address = udp.LocalAddr().String()
	default:
		tb.Fatalf("unknown protocol %s", proto)
	}
	return uc
}

// deadUpstream returns an address on which nothing listens (TCP refuses).
func deadAddress(tb testing.TB) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// mustServer builds and starts an l7 server; it is closed at cleanup.
func mustServer(tb testing.TB, cfg Config) *Server {
	tb.Helper()
	s, err := New(cfg)
	if err != nil {
		tb.Fatalf("new server: %v", err)
	}
	if err := s.Start(); err != nil {
		tb.Fatalf("start server: %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// oneService builds a config with one service on loopback routing all to pool "p".
func oneService(tb testing.TB, cert testCert, pool PoolConfig, routes ...Route) Config {
	tb.Helper()
	if pool.Name == "" {
		pool.Name = "p"
	}
	if len(routes) == 0 {
		routes = []Route{{Pool: pool.Name}}
	}
	return Config{
		Services: []ServiceConfig{{
			Name:         "svc",
			Address:      "127.0.0.1:0",
			Certificates: []CertificateConfig{{CertFile: cert.certFile, KeyFile: cert.keyFile}},
			Routes:       routes,
		}},
		Pools: []PoolConfig{pool},
	}
}

func mustAddr(tb testing.TB, s *Server) string {
	tb.Helper()
	a, err := s.Addr("svc")
	if err != nil {
		tb.Fatal(err)
	}
	return a.String()
}

// h3Client is a real quic-go HTTP/3 client trusting cert's pool and
// connecting to addr whatever the URL's host says.
func h3Client(tb testing.TB, cert testCert, addr string) (*http.Client, *http3.Transport) {
	tb.Helper()
	tr := &http3.Transport{
		TLSClientConfig: &tls.Config{RootCAs: cert.pool},
		QUICConfig:      &quic.Config{MaxIdleTimeout: time.Minute},
		Dial: func(ctx context.Context, _ string, tc *tls.Config, qc *quic.Config) (*quic.Conn, error) {
			return quic.DialAddr(ctx, addr, tc, qc)
		},
	}
	tb.Cleanup(func() { tr.Close() })
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}, tr
}

func mustDo(tb testing.TB, c *http.Client, req *http.Request) (*http.Response, string) {
	tb.Helper()
	res, err := c.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		tb.Fatalf("read body of %s: %v", req.URL, err)
	}
	return res, string(b)
}

func mustGet(tb testing.TB, c *http.Client, url string) (*http.Response, string) {
	tb.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return mustDo(tb, c, req)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(tb testing.TB, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
