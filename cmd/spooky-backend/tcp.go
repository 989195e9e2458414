package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// readHeaderTimeout bounds how long a TCP client may take to send its
// request headers, so idle half-open connections do not pile up.
const readHeaderTimeout = 10 * time.Second

// httpProtocols is what net/http serves for each TCP protocol. Over TLS, the
// http.Server offers exactly these by ALPN (RFC 7301): h1 only
// "http/1.1"; h2 "h2" then "http/1.1", so a client without HTTP/2 still gets
// an answer. Cleartext h2c accepts the HTTP/2 connection preface (prior
// knowledge, RFC 9113 §3.3) and plain HTTP/1.1 on one listener.
func httpProtocols(p protocol) *http.Protocols {
	ps := new(http.Protocols)
	ps.SetHTTP1(true)
	switch p {
	case protoH2:
		ps.SetHTTP2(true)
	case protoH2C:
		ps.SetUnencryptedHTTP2(true)
	}
	return ps
}

// describe names what a TCP listener serves, for the start-up log line.
func describe(p protocol) string {
	switch p {
	case protoH1:
		return "HTTP/1.1 over TLS"
	case protoH2:
		return "HTTP/2 and HTTP/1.1 over TLS"
	default:
		return "cleartext HTTP/2 (h2c) and HTTP/1.1"
	}
}

// serveTCP serves opts.proto (h1, h2 or h2c) on a listener the caller
// opened until ctx is done, then shuts down gracefully: idle connections
// close at once, HTTP/2 ones get GOAWAY, and running requests have up to
// shutdownGrace. It closes ln.
func serveTCP(ctx context.Context, ln net.Listener, opts options, logger *slog.Logger, ready func(net.Addr)) error {
	srv := &http.Server{
		Handler:           handler(opts.name),
		Protocols:         httpProtocols(opts.proto),
		ReadHeaderTimeout: readHeaderTimeout,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	if opts.proto.tls() {
		var ip net.IP
		if ta, ok := ln.Addr().(*net.TCPAddr); ok {
			ip = ta.IP
		}
		tlsConf, err := tlsConfig(opts, ip)
		if err != nil {
			ln.Close()
			return err
		}
		srv.TLSConfig = tlsConf
	}
	errc := make(chan error, 1)
	go func() {
		if opts.proto.tls() {
			// The certificate is in TLSConfig; ServeTLS adds the ALPN
			// protocols of srv.Protocols to it.
			errc <- srv.ServeTLS(ln, "", "")
			return
		}
		errc <- srv.Serve(ln)
	}()
	logger.Info("serving "+describe(opts.proto), "name", opts.name, "addr", ln.Addr().String(),
		"protocol", string(opts.proto))
	if ready != nil {
		ready(ln.Addr())
	}

	select {
	case err := <-errc:
		return fmt.Errorf("serve %s on %s: %w", opts.proto, ln.Addr(), err)
	case <-ctx.Done():
	}
	logger.Info("shutting down", "name", opts.name, "grace", shutdownGrace)
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		if !errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("shutdown: %w", err)
		}
		// Out of grace: drop the requests still running.
		srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve %s on %s: %w", opts.proto, ln.Addr(), err)
	}
	return nil
}
