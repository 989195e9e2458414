//lint:file-ignore SA1019 golang.org/x/net/http2.Transport is deprecated for net/http's, which rejects the :protocol field of an extended CONNECT (RFC 8441) before its HTTP/2 code would send it.

package integration

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"golang.org/x/net/http2"

	"github.com/spooky-lb/spooky/test/netns"
	"github.com/spooky-lb/spooky/test/wstest"
)

// tunnelConfig is a spooky config whose l7 service on the lb host, with
// its TCP listener on, proxies WebSockets to ws (an HTTP/1.1 upstream) and
// opens CONNECT and CONNECT-UDP tunnels to echo (TCP and UDP) only.
func tunnelConfig(t *testing.T, listen, ws, echo netip.AddrPort) string {
	t.Helper()
	certs, err := filepath.Abs("../../examples/certs")
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf(`admin:
  socket: %s
services:
  - name: edge
    address: %s
    port: %d
    mode: l7
    tcp_listener: true
    tls:
      - server_names: [example.test]
        cert: %s/example.test.crt
        key: %s/example.test.key
    routes:
      - match: {methods: [CONNECT]}
        pool: app
        connect: {allow: ["%s"], udp: true}
      - match: {path_prefix: /ws}
        pool: app
        tunnel: {idle_timeout: 1m}
      - pool: app
        websocket: false
pools:
  - name: app
    upstreams:
      - address: http://%s
`, filepath.Join(t.TempDir(), "admin.sock"), listen.Addr(), listen.Port(), certs, certs, echo, ws)
}

// mustServeIn serves h over HTTP/1.1 on addr inside host.
func mustServeIn(t *testing.T, host *netns.Host, addr netip.AddrPort, h http.Handler) {
	t.Helper()
	l := mustListenIn(t, host, addr)
	srv := &http.Server{Handler: h}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { srv.Close() })
}

func mustListenIn(t *testing.T, host *netns.Host, addr netip.AddrPort) net.Listener {
	t.Helper()
	var l net.Listener
	if err := host.Do(func() (err error) {
		l, err = net.Listen("tcp", addr.String())
		return err
	}); err != nil {
		t.Fatalf("listen on %s in %s: %v", addr, host, err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// wsEchoHandler echoes WebSocket messages (github.com/coder/websocket).
var wsEchoHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		return
	}
	defer c.CloseNow()
	c.SetReadLimit(1 << 20)
	for {
		typ, msg, err := c.Read(r.Context())
		if err != nil {
			return
		}
		if err := c.Write(r.Context(), typ, msg); err != nil {
			return
		}
	}
})

// tcpDialIn dials addr over TCP from inside host.
func tcpDialIn(host *netns.Host) func(ctx context.Context, addr string) (net.Conn, error) {
	return func(ctx context.Context, addr string) (c net.Conn, err error) {
		err = host.Do(func() error {
			c, err = (&net.Dialer{}).DialContext(ctx, "tcp", addr)
			return err
		})
		return c, err
	}
}

// h3ConnIn opens an HTTP/3 client connection from host to addr and waits
// for the server's SETTINGS.
func h3ConnIn(t *testing.T, host *netns.Host, addr netip.AddrPort) *http3.ClientConn {
	t.Helper()
	tr := &quic.Transport{Conn: mustUDPSocket(t, host, host.IPv4)}
	t.Cleanup(func() { tr.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	qc, err := tr.Dial(ctx, net.UDPAddrFromAddrPort(addr), &tls.Config{InsecureSkipVerify: true, ServerName: "example.test", NextProtos: []string{http3.NextProtoH3}}, &quic.Config{InitialPacketSize: 1252})
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = qc.CloseWithError(0, "") })
	cc := (&http3.Transport{}).NewClientConn(qc)
	select {
	case <-cc.ReceivedSettings():
	case <-ctx.Done():
		t.Fatal("no SETTINGS from the request tier")
	}
	return cc
}

