// Command spooky-backend is a small HTTP/3 server for tests, benchmarks and
// the demo: it issues QUIC-LB routable connection IDs carrying its server ID
// (draft-ietf-quic-load-balancers-21), so a load balancer can route its
// connections, and answers GET / with its name.
//
//	spooky-backend --listen 198.18.0.11:443 --name backend1 \
//	    --config-id 0 --server-id 01 --nonce-len 8 [--key HEX] \
//	    [--cert FILE --key-file FILE]
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
