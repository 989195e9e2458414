package cid

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
)

func mustGenerator(tb testing.TB, cfg Config, serverID []byte) *Generator {
	tb.Helper()
	g, err := NewGenerator(cfg, serverID)
	if err != nil {
		tb.Fatalf("new generator: %v", err)
	}
	return g
}

func TestGeneratorIssuesUniqueRoutableCIDs(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  Config
	}{
		{"a plaintext config gives random nonces", Config{ID: 1, ServerIDLen: 2, NonceLen: 6}},
		{"a four-pass config counts nonces", Config{ID: 2, ServerIDLen: 3, NonceLen: 4, Key: mustHex(t, appendixBKey)}},
		{"a single-pass config counts nonces", Config{ID: 3, ServerIDLen: 4, NonceLen: 12, Key: mustHex(t, appendixBKey)}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sid := seq(tt.cfg.ServerIDLen, 0x30)
			g := mustGenerator(t, tt.cfg, sid)
			d := mustDecoder(t, tt.cfg)
			if g.ConnectionIDLen() != tt.cfg.Len() {
				t.Fatalf("ConnectionIDLen() = %d, want %d", g.ConnectionIDLen(), tt.cfg.Len())
			}
			seen := map[string]bool{}
			for range 5000 {
				c, err := g.GenerateConnectionID()
				if err != nil {
					t.Fatal(err)
				}
				if c.Len() != tt.cfg.Len() || seen[string(c.Bytes())] {
					t.Fatalf("CID %s: wrong length or repeated", c)
				}
				seen[string(c.Bytes())] = true
				if got, err := d.ServerID(nil, c.Bytes()); err != nil || !bytes.Equal(got, sid) {
					t.Fatalf("ServerID(%s) = %x, %v; want %x", c, got, err, sid)
				}
			}
		})
	}
}

func TestGeneratorIsSafeForConcurrentUse(t *testing.T) {
	// quic-go calls the generator from every connection's goroutine.
	g := mustGenerator(t, Config{ServerIDLen: 2, NonceLen: 4, Key: mustHex(t, appendixBKey)}, []byte{1, 2})
	const workers, each = 4, 1000
	results := make(chan string, workers*each)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range each {
				c, err := g.GenerateConnectionID()
				if err != nil {
					t.Error(err)
					return
				}
				results <- string(c.Bytes())
			}
		})
	}
	wg.Wait()
	close(results)
	seen := map[string]bool{}
	for c := range results {
		if seen[c] {
			t.Fatalf("CID %x issued twice", c)
		}
		seen[c] = true
	}
}

func TestGeneratorStopsWhenTheNonceSpaceIsUsedUp(t *testing.T) {
	cfg := Config{ServerIDLen: 1, NonceLen: 4, Key: mustHex(t, appendixBKey)}
	g := mustGenerator(t, cfg, []byte{9})
	// Pretend the counter started at 00000001 and has come round to
	// ffffffff: two nonces are left, ffffffff and, after wrapping, 00000000.
	g.start = [maxPayload]byte{0, 0, 0, 1}
	g.next = [maxPayload]byte{0xff, 0xff, 0xff, 0xff}
	g.used = true
	enc := mustEncoder(t, cfg, []byte{9})
	for _, nonce := range []string{"ffffffff", "00000000"} {
		c, err := g.GenerateConnectionID()
		if err != nil {
			t.Fatalf("CID with nonce %s: %v", nonce, err)
		}
		want, _ := enc.Encode(nil, mustHex(t, nonce))
		if !bytes.Equal(c.Bytes(), want) {
			t.Errorf("CID = %s, want %x (nonce %s)", c, want, nonce)
		}
	}
	if _, err := g.GenerateConnectionID(); !errors.Is(err, ErrNonceExhausted) {
		t.Fatalf("GenerateConnectionID after the last nonce = %v, want ErrNonceExhausted", err)
	}
}

