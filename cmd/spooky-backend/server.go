package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/spooky-lb/spooky/cid"
)

// initialPacketSize keeps QUIC packets small enough that a load balancer can
// add an outer IPv6 header (40 octets) and still fit a 1500-octet MTU; QUIC
// needs at least 1200 (RFC 9000 §14.1). Path MTU discovery may grow it.
const initialPacketSize = 1252

// shutdownGrace is how long a SIGTERM waits for running requests after GOAWAY.
const shutdownGrace = 5 * time.Second

// handler answers GET / (and any other path but /healthz, so a load
// balancer's path routes all get an answer) with the backend's name, in the
// body and in the X-Backend header, and GET /healthz with 200 and
// {"status": "ok"}, what a health check's body match can look for.
func handler(name string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("X-Backend", name)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "%s\n", name)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("X-Backend", name)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintln(w, `{"status": "ok"}`)
	})
	return mux
}

// run binds exactly opts.listen, UDP for h3 and TCP for the others, and
// serves until ctx is done, then shuts down gracefully (GOAWAY, then up to
// shutdownGrace for running requests). ready, if not nil, is called with the
// bound address once connections are being accepted.
func run(ctx context.Context, opts options, logger *slog.Logger, ready func(net.Addr)) error {
	if opts.proto != "" && opts.proto != protoH3 {
		ln, err := net.Listen("tcp", opts.listen.String())
		if err != nil {
			return fmt.Errorf("listen on %s: %w", opts.listen, err)
		}
		return serveTCP(ctx, ln, opts, logger, ready)
	}
	udp, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(opts.listen))
	if err != nil {
		return fmt.Errorf("listen on %s: %w", opts.listen, err)
	}
	return serve(ctx, udp, opts, logger, ready)
}

// serve serves HTTP/3 on a socket the caller opened; it closes conn.
func serve(ctx context.Context, conn net.PacketConn, opts options, logger *slog.Logger, ready func(net.Addr)) error {
	gen, err := cid.NewGenerator(opts.cid, opts.serverID)
	if err != nil {
		conn.Close()
		return fmt.Errorf("connection ID generator: %w", err)
	}
	var ip net.IP
	if ua, ok := conn.LocalAddr().(*net.UDPAddr); ok {
		ip = ua.IP
	}
	tlsConf, err := tlsConfig(opts, ip)
	if err != nil {
		conn.Close()
		return err
	}
	tr := &quic.Transport{
		Conn:                  conn,
		ConnectionIDGenerator: gen,
		StatelessResetKey:     opts.resetKey,
	}
	defer tr.Close()
	ln, err := tr.ListenEarly(http3.ConfigureTLSConfig(tlsConf), &quic.Config{
		InitialPacketSize: initialPacketSize,
		Allow0RTT:         true,
	})
	if err != nil {
		return fmt.Errorf("quic listen on %s: %w", conn.LocalAddr(), err)
	}
	defer ln.Close()

	srv := &http3.Server{Handler: handler(opts.name), Logger: logger}
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeListener(ln) }()
	logger.Info("serving HTTP/3", "name", opts.name, "addr", conn.LocalAddr().String(),
		"config_id", opts.cid.ID, "server_id", fmt.Sprintf("%x", opts.serverID),
		"nonce_len", opts.cid.NonceLen, "encrypted", opts.cid.Encrypted())
	if ready != nil {
		ready(conn.LocalAddr())
	}

	select {
	case err := <-errc:
		return fmt.Errorf("serve http/3 on %s: %w", conn.LocalAddr(), err)
	case <-ctx.Done():
	}
	logger.Info("shutting down", "name", opts.name, "grace", shutdownGrace)
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("shutdown: %w", err)
	}
	// Shutdown does not close listeners it did not create.
	ln.Close()
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve http/3 on %s: %w", conn.LocalAddr(), err)
	}
	return nil
}

// tlsConfig loads the certificate named in opts, or makes a self-signed one
// for the backend's name and ip in memory.
func tlsConfig(opts options, ip net.IP) (*tls.Config, error) {
	if opts.certFile != "" {
		cert, err := tls.LoadX509KeyPair(opts.certFile, opts.keyFile)
		if err != nil {
			return nil, fmt.Errorf("load certificate %s: %w", opts.certFile, err)
		}
		return &tls.Config{Certificates: []tls.Certificate{cert}}, nil
	}
	cert, err := selfSigned(opts.name, ip)
	if err != nil {
		return nil, err
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}}, nil
}

// selfSigned makes a P-256 certificate for dnsName and ip, valid for a day.
func selfSigned(dnsName string, ip net.IP) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("serial number: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: dnsName, Organization: []string{"spooky test backend"}},
		DNSNames:     []string{dnsName},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if ip != nil && !ip.IsUnspecified() {
		tmpl.IPAddresses = []net.IP{ip}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("self-sign certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
