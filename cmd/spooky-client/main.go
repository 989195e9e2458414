// Command spooky-client is an HTTP/3 load generator and prober for tests,
// benchmarks and the demo: it opens --conns QUIC connections (each from its
// own UDP socket, so each is a distinct 4-tuple), makes --requests requests on
// each with at most --concurrency in flight, and reports how many responses
// each backend (the X-Backend header) gave and the latency percentiles.
//
//	spooky-client --url https://198.18.0.10/ --conns 30 --requests 10 --insecure [--json]
//
// It exits 1 if any request failed.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
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
		fmt.Fprintf(os.Stderr, "spooky-client: %v\n", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	rep := load(ctx, opts)
	if err := rep.write(os.Stdout, opts.json); err != nil {
		fmt.Fprintf(os.Stderr, "spooky-client: write report: %v\n", err)
		os.Exit(1)
	}
	if rep.Failed > 0 {
		os.Exit(1)
	}
}
