package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/spooky-lb/spooky/cid"
)

func TestServerAnswersWithItsNameAndIssuesRoutableCIDs(t *testing.T) {
	tests := []struct {
		name string
		cfg  cid.Config
		sid  []byte
	}{
		{"a plaintext config", cid.Config{ID: 0, ServerIDLen: 1, NonceLen: 8}, []byte{0x02}},
		{"an encrypted config", cid.Config{ID: 3, ServerIDLen: 2, NonceLen: 6, Key: bytes.Repeat([]byte{0xa5}, 16)}, []byte{0x12, 0x34}},
	}
	for _, tt := range tests {
		t.Run("with "+tt.name+" the server's CIDs decode to its server ID", func(t *testing.T) {
			addr := mustServe(t, options{name: "b-" + tt.name, cid: tt.cfg, serverID: tt.sid})
			rec := &recordingConn{}
			client := mustClient(t, rec)

			resp, err := client.Get("https://" + addr.String() + "/")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(body) != "b-"+tt.name+"\n" || resp.Header.Get("X-Backend") != "b-"+tt.name {
				t.Errorf("GET / = %d %q X-Backend=%q, want 200 %q and the name", resp.StatusCode, body, resp.Header.Get("X-Backend"), "b-"+tt.name+"\n")
			}

			dec, err := cid.NewDecoder(tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			scids := rec.longSCIDs()
			if len(scids) == 0 {
				t.Fatal("no long-header packet from the server seen")
			}
			for _, scid := range scids {
				if len(scid) != tt.cfg.Len() {
					t.Errorf("SCID %x: length %d, want %d", scid, len(scid), tt.cfg.Len())
					continue
				}
				got, err := dec.ServerID(nil, scid)
				if err != nil || !bytes.Equal(got, tt.sid) {
					t.Errorf("SCID %x decodes to %x (%v), want %x", scid, got, err, tt.sid)
				}
			}
		})
	}
}

func TestHealthzAnswers200AndOtherPathsTheName(t *testing.T) {
	addr := mustServe(t, options{name: "h", cid: cid.Config{ServerIDLen: 1, NonceLen: 4}, serverID: []byte{1}})
	client := mustClient(t, nil)
	if resp := mustGet(t, client, "https://"+addr.String()+"/healthz"); resp.status != http.StatusOK {
		t.Errorf("GET /healthz = %d, want 200", resp.status)
	}
	// A load balancer's path routes (say /static/...) reach backends too.
	for _, path := range []string{"/static/app.css", "/v1/users"} {
		resp := mustGet(t, client, "https://"+addr.String()+path)
		if resp.status != http.StatusOK || resp.body != "h\n" || resp.backend != "h" {
			t.Errorf("GET %s = %d %q X-Backend=%q, want 200 \"h\\n\" and X-Backend h", path, resp.status, resp.body, resp.backend)
		}
	}
}

func TestServeReturnsCleanlyWhenItsContextEnds(t *testing.T) {
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	readyc := make(chan net.Addr, 1)
	go func() {
		done <- serve(ctx, conn, options{name: "s", cid: cid.Config{ServerIDLen: 1, NonceLen: 4}, serverID: []byte{1}},
			slog.New(slog.DiscardHandler), func(a net.Addr) { readyc <- a })
	}()
	addr := <-readyc
	resp, err := mustClient(t, nil).Get("https://" + addr.String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serve returned %v after its context ended, want nil", err)
		}
	case <-time.After(2 * shutdownGrace):
		t.Fatal("serve did not return after its context ended")
	}
}

func TestRunRefusesAnAddressItCannotBind(t *testing.T) {
	// 198.18.0.1 is on no interface of the test's namespace.
	o, err := parseArgs([]string{"--listen", "198.18.0.1:4433", "--name", "x", "--server-id", "01"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if err := run(context.Background(), o, slog.New(slog.DiscardHandler), nil); err == nil {
		t.Error("run bound 198.18.0.1, which this host does not have")
	}
}

func mustServe(tb testing.TB, o options) net.Addr {
	tb.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatal(err)
	}
	return mustRunServer(tb, "serve", func(ctx context.Context, ready func(net.Addr)) error {
		return serve(ctx, conn, o, slog.New(slog.DiscardHandler), ready)
	})
}

// mustRunServer runs a server until the test ends and returns the address
// it reports ready on; the server must then stop cleanly.
func mustRunServer(tb testing.TB, name string, run func(ctx context.Context, ready func(net.Addr)) error) net.Addr {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	readyc := make(chan net.Addr, 1)
	go func() { done <- run(ctx, func(a net.Addr) { readyc <- a }) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("%s: %v", name, err)
		}
	})
	select {
	case a := <-readyc:
		return a
	case err := <-done:
		tb.Fatalf("%s: %v", name, err)
	}
	return nil
}

// mustClient returns an HTTP/3 client trusting any certificate; with rec set
// its packets go through rec, which records what it receives.
func mustClient(tb testing.TB, rec *recordingConn) *http.Client {
	tb.Helper()
	tr := &http3.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	if rec != nil {
		udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			tb.Fatal(err)
		}
		rec.PacketConn = udp
		qt := &quic.Transport{Conn: rec}
		tb.Cleanup(func() { qt.Close() })
		tr.Dial = func(ctx context.Context, addr string, tlsConf *tls.Config, conf *quic.Config) (*quic.Conn, error) {
			ua, err := net.ResolveUDPAddr("udp", addr)
			if err != nil {
				return nil, err
			}
			return qt.DialEarly(ctx, ua, tlsConf, conf)
		}
	}
	tb.Cleanup(func() { tr.Close() })
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}
}

// recordingConn keeps the SCID of every long-header packet it receives. As a
// plain net.PacketConn (no OOB methods) it makes quic-go use simple reads.
type recordingConn struct {
	net.PacketConn
	mu    sync.Mutex
	scids [][]byte
}

func (c *recordingConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, a, err := c.PacketConn.ReadFrom(b)
	if err == nil {
		if h, perr := cid.ParseHeader(b[:n], 0); perr == nil && h.Long && len(h.SCID) > 0 {
			c.mu.Lock()
			c.scids = append(c.scids, bytes.Clone(h.SCID))
			c.mu.Unlock()
		}
	}
	return n, a, err
}

// SetReadBuffer lets quic-go size the socket buffer as for a plain socket.
func (c *recordingConn) SetReadBuffer(n int) error {
	return c.PacketConn.(*net.UDPConn).SetReadBuffer(n)
}

// SetWriteBuffer lets quic-go size the socket buffer as for a plain socket.
func (c *recordingConn) SetWriteBuffer(n int) error {
	return c.PacketConn.(*net.UDPConn).SetWriteBuffer(n)
}

func (c *recordingConn) longSCIDs() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.scids
}
