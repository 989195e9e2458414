package l7

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/quic-go/quic-go/http3"
)

// benchEnv is a loopback bench rig: an HTTP/3 upstream, an HTTP/1.1
// upstream, both answering 1 KiB, and a spooky L7 server in front of them
// (route /h3 to the first, /h1 to the second).
type benchEnv struct {
	Spooky *Server
	benchAddrs
	// CertFile is the rig's self-signed certificate (its own root), PEM.
	CertFile string
	closers  []func()
}

// benchAddrs are where a load generator finds the rig.
type benchAddrs struct {
	SpookyAddr string      // spooky's HTTP/3 listener
	H3Addr     string      // direct HTTP/3 upstream
	H1Addr     string      // direct HTTP/1.1 upstream (cleartext)
	TLS        *tls.Config `json:"-"` // trusts the rig's certificate
}

// benchBody is the 1 KiB response every bench upstream sends.
var benchBody = make([]byte, 1024)

// newBenchEnv starts the rig; dir holds the generated certificate.
func newBenchEnv(dir string) (*benchEnv, error) {
	e := &benchEnv{}
	certFile, keyFile, pool, kp, err := writeSelfSigned(dir, "bench.spooky.test")
	if err != nil {
		return nil, err
	}
	e.CertFile = certFile
	e.TLS = &tls.Config{RootCAs: pool, ServerName: "bench.spooky.test"}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1024")
		_, _ = w.Write(benchBody)
	})

	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, fmt.Errorf("bench h3 upstream: %w", err)
	}
	h3 := &http3.Server{Handler: h, TLSConfig: &tls.Config{Certificates: []tls.Certificate{kp}}}
	go func() { _ = h3.Serve(udp) }()
	e.closers = append(e.closers, func() { _ = h3.Close(); _ = udp.Close() })
	e.H3Addr = udp.LocalAddr().String()

	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.Close()
		return nil, fmt.Errorf("bench h1 upstream: %w", err)
	}
	h1 := &http.Server{Handler: h}
	go func() { _ = h1.Serve(tl) }()
	e.closers = append(e.closers, func() { _ = h1.Close() })
	e.H1Addr = tl.Addr().String()

	cfg := Config{
		Services: []ServiceConfig{{
			Name:         "bench",
			Address:      "127.0.0.1:0",
			Certificates: []CertificateConfig{{CertFile: certFile, KeyFile: keyFile}},
			Routes: []Route{
				{Match: Match{PathPrefix: "/h3"}, Pool: "h3"},
				{Match: Match{PathPrefix: "/h1"}, Pool: "h1"},
			},
		}},
		Pools: []PoolConfig{
			{Name: "h3", Upstreams: []UpstreamConfig{{Address: e.H3Addr, Protocol: ProtoH3, CAFile: certFile, ServerName: "bench.spooky.test"}}},
			{Name: "h1", Upstreams: []UpstreamConfig{{Address: e.H1Addr, Protocol: ProtoH1}}},
		},
	}
	s, err := New(cfg)
	if err != nil {
		e.Close()
		return nil, err
	}
	if err := s.Start(); err != nil {
		e.Close()
		return nil, err
	}
	e.closers = append(e.closers, func() { _ = s.Close() })
	e.Spooky = s
	a, _ := s.Addr("bench")
	e.SpookyAddr = a.String()
	return e, nil
}

// Close stops everything the rig started.
func (e *benchEnv) Close() {
	for i := len(e.closers) - 1; i >= 0; i-- {
		e.closers[i]()
	}
}

// benchTarget names a path through the rig.
type benchTarget string

// Bench targets.
const (
	directH3 benchTarget = "direct h3 upstream"
	spookyH3 benchTarget = "spooky → h3 upstream"
	directH1 benchTarget = "direct h1 upstream"
	spookyH1 benchTarget = "spooky → h1 upstream"
)

// Load returns the load config for a target; the caller sets the load
// shape. "Direct" means the same load generator talking to the upstream
// itself in the upstream's own protocol: HTTP/3 for the h3 upstream, and
// HTTP/1.1 (one TCP connection per concurrent request, since HTTP/1.1 does
// not multiplex) for the h1 upstream. Through spooky it always speaks HTTP/3.
func (e benchAddrs) Load(t benchTarget) loadConfig {
	switch t {
	case directH3:
		return loadConfig{URL: "https://bench.spooky.test/", Addr: e.H3Addr, HTTP3: true, TLS: e.TLS}
	case spookyH3:
		return loadConfig{URL: "https://bench.spooky.test/h3", Addr: e.SpookyAddr, HTTP3: true, TLS: e.TLS}
	case directH1:
		return loadConfig{URL: "http://" + e.H1Addr + "/"}
	default:
		return loadConfig{URL: "https://bench.spooky.test/h1", Addr: e.SpookyAddr, HTTP3: true, TLS: e.TLS}
	}
}

// writeSelfSigned writes a self-signed certificate (its own root) for name.
func writeSelfSigned(dir, name string) (certFile, keyFile string, pool *x509.CertPool, kp tls.Certificate, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: name},
		DNSNames:              []string{name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
	certFile, keyFile = filepath.Join(dir, "bench-cert.pem"), filepath.Join(dir, "bench-key.pem")
	if err = errors.Join(os.WriteFile(certFile, certPEM, 0o600), os.WriteFile(keyFile, keyPEM, 0o600)); err != nil {
		return
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return
	}
	pool = x509.NewCertPool()
	pool.AddCert(leaf)
	kp, err = tls.X509KeyPair(certPEM, keyPEM)
	return
}
