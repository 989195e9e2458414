package l7

import (
	"context"
	"io"
	"net"
	"net/http"
	"testing"

	"github.com/coder/websocket"
)

// tcpSink reads everything a connection sends and, at its end, answers
// "done": a writer's bytes all arrived when it reads that.
func tcpSink(tb testing.TB) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(io.Discard, c)
				_, _ = io.WriteString(c, "done")
			}()
		}
	}()
	return l.Addr().String()
}

// BenchmarkConnectTunnelUpload measures bytes per second through a CONNECT
// tunnel by client protocol, against the same sink reached directly over
// TCP: compare the ratios within one run. Run with
//
//	go test -run '^$' -bench ConnectTunnelUpload -benchtime 2000x ./l7/
func BenchmarkConnectTunnelUpload(b *testing.B) {
	cert := mustCert(b, "app.example.com")
	sink := tcpSink(b)
	_, up := mustRecordingUpstream(b, "u", nil)
	cfg := oneService(b, cert, PoolConfig{Upstreams: []UpstreamConfig{up}},
		Route{Pool: "p", Match: Match{Methods: []string{http.MethodConnect}}, Tunnel: TunnelConfig{Connect: &ConnectConfig{Allow: []string{sink}}}})
	cfg.Services[0].TCP = true
	cfg.Services[0].Address = freeAddr(b)
	s := mustServer(b, cfg)
	addr := mustAddr(b, s)
	chunk := make([]byte, 64<<10)
	for _, tc := range []struct {
		name string
		open func(b *testing.B) (io.Writer, func() error, io.Reader)
	}{
		{"direct TCP", func(b *testing.B) (io.Writer, func() error, io.Reader) {
			c, err := net.Dial("tcp", sink)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { c.Close() })
			return c, c.(*net.TCPConn).CloseWrite, c
		}},
		{"CONNECT over HTTP/1.1", benchTunnel(h1Connect(cert, addr), sink)},
		{"CONNECT over HTTP/2", benchTunnel(h2Connect(cert, addr), sink)},
		{"CONNECT over HTTP/3", benchTunnel(h3ConnectDialer(cert, addr), sink)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			w, closeWrite, r := tc.open(b)
			b.SetBytes(int64(len(chunk)))
			b.ResetTimer()
			for range b.N {
				if _, err := w.Write(chunk); err != nil {
					b.Fatal(err)
				}
			}
			if err := closeWrite(); err != nil {
				b.Fatal(err)
			}
			if got, err := io.ReadAll(r); err != nil || string(got) != "done" {
				b.Fatalf("sink answered %q, %v", got, err)
			}
		})
	}
}

// benchTunnel opens a CONNECT tunnel to dest for a benchmark.
func benchTunnel(dial connectDialer, dest string) func(b *testing.B) (io.Writer, func() error, io.Reader) {
	return func(b *testing.B) (io.Writer, func() error, io.Reader) {
		tun, status, err := dial(b, dest, nil)
		if err != nil || tun == nil {
			b.Fatalf("CONNECT %s: %d, %v", dest, status, err)
		}
		return tun.w, tun.closeWrite, tun.r
	}
}

// BenchmarkWebSocketEcho measures a WebSocket message's round trip (1 KiB
// out, echoed back) by client protocol through spooky, against the same
// upstream reached directly: compare the ratios within one run. Run with
//
//	go test -run '^$' -bench WebSocketEcho -benchtime 3000x ./l7/
func BenchmarkWebSocketEcho(b *testing.B) {
	cert := mustCert(b, "app.example.com")
	up, _ := mustWSUpstream(b, "ws")
	cfg := oneService(b, cert, PoolConfig{Upstreams: []UpstreamConfig{up}}, Route{Pool: "p"})
	cfg.Services[0].TCP = true
	cfg.Services[0].Address = freeAddr(b)
	s := mustServer(b, cfg)
	addr := mustAddr(b, s)
	msg := make([]byte, 1<<10)
	for _, tc := range []struct {
		name string
		dial func(b *testing.B) wsConn
	}{
		{"direct HTTP/1.1", func(b *testing.B) wsConn {
			c, _, err := websocket.Dial(context.Background(), "ws://"+up.Address+"/", nil)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = c.CloseNow() })
			return coderConn{c}
		}},
		{"via spooky, HTTP/1.1 client", benchWS(h1WebSocket(cert, addr))},
		{"via spooky, HTTP/3 client", benchWS(h3WebSocket(cert, addr))},
	} {
		b.Run(tc.name, func(b *testing.B) {
			c := tc.dial(b)
			ctx := context.Background()
			b.ResetTimer()
			for range b.N {
				if err := c.send(ctx, msg); err != nil {
					b.Fatal(err)
				}
				if _, err := c.recv(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func benchWS(dial wsDialer) func(b *testing.B) wsConn {
	return func(b *testing.B) wsConn {
		c, status, err := dial(b, "/")
		if err != nil || c == nil {
			b.Fatalf("dial: %d, %v", status, err)
		}
		return c
	}
}
