package l7

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/spooky-lb/spooky/config"
)

// Certificate errors callers can branch on.
var (
	// ErrKeyMismatch means a certificate's public key does not belong to the key file.
	ErrKeyMismatch = errors.New("private key does not match the certificate's public key")
	// ErrNoCertificate means no certificate serves the requested server name.
	ErrNoCertificate = errors.New("no certificate for server name")
)

// certTable maps server names to certificates. It is immutable once built and
// swapped whole, so GetCertificate never takes a lock and a reload never
// disturbs a handshake in progress.
type certTable struct {
	exact    map[string]*tls.Certificate
	wildcard map[string]*tls.Certificate // key: "example.com" for "*.example.com"
	fallback *tls.Certificate
}

// certStore serves certificates by SNI from an atomically swapped table.
type certStore struct {
	table atomic.Pointer[certTable]
}

// loadCertTable reads every certificate and builds the SNI table.
func loadCertTable(certs []CertificateConfig) (*certTable, error) {
	t := &certTable{exact: map[string]*tls.Certificate{}, wildcard: map[string]*tls.Certificate{}}
	for _, c := range certs {
		cert, err := loadKeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, err
		}
		names := c.ServerNames
		if len(names) == 0 {
			names = cert.Leaf.DNSNames
		}
		if t.fallback == nil {
			t.fallback = cert
		}
		for _, n := range names {
			n = strings.ToLower(strings.TrimSuffix(n, "."))
			if rest, ok := strings.CutPrefix(n, "*."); ok {
				t.wildcard[rest] = cert
			} else {
				t.exact[n] = cert
			}
		}
	}
	if t.fallback == nil {
		return nil, fmt.Errorf("%w: no certificates", ErrConfig)
	}
	return t, nil
}

// loadKeyPair loads a PEM certificate chain and key, and tells a missing file,
// an unparsable file and a mismatched pair apart. It reads them as
// validation does (config.ReadPEMFile): regular files of bounded size only,
// so a reload never blocks on a FIFO or reads a device.
func loadKeyPair(certFile, keyFile string) (*tls.Certificate, error) {
	certPEM, err := config.ReadPEMFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("read certificate: %w", err)
	}
	keyPEM, err := config.ReadPEMFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("read key for certificate %s: %w", certFile, err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err == nil {
		return &cert, nil
	}
	// Diagnose: both parse on their own but do not belong together?
	leaf, cerr := parseFirstCert(certPEM)
	key, kerr := parseKey(keyPEM)
	if cerr == nil && kerr == nil {
		if pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool }); ok && !pub.Equal(leaf.PublicKey) {
			return nil, fmt.Errorf("load key pair %s, %s: %w", certFile, keyFile, ErrKeyMismatch)
		}
	}
	return nil, fmt.Errorf("load key pair %s, %s: %w", certFile, keyFile, err)
}

func parseFirstCert(data []byte) (*x509.Certificate, error) {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return nil, errors.New("no certificate PEM block")
		}
		if b.Type == "CERTIFICATE" {
			return x509.ParseCertificate(b.Bytes)
		}
	}
}

func parseKey(data []byte) (crypto.Signer, error) {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return nil, errors.New("no key PEM block")
		}
		if !strings.HasSuffix(b.Type, "PRIVATE KEY") {
			continue
		}
		if k, err := x509.ParsePKCS8PrivateKey(b.Bytes); err == nil {
			if s, ok := k.(crypto.Signer); ok {
				return s, nil
			}
		}
		if k, err := x509.ParsePKCS1PrivateKey(b.Bytes); err == nil {
			return k, nil
		}
		if k, err := x509.ParseECPrivateKey(b.Bytes); err == nil {
			return k, nil
		}
		return nil, errors.New("unsupported private key")
	}
}

// lookup picks the certificate for a server name: exact, then a wildcard one
// label deep, then the service's first certificate.
func (t *certTable) lookup(name string) *tls.Certificate {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	if c, ok := t.exact[name]; ok {
		return c
	}
	if _, rest, ok := strings.Cut(name, "."); ok {
		if c, ok := t.wildcard[rest]; ok {
			return c
		}
	}
	return t.fallback
}

// GetCertificate is the tls.Config hook.
func (s *certStore) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	t := s.table.Load()
	if t == nil {
		return nil, ErrNoCertificate
	}
	return t.lookup(hello.ServerName), nil
}

func (s *certStore) tlsConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: s.GetCertificate}
}
