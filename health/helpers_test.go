package health

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// mustNotLeak fails the test if, once its cleanups have run, more
// goroutines or file descriptors are open than when it began. Call it
// first, so its cleanup runs after the servers' (cleanups run last in,
// first out). Goroutines end asynchronously, so it polls with a deadline.
func mustNotLeak(tb testing.TB) {
	tb.Helper()
	g0, fd0 := runtime.NumGoroutine(), openFDs(tb)
	tb.Cleanup(func() {
		deadline := time.Now().Add(10 * time.Second)
		for {
			g, fd := runtime.NumGoroutine(), openFDs(tb)
			if g <= g0 && fd <= fd0 {
				return
			}
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				buf = buf[:runtime.Stack(buf, true)]
				tb.Errorf("leak: %d goroutines (was %d), %d file descriptors (was %d)\n%s", g, g0, fd, fd0, buf)
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

func openFDs(tb testing.TB) int {
	tb.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		tb.Fatalf("count file descriptors: %v", err)
	}
	return len(ents)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// testCert is a self-signed certificate, its own root, for localhost and
// 127.0.0.1, written to files.
type testCert struct {
	certFile string
	tls      tls.Certificate
}

func mustCert(tb testing.TB, name string) testCert {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name},
		DNSNames:              []string{name},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	c := testCert{certFile: filepath.Join(tb.TempDir(), "cert.pem")}
	if err := os.WriteFile(c.certFile, certPEM, 0o600); err != nil {
		tb.Fatal(err)
	}
	c.tls, err = tls.X509KeyPair(certPEM, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}))
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// handler answers every request with a status and body the test can
// change, and counts the requests it answered with each status. A count
// is bumped before the response is written, so it is exact by the time
// the client has the response.
type handler struct {
	mu       sync.Mutex
	status   int
	body     string
	counts   map[int]int
	lastHost string
	lastURI  string
	lastUA   string
	lastProt string
}

func newHandler() *handler {
	return &handler{status: http.StatusOK, body: `{"status": "up"}`, counts: map[int]int{}}
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	st, body := h.status, h.body
	h.counts[st]++
	h.lastHost, h.lastURI, h.lastUA, h.lastProt = r.Host, r.RequestURI, r.UserAgent(), r.Proto
	h.mu.Unlock()
	w.WriteHeader(st)
	fmt.Fprint(w, body)
}

func (h *handler) set(status int, body string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.status, h.body = status, body
}

func (h *handler) count(status int) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.counts[status]
}

func (h *handler) seen() (host, uri, ua, proto string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.lastHost, h.lastURI, h.lastUA, h.lastProt
}

// tcpServer accepts TCP connections on a fixed loopback port and counts
// them; it can be stopped and started again on the same port.
type tcpServer struct {
	tb      testing.TB
	addr    string
	ln      net.Listener
	wg      sync.WaitGroup
	accepts atomic.Int64
}

func mustTCPServer(tb testing.TB) *tcpServer {
	tb.Helper()
	s := &tcpServer{tb: tb, addr: "127.0.0.1:0"}
	s.start()
	tb.Cleanup(s.stop)
	return s
}

func (s *tcpServer) start() {
	s.tb.Helper()
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		s.tb.Fatalf("listen tcp: %v", err)
	}
	s.ln, s.addr = ln, ln.Addr().String()
	s.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.accepts.Add(1)
			c.Close()
		}
	})
}

func (s *tcpServer) stop() {
	if s.ln != nil {
		s.ln.Close()
		s.wg.Wait()
		s.ln = nil
	}
}

// h3Server is a quic-go HTTP/3 server on a fixed loopback UDP port that
// counts the connections it accepts and records how each ended; it can be
// stopped and started again on the same port.
type h3Server struct {
	tb       testing.TB
	addr     string
	cert     testCert
	h        *handler
	srv      *http3.Server
	udp      net.PacketConn
	tr       *quic.Transport
	ln       *quic.EarlyListener
	wg       sync.WaitGroup
	accepted atomic.Int64

	mu     sync.Mutex
	closes map[int64]error // why connection n (from 1) ended, as the server saw it
}

func mustH3Server(tb testing.TB, cert testCert, h *handler) *h3Server {
	tb.Helper()
	s := &h3Server{tb: tb, addr: "127.0.0.1:0", cert: cert, h: h, closes: map[int64]error{}}
	s.start()
	tb.Cleanup(s.stop)
	return s
}

func (s *h3Server) start() {
	s.tb.Helper()
	udp, err := net.ListenPacket("udp", s.addr)
	if err != nil {
		s.tb.Fatalf("listen udp: %v", err)
	}
	s.udp, s.addr = udp, udp.LocalAddr().String()
	s.tr = &quic.Transport{Conn: udp}
	// ListenEarly: a connection is queued for Accept once the server has
	// sent its handshake flight, before the client can finish (and close),
	// so every connection a probe makes is accepted and counted. Listen
	// would drop one that closes before Accept takes it.
	ln, err := s.tr.ListenEarly(http3.ConfigureTLSConfig(&tls.Config{Certificates: []tls.Certificate{s.cert.tls}}), &quic.Config{})
	if err != nil {
		s.tb.Fatalf("listen quic: %v", err)
	}
	s.srv = &http3.Server{Handler: s.h}
	s.ln = ln
	s.wg.Go(func() {
		for {
			c, err := ln.Accept(context.Background())
			if err != nil {
				return
			}
			n := s.accepted.Add(1)
			s.wg.Go(func() { _ = s.srv.ServeQUICConn(c) })
			s.wg.Go(func() {
				<-c.Context().Done()
				s.mu.Lock()
				s.closes[n] = context.Cause(c.Context())
				s.mu.Unlock()
			})
		}
	})
}

// closeOf returns why the n-th accepted connection ended, or nil while it
// has not.
func (s *h3Server) closeOf(n int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closes[n]
}

func (s *h3Server) stop() {
	if s.srv == nil {
		return
	}
	s.srv.Close()
	s.ln.Close()
	s.tr.Close()
	s.udp.Close()
	s.wg.Wait()
	s.srv = nil
}

// silentTCP accepts connections and never answers; silentUDP reads
// datagrams and never answers. Both stand for a server that hangs.
func silentTCP(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	})
	tb.Cleanup(func() {
		ln.Close()
		wg.Wait()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

func silentUDP(tb testing.TB) string {
	tb.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		buf := make([]byte, 2048)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
		}
	})
	tb.Cleanup(func() { pc.Close(); wg.Wait() })
	return pc.LocalAddr().String()
}

// deadAddr returns a loopback address on which nothing listens.
func deadAddr(tb testing.TB, network string) string {
	tb.Helper()
	switch network {
	case "tcp":
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().String()
	default:
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		defer pc.Close()
		return pc.LocalAddr().String()
	}
}

// probeOnce runs p's probe once, as the Checker would.
func probeOnce(tb testing.TB, p Probe) outcome {
	tb.Helper()
	p = p.withDefaults()
	pr, err := newProber(p)
	if err != nil {
		var le *localError
		if !errors.As(err, &le) {
			tb.Fatalf("newProber returned a non-local error: %v", err)
		}
		return outcome{detail: err.Error(), local: true}
	}
	defer pr.close()
	ctx, cancel := context.WithTimeout(context.Background(), p.Timeout)
	defer cancel()
	return pr.probe(ctx)
}

// matches reports whether got has every one of parts, in order.
func matches(got string, parts ...string) bool {
	for _, p := range parts {
		i := strings.Index(got, p)
		if i < 0 {
			return false
		}
		got = got[i+len(p):]
	}
	return true
}
