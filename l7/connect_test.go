package l7

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/spooky-lb/spooky/config"
)

// tcpEcho is a TCP server that echoes what it reads and, at the client's
// end of stream, ends its own (a half-close answered).
func tcpEcho(tb testing.TB) string {
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
				_, _ = io.Copy(c, c)
				_ = c.(*net.TCPConn).CloseWrite()
			}()
		}
	}()
	return l.Addr().String()
}

// connectTunnel is a CONNECT tunnel as a client sees it.
type connectTunnel struct {
	r          io.Reader
	w          io.Writer
	closeWrite func() error
}

// connectDialer sends a CONNECT to dest with the header hdr and returns
// the tunnel, or the status it was refused with.
type connectDialer func(t testing.TB, dest string, hdr http.Header) (*connectTunnel, int, error)

func h1Connect(cert testCert, addr string) connectDialer {
	return func(t testing.TB, dest string, hdr http.Header) (*connectTunnel, int, error) {
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: cert.pool, ServerName: "app.example.com", NextProtos: []string{"http/1.1"}})
		if err != nil {
			return nil, 0, err
		}
		t.Cleanup(func() { c.Close() })
		var head strings.Builder
		fmt.Fprintf(&head, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n", dest, dest)
		_ = hdr.Write(&head)
		head.WriteString("\r\n")
		if _, err := io.WriteString(c, head.String()); err != nil {
			return nil, 0, err
		}
		br := bufio.NewReader(c)
		res, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
		if err != nil {
			return nil, 0, err
		}
		if res.StatusCode != http.StatusOK {
			return nil, res.StatusCode, nil
		}
		return &connectTunnel{r: br, w: c, closeWrite: c.CloseWrite}, res.StatusCode, nil
	}
}

func h2Connect(cert testCert, addr string) connectDialer {
	return func(t testing.TB, dest string, hdr http.Header) (*connectTunnel, int, error) {
		body, pw, status, err := h2Stream(t, cert, addr, "", dest, hdr)
		if err != nil || status != http.StatusOK {
			return nil, status, err
		}
		return &connectTunnel{r: body, w: pw, closeWrite: pw.Close}, status, nil
	}
}

func h3ConnectDialer(cert testCert, addr string) connectDialer {
	return func(t testing.TB, dest string, hdr http.Header) (*connectTunnel, int, error) {
		str, status, err := h3Connect(t, cert, addr, "", dest, hdr)
		if err != nil || status != http.StatusOK {
			return nil, status, err
		}
		return &connectTunnel{r: str, w: str, closeWrite: str.Close}, status, nil
	}
}

func TestConnectTunnels(t *testing.T) {
	cert := mustCert(t, "app.example.com")
	echo := tcpEcho(t)
	closed := deadAddress(t)
	_, echoPort, _ := net.SplitHostPort(echo)
	other := tcpEcho(t) // listening, but not allowed
	_, up := mustRecordingUpstream(t, "u", nil)
	auth := http.Header{"Proxy-Authorization": {"Basic c3Bvb2t5OnNlY3JldA=="}}
	cfg := oneService(t, cert, PoolConfig{Upstreams: []UpstreamConfig{up}},
		// CONNECT with the right credentials may reach the echo server
		// and the closed port; everything else goes to the pool.
		Route{Name: "proxy", Pool: "p",
			Match:  Match{Methods: []string{http.MethodConnect}, Headers: []HeaderMatch{{Name: "Proxy-Authorization", Value: auth.Get("Proxy-Authorization")}}},
			Tunnel: TunnelConfig{Connect: &ConnectConfig{Allow: []string{"127.0.0.1:" + echoPort, closed, "198.18.0.0/15:443"}}}},
		Route{Name: "rest", Pool: "p"},
	)
	cfg.Services[0].TCP = true
	cfg.Services[0].Address = freeAddr(t)
	obs := newTunnelCounter()
	cfg.Observer = obs
	s := mustServer(t, cfg)
	addr := mustAddr(t, s)
	for _, client := range []struct {
		name string
		dial connectDialer
	}{
		{"HTTP/1.1", h1Connect(cert, addr)},
		{"HTTP/2", h2Connect(cert, addr)},
		{"HTTP/3", h3ConnectDialer(cert, addr)},
	} {
		t.Run("over "+client.name, func(t *testing.T) {
			t.Run("an allowed destination is tunnelled, half-close included", func(t *testing.T) {
				tun, status, err := client.dial(t, echo, auth)
				if err != nil || tun == nil {
					t.Fatalf("CONNECT %s: status %d, %v", echo, status, err)
				}
				msg := strings.Repeat("spooky ", 20000)
				go func() {
					_, _ = io.WriteString(tun.w, msg)
					_ = tun.closeWrite()
				}()
				got, err := io.ReadAll(tun.r)
				if err != nil {
					t.Fatalf("read the echo to its end: %v", err)
				}
				if string(got) != msg {
					t.Fatalf("echo of %d bytes came back as %d", len(msg), len(got))
				}
			})
			for _, tc := range []struct {
				name string
				dest string
				hdr  http.Header
				want int
			}{
				{"a destination not allowed is refused", other, auth, http.StatusForbidden},
				{"a name not allowed is refused", "localhost:" + echoPort, auth, http.StatusForbidden},
				{"a route without connect refuses CONNECT", echo, nil, http.StatusMethodNotAllowed},
				{"an allowed destination that refuses the connection is 502", closed, auth, http.StatusBadGateway},
			} {
				t.Run(tc.name, func(t *testing.T) {
					tun, status, err := client.dial(t, tc.dest, tc.hdr)
					if err != nil || tun != nil || status != tc.want {
						t.Fatalf("CONNECT %s: tunnel %v, status %d, err %v; want %d", tc.dest, tun, status, err, tc.want)
					}
				})
			}
		})
	}
	waitFor(t, 10*time.Second, "every tunnel to close", func() bool {
		return obs.get(func(c *tunnelCounter) int { return c.open[TunnelConnect] }) == 0
	})
	if n := obs.get(func(c *tunnelCounter) int { return c.opened[TunnelConnect] }); n != 3 {
		t.Errorf("%d CONNECT tunnels opened, want 3", n)
	}
	if n := obs.get(func(c *tunnelCounter) int { return c.bytes[TunnelConnect+"/"+DirDown] }); n != 3*7*20000 {
		t.Errorf("%d bytes counted down, want %d", n, 3*7*20000)
	}
}

