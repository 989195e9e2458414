package l7

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// TestH3PoolOpensConnectionsWhenTheStreamLimitBinds sends more concurrent
// requests than one connection's stream limit allows to a real quic-go
// HTTP/3 upstream whose handler holds every request until all have
// arrived: on one connection the rest would wait for streams that never
// close. The pool must spread them over more connections.
func TestH3PoolOpensConnectionsWhenTheStreamLimitBinds(t *testing.T) {
	const limit, n = 4, 10
	cert := mustCert(t, "localhost")
	var arrived atomic.Int64
	all := make(chan struct{})
	var once sync.Once
	var conns sync.Map
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conns.Store(r.RemoteAddr, true)
		if arrived.Add(1) == n {
			once.Do(func() { close(all) })
		}
		select {
		case <-all:
			_, _ = io.WriteString(w, "ok")
		case <-r.Context().Done():
		}
	})
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http3.Server{Handler: h, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert.tls}},
		QUICConfig: &quic.Config{MaxIncomingStreams: limit}}
	go func() { _ = srv.Serve(udp) }()
	t.Cleanup(func() { srv.Close(); udp.Close() })

	p := newH3Pool(func() *http3.Transport {
		return &http3.Transport{TLSClientConfig: &tls.Config{RootCAs: cert.pool, ServerName: "localhost"}}
	})
	p.streamsPerConn = limit
	t.Cleanup(p.close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+udp.LocalAddr().String()+"/", nil)
			res, err := p.RoundTrip(req)
			if err != nil {
				errs <- err
				return
			}
			b, err := io.ReadAll(res.Body)
			res.Body.Close()
			if err == nil && string(b) != "ok" {
				err = io.ErrUnexpectedEOF
			}
			if err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("request: %v (all %d requests must be in flight at once)", err, n)
	}
	if got, want := p.connections(), (n+limit-1)/limit; got < want {
		t.Errorf("pool opened %d connections, want at least %d", got, want)
	}
	seen := 0
	conns.Range(func(_, _ any) bool { seen++; return true })
	if seen < 3 {
		t.Errorf("upstream saw requests on %d connections, want at least 3", seen)
	}
	// Later requests reuse what is open.
	before := p.connections()
	for range 3 {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+udp.LocalAddr().String()+"/", nil)
		arrived.Store(0)
		res, err := p.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
	}
	if p.connections() != before {
		t.Errorf("sequential requests opened connections: %d → %d", before, p.connections())
	}
}
