// Command spooky-backend is a small HTTP server for tests, benchmarks and
// the demo. By default it serves HTTP/3 and issues QUIC-LB routable
// connection IDs carrying its server ID (draft-ietf-quic-load-balancers-21),
// so a load balancer can route its connections. With --protocol h1, h2 or
// h2c it serves HTTP/1.1 or HTTP/2 over TCP instead, as an upstream of
// spooky's request tier. It answers every path with its name (body and
// X-Backend header), and GET /healthz with 200 and {"status": "ok"}.
//
//	spooky-backend --listen 198.18.0.11:443 --name backend1 \
//	    --config-id 0 --server-id 01 --nonce-len 8 [--key HEX] \
//	    [--cert FILE --key-file FILE]
//	spooky-backend --protocol h2 --listen 198.18.2.1:8443 --name api-1 \
//	    [--cert FILE --key-file FILE]
//	spooky-backend --protocol h2c --listen 198.18.3.1:8080 --name static-1
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	opts, err := parseArgs(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "spooky-backend: %v\n", err)
		os.Exit(2)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := run(ctx, opts, logger, nil); err != nil {
		logger.Error("spooky-backend stopped", "error", err)
		os.Exit(1)
	}
}
