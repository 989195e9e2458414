package l7

import (
	"bytes"
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// udpEcho is a UDP server that sends every datagram back.
func udpEcho(tb testing.TB) *net.UDPAddr {
	tb.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := c.ReadFromUDP(buf)
			if err != nil {
				return
			}
			_, _ = c.WriteToUDP(buf[:n], from)
		}
	}()
	return c.LocalAddr().(*net.UDPAddr)
}

// udpPath is the default URI template's path (RFC 9298 §3) for host:port.
func udpPath(host, port string) string { return connectUDPPrefix + host + "/" + port + "/" }

// h3ConnectUDP sends a CONNECT-UDP request (RFC 9298) for path over a new
// HTTP/3 connection with datagrams on.
func h3ConnectUDP(t *testing.T, cert testCert, addr, path string) (*http3.RequestStream, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	qc, err := quic.DialAddr(ctx, addr, &tls.Config{RootCAs: cert.pool, ServerName: "app.example.com", NextProtos: []string{http3.NextProtoH3}},
		&quic.Config{EnableDatagrams: true, MaxIdleTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = qc.CloseWithError(0, "") })
	cc := (&http3.Transport{EnableDatagrams: true}).NewClientConn(qc)
	select {
	case <-cc.ReceivedSettings():
	case <-ctx.Done():
		t.Fatal("no SETTINGS")
	}
	if s := cc.Settings(); !s.EnableDatagrams || !s.EnableExtendedConnect {
		t.Fatalf("server settings %+v: want datagrams and extended CONNECT", s)
	}
	str, err := cc.OpenRequestStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodConnect, "https://app.example.com"+path, nil)
	req.Proto = connectUDPProtocol
	req.Header.Set("Capsule-Protocol", "?1")
	if err := str.SendRequestHeader(req); err != nil {
		t.Fatal(err)
	}
	res, err := str.ReadResponse()
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode == http.StatusOK && res.Header.Get("Capsule-Protocol") != "?1" {
		t.Errorf("Capsule-Protocol = %q, want ?1 (RFC 9298 §3.2)", res.Header.Get("Capsule-Protocol"))
	}
	return str, res.StatusCode
}

func TestConnectUDP(t *testing.T) {
	cert := mustCert(t, "app.example.com")
	echo := udpEcho(t)
	port := strings.TrimPrefix(echo.String(), "127.0.0.1:")
	_, up := mustRecordingUpstream(t, "u", nil)
	cfg := oneService(t, cert, PoolConfig{Upstreams: []UpstreamConfig{up}},
		Route{Name: "udp", Match: Match{PathPrefix: connectUDPPrefix}, Pool: "p",
			Tunnel: TunnelConfig{Connect: &ConnectConfig{Allow: []string{echo.String(), "localhost:" + port}, UDP: true}}},
		Route{Name: "tcp-only", Match: Match{PathPrefix: "/tcp" + connectUDPPrefix}, Pool: "p",
			Tunnel: TunnelConfig{Connect: &ConnectConfig{Allow: []string{echo.String()}}}},
	)
	obs := newTunnelCounter()
	cfg.Observer = obs
	s := mustServer(t, cfg)
	addr := mustAddr(t, s)

	t.Run("datagrams reach an allowed destination and come back", func(t *testing.T) {
		str, status := h3ConnectUDP(t, cert, addr, udpPath("127.0.0.1", port))
		if status != http.StatusOK {
			t.Fatalf("CONNECT-UDP: %d", status)
		}
		for i, msg := range []string{"ping", strings.Repeat("x", 1000)} {
			want := append([]byte{0}, msg...) // context ID 0: a UDP payload (§4)
			// UDP may lose a datagram; resend until one comes back.
			got := make(chan []byte, 1)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			go func() {
				d, err := str.ReceiveDatagram(ctx)
				if err == nil {
					got <- d
				}
			}()
		resend:
			for {
				if err := str.SendDatagram(want); err != nil {
					t.Fatal(err)
				}
				select {
				case d := <-got:
					if !bytes.Equal(d, want) {
						t.Fatalf("datagram %d came back as %q", i, d)
					}
					break resend
				case <-time.After(100 * time.Millisecond):
				case <-ctx.Done():
					t.Fatalf("datagram %d never came back", i)
				}
			}
			cancel()
		}
		str.Close()
		waitFor(t, 10*time.Second, "the tunnel to close after the client's stream ended", func() bool {
			return obs.get(func(c *tunnelCounter) int { return c.open[TunnelConnectUDP] }) == 0
		})
	})

	for _, tc := range []struct {
		name, path string
		want       int
	}{
		{"a destination not allowed is refused", udpPath("127.0.0.1", "1"), http.StatusForbidden},
		{"a name is checked as a name", udpPath("localhost", port), http.StatusOK},
		{"a route that allows only TCP refuses CONNECT-UDP", "/tcp" + udpPath("127.0.0.1", port), http.StatusMethodNotAllowed},
		{"a malformed target is refused", udpPath("127.0.0.1", "0"), http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, status := h3ConnectUDP(t, cert, addr, tc.path)
			if status != tc.want {
				t.Fatalf("CONNECT-UDP: %d, want %d", status, tc.want)
			}
		})
	}
	if n := obs.get(func(c *tunnelCounter) int { return c.bytes[TunnelConnectUDP+"/"+DirDown] }); n < 1004 {
		t.Errorf("%d bytes counted down, want at least both payloads", n)
	}
}
