package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// initialPacketSize matches spooky-backend's: small enough for a load
// balancer to encapsulate in IPv6 within a 1500-octet MTU (RFC 9000 §14.1
// needs at least 1200).
const initialPacketSize = 1252

// noBackend names responses that carried no X-Backend header.
const noBackend = "(none)"

// result is the outcome of one request.
type result struct {
	conn    int
	backend string
	latency time.Duration
	err     error
}

// load runs the requests o describes and reports on them. Connection i uses
// an HTTP/3 transport of its own, hence a UDP socket (source port) of its
// own, so a load balancer sees o.conns distinct 4-tuples.
func load(ctx context.Context, o options) *report {
	tlsConf := &tls.Config{InsecureSkipVerify: o.insecure} //nolint:gosec // opt-in for self-signed test backends
	transports := make([]*http3.Transport, o.conns)
	for i := range transports {
		transports[i] = &http3.Transport{
			TLSClientConfig: tlsConf,
			QUICConfig:      &quic.Config{InitialPacketSize: initialPacketSize},
		}
	}
	defer func() {
		for _, t := range transports {
			t.Close()
		}
	}()

	jobs := make(chan int)
	results := make(chan result)
	var wg sync.WaitGroup
	for range o.concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range jobs {
				results <- get(ctx, transports[c], o, c)
			}
		}()
	}
	go func() {
		defer close(jobs)
		// Round by round, so the first round opens every connection.
		for range o.requests {
			for c := range o.conns {
				select {
				case jobs <- c:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	go func() { wg.Wait(); close(results) }()

	start := time.Now()
	rep := newReport(o.url.String(), o.conns)
	for r := range results {
		rep.add(r)
	}
	rep.finish(time.Since(start))
	return rep
}

// get makes one request on transport t and reads the whole body.
func get(ctx context.Context, t *http3.Transport, o options, conn int) result {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, o.url.String(), nil)
	if err != nil {
		return result{conn: conn, err: err}
	}
	start := time.Now()
	resp, err := t.RoundTrip(req)
	if err != nil {
		return result{conn: conn, err: err}
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	lat := time.Since(start)
	if err != nil {
		return result{conn: conn, err: fmt.Errorf("read body: %w", err)}
	}
	if resp.StatusCode != http.StatusOK {
		return result{conn: conn, err: fmt.Errorf("status %d", resp.StatusCode)}
	}
	b := resp.Header.Get("X-Backend")
	if b == "" {
		b = noBackend
	}
	return result{conn: conn, backend: b, latency: lat}
}