// TestQUICGoServerIssuesRoutableCIDs runs a real quic-go server whose
// transport uses a Generator, relays the client's datagrams to it and checks
// that every packet the client sends after learning the server's CID has a
// DCID the Decoder routes to the server's ID.
func TestQUICGoServerIssuesRoutableCIDs(t *testing.T) {
	cfg := Config{ID: 2, ServerIDLen: 3, NonceLen: 6, Key: mustHex(t, appendixBKey)}
	sid := []byte{0x0a, 0x0b, 0x0c}
	dec := mustDecoder(t, cfg)
	serverTLS, clientTLS := mustTLSConfigs(t)

	serverConn := mustListenUDP(t)
	tr := &quic.Transport{Conn: serverConn, ConnectionIDGenerator: mustGenerator(t, cfg, sid)}
	t.Cleanup(func() { tr.Close() })
	ln, err := tr.Listen(serverTLS, nil)
	if err != nil {
		t.Fatal(err)
	}
	go echoServer(ln)

	var routed, unroutable atomic.Int64
	var failure atomic.Value
	relayAddr := mustRelay(t, serverConn.LocalAddr(), func(d []byte) {
		h, err := ParseHeader(d, cfg.Len())
		if err != nil {
			failure.Store("client sent a datagram ParseHeader rejects: " + err.Error())
			return
		}
		if h.Long && (h.Type == TypeInitial || h.Type == Type0RTT) {
			return // DCID chosen by the client (draft-21 §4)
		}
		got, err := dec.ServerID(nil, h.DCID)
		if err != nil || !bytes.Equal(got, sid) {
			unroutable.Add(1)
			failure.Store("client packet " + h.Type.String() + " has DCID not routed to the server")
			return
		}
		routed.Add(1)
	})

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	clientConn := mustListenUDP(t)
	ctr := &quic.Transport{Conn: clientConn}
	t.Cleanup(func() { ctr.Close() })
	conn, err := ctr.Dial(ctx, relayAddr, clientTLS, nil)
	if err != nil {
		t.Fatalf("dial through relay: %v", err)
	}
	// Sequential echoes: each stream's data leaves in a datagram of its own
	// after the handshake, and the relay inspects it before forwarding, so
	// every echo proves one more routed packet.
	const echoes = 5
	for i := range echoes {
		str, err := conn.OpenStreamSync(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := str.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
			t.Fatal(err)
		}
		msg := []byte{'h', 'e', 'l', 'l', 'o', byte('0' + i)}
		if _, err := str.Write(msg); err != nil {
			t.Fatal(err)
		}
		str.Close()
		got, err := io.ReadAll(str)
		if err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("echo %d = %q, %v; want %q", i, got, err, msg)
		}
	}
	conn.CloseWithError(0, "done")

	if f := failure.Load(); f != nil {
		t.Fatal(f)
	}
	if routed.Load() < echoes {
		t.Fatalf("%d client packets carried a server-issued DCID, want at least %d", routed.Load(), echoes)
	}
	t.Logf("%d client packets routed by DCID, %d unroutable", routed.Load(), unroutable.Load())
}

func echoServer(ln *quic.Listener) {
	for {
		conn, err := ln.Accept(context.Background())
		if err != nil {
			return
		}
		go func() {
			for {
				str, err := conn.AcceptStream(context.Background())
				if err != nil {
					return
				}
				go func() {
					_, _ = io.Copy(str, str)
					str.Close()
				}()
			}
		}()
	}
}

func mustListenUDP(tb testing.TB) *net.UDPConn {
	tb.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatalf("listen udp: %v", err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// mustRelay forwards datagrams between one client and server, calling
// inspect on each client datagram first, and returns the address the client
// dials.
func mustRelay(tb testing.TB, server net.Addr, inspect func([]byte)) net.Addr {
	tb.Helper()
	front := mustListenUDP(tb)
	back := mustListenUDP(tb)
	var mu sync.Mutex
	var client net.Addr
	go func() {
		buf := make([]byte, 65535)
		for {
			n, from, err := front.ReadFrom(buf)
			if err != nil {
				return
			}
			mu.Lock()
			client = from
			mu.Unlock()
			inspect(buf[:n])
			_, _ = back.WriteTo(buf[:n], server)
		}
	}()
	go func() {
		buf := make([]byte, 65535)
		for {
			n, _, err := back.ReadFrom(buf)
			if err != nil {
				return
			}
			mu.Lock()
			to := client
			mu.Unlock()
			if to != nil {
				_, _ = front.WriteTo(buf[:n], to)
			}
		}
	}()
	return front.LocalAddr()
}

// mustTLSConfigs returns a server config with a fresh self-signed
// certificate and a client config that trusts it.
func mustTLSConfigs(tb testing.TB) (server, client *tls.Config) {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "spooky.test"},
		DNSNames:     []string{"spooky.test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	server = &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		NextProtos:   []string{"spooky-test"},
	}
	client = &tls.Config{RootCAs: pool, ServerName: "spooky.test", NextProtos: []string{"spooky-test"}}
	return server, client
}
