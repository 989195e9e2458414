package l7

import (
	"io"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/quic-go/quic-go/http3"
)

// h3Pool spreads requests to one HTTP/3 upstream over several QUIC
// connections. A connection carries as many concurrent requests as the
// upstream's stream limit allows (initial_max_streams_bidi, RFC 9000
// §4.6); past it a request waits for a stream to close. quic-go does not
// show the peer's limit to the client, so the pool assumes the limit RFC
// 9114 §6.1 asks servers not to go below (100, also quic-go's default)
// and opens another connection when every one it has carries that many.
// Each connection is an http3.Transport of its own, which redials it if
// it closes.
type h3Pool struct {
	newTransport func() *http3.Transport
	// streamsPerConn is the requests one connection takes before the pool
	// opens another; maxConns caps the connections.
	streamsPerConn, maxConns int64

	mu    sync.Mutex
	conns []*h3PoolConn
}

type h3PoolConn struct {
	tr       *http3.Transport
	inflight atomic.Int64
}

const (
	// h3StreamsPerConn is the stream limit assumed of an upstream.
	h3StreamsPerConn = 100
	// h3MaxConns caps the QUIC connections to one upstream: 1600
	// concurrent requests at the assumed limit.
	h3MaxConns = 16
)

func newH3Pool(newTransport func() *http3.Transport) *h3Pool {
	return &h3Pool{newTransport: newTransport, streamsPerConn: h3StreamsPerConn, maxConns: h3MaxConns}
}

// pick returns the connection with the fewest requests in flight, a new
// one if that one is full and the cap allows, and counts the request.
func (p *h3Pool) pick() *h3PoolConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	var best *h3PoolConn
	for _, c := range p.conns {
		if best == nil || c.inflight.Load() < best.inflight.Load() {
			best = c
		}
	}
	if best == nil || (best.inflight.Load() >= p.streamsPerConn && int64(len(p.conns)) < p.maxConns) {
		best = &h3PoolConn{tr: p.newTransport()}
		p.conns = append(p.conns, best)
	}
	best.inflight.Add(1)
	return best
}

// RoundTrip sends req on the pool's least busy connection (see pick).
func (p *h3Pool) RoundTrip(req *http.Request) (*http.Response, error) {
	c := p.pick()
	res, err := c.tr.RoundTrip(req)
	if err != nil {
		c.inflight.Add(-1)
		return nil, err
	}
	// The stream stays open until the body is done with.
	res.Body = &h3PoolBody{ReadCloser: res.Body, c: c}
	return res, nil
}

// connections is the number of connections the pool has opened.
func (p *h3Pool) connections() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// close closes every connection.
func (p *h3Pool) close() {
	p.mu.Lock()
	conns := p.conns
	p.conns = nil
	p.mu.Unlock()
	for _, c := range conns {
		_ = c.tr.Close()
	}
}

type h3PoolBody struct {
	io.ReadCloser
	c    *h3PoolConn
	once sync.Once
}

func (b *h3PoolBody) Close() error {
	b.once.Do(func() { b.c.inflight.Add(-1) })
	return b.ReadCloser.Close()
}
