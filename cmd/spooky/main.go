// Command spooky is a QUIC load balancer for Linux edge hosts: an XDP fast
// path that routes QUIC by connection ID (draft-ietf-quic-load-balancers-21),
// a userspace forwarder, and an HTTP/3 request tier.
//
// main is thin: it parses the command line, wires the packages together and
// runs them. Every command writes to the streams in env, so tests run the CLI
// in-process and read what it printed.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"
)

// env holds the streams a command writes to.
type env struct {
	stdout io.Writer
	stderr io.Writer
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args, env{stdout: os.Stdout, stderr: os.Stderr})
	stop()
	os.Exit(code)
}

// run executes the CLI with args (args[0] is the program name) and returns the
// process exit code: 0 on success, 1 on any error, which is printed to stderr.
func run(ctx context.Context, args []string, e env) int {
	app := &cli.App{
		Name:      "spooky",
		Usage:     "QUIC load balancer: XDP routing by QUIC-LB connection ID, Maglev fallback, HTTP/3 tier",
		Writer:    e.stdout,
		ErrWriter: e.stderr,
		// Errors are printed once, by run, not by urfave/cli's handler,
		// which would also call os.Exit and make the CLI untestable.
		ExitErrHandler: func(*cli.Context, error) {},
		Commands:       commands(e),
	}
	if err := app.RunContext(ctx, interspersed(app.Commands, args)); err != nil {
		fmt.Fprintf(e.stderr, "spooky: %v\n", err)
		return 1
	}
	return 0
}
