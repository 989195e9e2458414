package l7

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// loadConfig describes a closed-loop load run: Connections × Streams
// workers, each sending its next request when the previous one finished.
type loadConfig struct {
	// URL is requested with GET. Required.
	URL string
	// Addr, if set, is dialled instead of the URL's host (the URL keeps
	// the name used for SNI and Host).
	Addr string
	// HTTP3 uses quic-go's HTTP/3 client: one QUIC connection per
	// Connection, Streams concurrent streams on each. Otherwise HTTP/1.1
	// (cleartext or TLS by URL scheme) with Connections × Streams TCP
	// connections, since HTTP/1.1 does not multiplex.
	HTTP3 bool
	// TLS is the client TLS config (roots, server name). May be nil for http URLs.
	TLS *tls.Config
	// Connections and Streams: if zero, 1 each.
	Connections, Streams int
	// Requests stops the run after this many requests in total; Duration
	// after this long. One of them is required; the first reached ends it.
	Requests int
	Duration time.Duration
}

// loadResult is what a run measured. Latencies are per request, from send
// to the end of the body.
type loadResult struct {
	Requests int
	Errors   int
	Elapsed  time.Duration
	RPS      float64
	P50, P99 time.Duration
}

func (r loadResult) String() string {
	return fmt.Sprintf("%8.0f req/s  p50 %-9s p99 %-9s (%d requests, %d errors)", r.RPS, r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond), r.Requests, r.Errors)
}

// runLoad runs a load test and returns its figures.
func runLoad(ctx context.Context, cfg loadConfig) (loadResult, error) {
	if cfg.URL == "" || (cfg.Requests <= 0 && cfg.Duration <= 0) {
		return loadResult{}, errors.New("load: URL and Requests or Duration are required")
	}
	conns, streams := max(cfg.Connections, 1), max(cfg.Streams, 1)
	if cfg.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.Duration)
		defer cancel()
	}
	var budget atomic.Int64
	budget.Store(int64(cfg.Requests))
	if cfg.Requests <= 0 {
		budget.Store(1 << 62)
	}
	var closers []func()
	defer func() {
		for _, c := range closers {
			c()
		}
	}()
	clients := make([]*http.Client, conns)
	for i := range conns {
		rt, closeFn := loadTransport(cfg, conns*streams)
		closers = append(closers, closeFn)
		clients[i] = &http.Client{Transport: rt}
		if !cfg.HTTP3 {
			// One pool shared by all workers: Connections × Streams sockets.
			if i > 0 {
				clients[i] = clients[0]
			}
		}
	}
	// Warm up: establish every connection before the clock starts.
	for _, c := range clients {
		if err := loadOnce(ctx, c, cfg.URL); err != nil {
			return loadResult{}, fmt.Errorf("load: warm-up request: %w", err)
		}
	}
	lat := make([][]time.Duration, conns*streams)
	var errs atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for w := range conns * streams {
		c := clients[w/streams]
		wg.Go(func() {
			for ctx.Err() == nil && budget.Add(-1) >= 0 {
				t0 := time.Now()
				if err := loadOnce(ctx, c, cfg.URL); err != nil {
					if ctx.Err() == nil {
						errs.Add(1)
					}
					continue
				}
				lat[w] = append(lat[w], time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	all := slices.Concat(lat...)
	slices.Sort(all)
	res := loadResult{Requests: len(all), Errors: int(errs.Load()), Elapsed: elapsed}
	if len(all) > 0 {
		res.RPS = float64(len(all)) / elapsed.Seconds()
		res.P50 = all[len(all)*50/100]
		res.P99 = all[min(len(all)*99/100, len(all)-1)]
	}
	return res, nil
}

func loadTransport(cfg loadConfig, maxConns int) (http.RoundTripper, func()) {
	if cfg.HTTP3 {
		tr := &http3.Transport{TLSClientConfig: cfg.TLS, QUICConfig: &quic.Config{MaxIncomingStreams: 1000}}
		if cfg.Addr != "" {
			tr.Dial = func(ctx context.Context, _ string, tc *tls.Config, qc *quic.Config) (*quic.Conn, error) {
				return quic.DialAddrEarly(ctx, cfg.Addr, tc, qc)
			}
		}
		return tr, func() { _ = tr.Close() }
	}
	tr := &http.Transport{TLSClientConfig: cfg.TLS, MaxIdleConnsPerHost: maxConns, MaxConnsPerHost: maxConns}
	if cfg.Addr != "" {
		tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, cfg.Addr)
		}
	}
	return tr, tr.CloseIdleConnections
}

func loadOnce(ctx context.Context, c *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	res, err := c.Do(req)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if err == nil && res.StatusCode != http.StatusOK {
		err = fmt.Errorf("status %d", res.StatusCode)
	}
	return err
}