func TestConnectDestinationsAreCheckedAsWritten(t *testing.T) {
	ct, err := compileTunnel(TunnelConfig{Connect: &ConnectConfig{Allow: []string{
		"db.internal:5432", "*.example.test:443", "198.18.0.0/24:8000-8999", "[2001:db8::/64]:443",
	}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		authority string
		want      bool
	}{
		{"db.internal:5432", true},
		{"DB.Internal.:5432", true},
		{"db.internal:5433", false},
		{"a.example.test:443", true},
		{"a.b.example.test:443", false},
		{"example.test:443", false},
		{"198.18.0.7:8080", true},
		{"198.18.1.7:8080", false},
		{"198.18.0.7:443", false},
		{"[2001:db8::5]:443", true},
		{"[2001:db9::5]:443", false},
		{"[::ffff:198.18.0.7]:8080", true},
	} {
		host, port, err := config.SplitDestination(tc.authority)
		if err != nil {
			t.Fatalf("%s: %v", tc.authority, err)
		}
		if got := ct.allows(host, port); got != tc.want {
			t.Errorf("CONNECT %s allowed = %v, want %v", tc.authority, got, tc.want)
		}
	}
	for _, bad := range []string{"example.test", "*:443", "0.0.0.0/0:443", "[::/0]:443", "a.test:0", "a.test:9-3", "a.test:http"} {
		if _, err := compileTunnel(TunnelConfig{Connect: &ConnectConfig{Allow: []string{bad}}}); err == nil {
			t.Errorf("pattern %q accepted", bad)
		}
	}
	if _, err := compileTunnel(TunnelConfig{Connect: &ConnectConfig{}}); err == nil {
		t.Error("connect with no allowed destinations accepted")
	}
}

func TestConnectInEarlyDataIsTooEarly(t *testing.T) {
	cert := mustCert(t, "app.example.com")
	echo := tcpEcho(t)
	_, up := mustRecordingUpstream(t, "u", nil)
	cfg := oneService(t, cert, PoolConfig{Upstreams: []UpstreamConfig{up}},
		Route{Pool: "p", Tunnel: TunnelConfig{Connect: &ConnectConfig{Allow: []string{echo}}}})
	cfg.Services[0].Allow0RTT = true
	s := mustServer(t, cfg)
	addr := mustAddr(t, s)
	tlsConf := &tls.Config{RootCAs: cert.pool, ServerName: "app.example.com", ClientSessionCache: tls.NewLRUClientSessionCache(8), NextProtos: []string{http3.NextProtoH3}}
	tr := &http3.Transport{}
	defer tr.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// A first connection leaves a session ticket that allows 0-RTT.
	first, err := quic.DialAddrEarly(ctx, addr, tlsConf, &quic.Config{})
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, "https://app.example.com/ticket", nil)
	res, err := tr.NewClientConn(first).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	_ = first.CloseWithError(0, "")

	// The second resumes and sends CONNECT in 0-RTT, its handshake held back.
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	qtr := &quic.Transport{Conn: &handshakeDelayConn{PacketConn: udp, delay: 300 * time.Millisecond}}
	defer qtr.Close()
	raddr, _ := net.ResolveUDPAddr("udp", addr)
	second, err := qtr.DialEarly(ctx, raddr, tlsConf, &quic.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer second.CloseWithError(0, "")
	str, err := tr.NewClientConn(second).OpenRequestStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := str.SendRequestHeader(connectRequest("", echo, nil)); err != nil {
		t.Fatal(err)
	}
	res, err = str.ReadResponse()
	if err != nil {
		t.Fatal(err)
	}
	if !second.ConnectionState().Used0RTT {
		t.Fatal("the second connection did not use 0-RTT, so nothing was tested")
	}
	// RFC 8470 §5.2: a replayed CONNECT would open a second tunnel.
	if res.StatusCode != http.StatusTooEarly {
		t.Fatalf("CONNECT in 0-RTT: %d, want 425", res.StatusCode)
	}
}
