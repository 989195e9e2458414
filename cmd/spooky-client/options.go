package main

import (
	"flag"
	"fmt"
	"io"
	"net/url"
	"time"
)

// options is the parsed command line.
type options struct {
	url         *url.URL
	conns       int
	requests    int // per connection
	concurrency int
	insecure    bool
	timeout     time.Duration
	json        bool
}

// parseArgs parses the command line. Errors name the flag at fault.
func parseArgs(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("spooky-client", flag.ContinueOnError)
	fs.SetOutput(stderr)
	rawURL := fs.String("url", "", "`URL` to GET, https://HOST[:PORT]/PATH")
	conns := fs.Int("conns", 1, "QUIC connections to open, each from its own UDP socket")
	requests := fs.Int("requests", 1, "requests per connection")
	concurrency := fs.Int("concurrency", 0, "requests in flight at once over all connections; 0: one per connection")
	insecure := fs.Bool("insecure", false, "accept any server certificate (the test backends' are self-signed)")
	timeout := fs.Duration("timeout", 5*time.Second, "limit for each request, handshake included")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if err := fs.Parse(args); err != nil {
		return options{}, err
	}
	if fs.NArg() > 0 {
		return options{}, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	o := options{conns: *conns, requests: *requests, concurrency: *concurrency,
		insecure: *insecure, timeout: *timeout, json: *asJSON}
	if *rawURL == "" {
		return o, fmt.Errorf("--url is required")
	}
	u, err := url.Parse(*rawURL)
	if err != nil {
		return o, fmt.Errorf("--url %q: %w", *rawURL, err)
	}
	if u.Scheme != "https" || u.Host == "" {
		return o, fmt.Errorf("--url %q: want https://HOST[:PORT]/PATH (HTTP/3 is always TLS)", *rawURL)
	}
	o.url = u
	switch {
	case o.conns < 1:
		return o, fmt.Errorf("--conns %d: want at least 1", o.conns)
	case o.requests < 1:
		return o, fmt.Errorf("--requests %d: want at least 1", o.requests)
	case o.concurrency < 0:
		return o, fmt.Errorf("--concurrency %d: want 0 (one per connection) or more", o.concurrency)
	case o.timeout <= 0:
		return o, fmt.Errorf("--timeout %s: want a positive duration", o.timeout)
	}
	if o.concurrency == 0 {
		o.concurrency = o.conns
	}
	return o, nil
}