// h3Tunnel sends a CONNECT on cc (extended when protocol is set) and
// returns its stream and status.
func h3Tunnel(t *testing.T, cc *http3.ClientConn, req *http.Request) (*http3.RequestStream, int) {
	t.Helper()
	str, err := cc.OpenRequestStream(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := str.SendRequestHeader(req); err != nil {
		t.Fatal(err)
	}
	res, err := str.ReadResponse()
	if err != nil {
		t.Fatalf("CONNECT: %v", err)
	}
	return str, res.StatusCode
}

// echoOver checks that c echoes a message and closes cleanly.
func echoOver(t *testing.T, c *wstest.Conn) {
	t.Helper()
	msg := bytes.Repeat([]byte("spooky"), 10000)
	if err := c.Send(msg); err != nil {
		t.Fatal(err)
	}
	got, err := c.Recv()
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("echo: %d bytes, %v", len(got), err)
	}
	if err := c.Close(1000, ""); err != nil {
		t.Fatalf("closing handshake: %v", err)
	}
}

// TestRequestTierTunnels runs the daemon with GODEBUG=http2xconnect=1, as
// an operator who wants WebSockets over HTTP/2 would, and opens WebSockets
// from HTTP/1.1, HTTP/2 and HTTP/3 clients and CONNECT tunnels.
func TestRequestTierTunnels(t *testing.T) {
	lab := netns.New(t, netns.Config{Backends: 2})
	ws := netip.AddrPortFrom(lab.Backends[0].IPv4, 8080)
	mustServeIn(t, lab.Backends[0], ws, wsEchoHandler)
	echo := netip.AddrPortFrom(lab.Backends[1].IPv4, 7007)
	el := mustListenIn(t, lab.Backends[1], echo)
	go func() {
		for {
			c, err := el.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	var udpEcho *net.UDPConn
	if err := lab.Backends[1].Do(func() (err error) {
		udpEcho, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(echo))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { udpEcho.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := udpEcho.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			_, _ = udpEcho.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	listen := netip.AddrPortFrom(lab.LB.IPv4, 443)
	cfgPath := filepath.Join(t.TempDir(), "spooky.yaml")
	mustWrite(t, cfgPath, tunnelConfig(t, listen, ws, echo))
	d := mustStartDaemonEnv(t, lab.LB, []string{"GODEBUG=http2xconnect=1"}, "msg=serving", "serve", "-c", cfgPath)
	dial := tcpDialIn(lab.Client)

	t.Run("a WebSocket from an HTTP/1.1 client", func(t *testing.T) {
		tr := &http.Transport{
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
			DialContext:     func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx, listen.String()) },
		}
		p := new(http.Protocols)
		p.SetHTTP1(true)
		tr.Protocols = p
		defer tr.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, _, err := websocket.Dial(ctx, "wss://example.test/ws", &websocket.DialOptions{HTTPClient: &http.Client{Transport: tr}})
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		if err := c.Write(ctx, websocket.MessageText, []byte("hello")); err != nil {
			t.Fatal(err)
		}
		if _, msg, err := c.Read(ctx); err != nil || string(msg) != "hello" {
			t.Fatalf("echo: %q, %v", msg, err)
		}
		if err := c.Close(websocket.StatusNormalClosure, ""); err != nil {
			t.Fatalf("close: %v", err)
		}
	})

	t.Run("a WebSocket from an HTTP/2 client (RFC 8441)", func(t *testing.T) {
		tr := &http2.Transport{
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
			DialTLSContext: func(ctx context.Context, _, _ string, tc *tls.Config) (net.Conn, error) {
				c, err := dial(ctx, listen.String())
				if err != nil {
					return nil, err
				}
				tc.ServerName = "example.test"
				return tls.Client(c, tc), nil
			},
		}
		defer tr.CloseIdleConnections()
		pr, pw := io.Pipe()
		req, _ := http.NewRequest(http.MethodConnect, "https://example.test/ws", pr)
		req.Header.Set(":protocol", "websocket")
		req.Header.Set("Sec-WebSocket-Version", "13")
		res, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatalf("extended CONNECT: %v", err)
		}
		defer res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Fatalf("extended CONNECT: %d", res.StatusCode)
		}
		echoOver(t, wstest.New(res.Body, pw, pw.Close))
	})

	t.Run("a WebSocket from an HTTP/3 client (RFC 9220)", func(t *testing.T) {
		cc := h3ConnIn(t, lab.Client, listen)
		if !cc.Settings().EnableExtendedConnect {
			t.Fatal("the request tier does not offer extended CONNECT")
		}
		req, _ := http.NewRequest(http.MethodConnect, "https://example.test/ws", nil)
		req.Proto = "websocket"
		req.Header.Set("Sec-WebSocket-Version", "13")
		str, status := h3Tunnel(t, cc, req)
		if status != http.StatusOK {
			t.Fatalf("extended CONNECT: %d", status)
		}
		echoOver(t, wstest.New(str, str, str.Close))
	})

	t.Run("a route with websocket: false refuses the handshake", func(t *testing.T) {
		cc := h3ConnIn(t, lab.Client, listen)
		req, _ := http.NewRequest(http.MethodConnect, "https://example.test/chat", nil)
		req.Proto = "websocket"
		if _, status := h3Tunnel(t, cc, req); status != http.StatusForbidden {
			t.Fatalf("extended CONNECT to /chat: %d, want 403", status)
		}
	})

	connect := func(t *testing.T, dest string) (*http3.RequestStream, int) {
		cc := h3ConnIn(t, lab.Client, listen)
		req, _ := http.NewRequest(http.MethodConnect, "https://"+dest, nil)
		req.URL = &url.URL{Host: dest}
		req.Host = dest
		return h3Tunnel(t, cc, req)
	}
	t.Run("CONNECT reaches an allowed destination", func(t *testing.T) {
		str, status := connect(t, echo.String())
		if status != http.StatusOK {
			t.Fatalf("CONNECT %s: %d", echo, status)
		}
		if _, err := io.WriteString(str, "ping"); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 4)
		if _, err := io.ReadFull(str, buf); err != nil || string(buf) != "ping" {
			t.Fatalf("echo through the tunnel: %q, %v", buf, err)
		}
		str.Close()
	})

	t.Run("CONNECT-UDP carries datagrams to an allowed destination (RFC 9298)", func(t *testing.T) {
		tr := &quic.Transport{Conn: mustUDPSocket(t, lab.Client, lab.Client.IPv4)}
		t.Cleanup(func() { tr.Close() })
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		qc, err := tr.Dial(ctx, net.UDPAddrFromAddrPort(listen), &tls.Config{InsecureSkipVerify: true, ServerName: "example.test", NextProtos: []string{http3.NextProtoH3}},
			&quic.Config{InitialPacketSize: 1252, EnableDatagrams: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = qc.CloseWithError(0, "") })
		cc := (&http3.Transport{EnableDatagrams: true}).NewClientConn(qc)
		<-cc.ReceivedSettings()
		req, _ := http.NewRequest(http.MethodConnect, fmt.Sprintf("https://example.test/.well-known/masque/udp/%s/%d/", echo.Addr(), echo.Port()), nil)
		req.Proto = "connect-udp"
		req.Header.Set("Capsule-Protocol", "?1")
		str, status := h3Tunnel(t, cc, req)
		if status != http.StatusOK {
			t.Fatalf("CONNECT-UDP: %d", status)
		}
		want := []byte("\x00ping") // context ID 0, then the UDP payload
		got := make(chan []byte, 1)
		go func() {
			if d, err := str.ReceiveDatagram(ctx); err == nil {
				got <- d
			}
		}()
		for { // UDP may lose one; resend until the echo comes back
			if err := str.SendDatagram(want); err != nil {
				t.Fatal(err)
			}
			select {
			case d := <-got:
				if !bytes.Equal(d, want) {
					t.Fatalf("echo %q, want %q", d, want)
				}
				str.Close()
				return
			case <-time.After(200 * time.Millisecond):
			case <-ctx.Done():
				t.Fatal("no datagram came back")
			}
		}
	})

	t.Run("CONNECT to a destination not allowed is refused", func(t *testing.T) {
		if _, status := connect(t, ws.String()); status != http.StatusForbidden {
			t.Fatalf("CONNECT %s: %d, want 403", ws, status)
		}
	})

	t.Run("SIGTERM closes an open WebSocket at the end of the drain and exits cleanly", func(t *testing.T) {
		cc := h3ConnIn(t, lab.Client, listen)
		req, _ := http.NewRequest(http.MethodConnect, "https://example.test/ws", nil)
		req.Proto = "websocket"
		str, status := h3Tunnel(t, cc, req)
		if status != http.StatusOK {
			t.Fatalf("extended CONNECT: %d", status)
		}
		c := wstest.New(str, str, str.Close)
		ended := make(chan error, 1)
		go func() {
			_, err := c.Recv()
			ended <- err
		}()
		d.mustStop(t)
		if err := <-ended; err == nil || strings.Contains(err.Error(), "close frame") {
			t.Fatalf("the tunnel ended with %v, want its stream closed", err)
		}
	})
}
