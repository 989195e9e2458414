package l7

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// sockets are what a service binds on its address: the UDP socket with its
// QUIC transport and, with TCP on, the TCP listener. A reload that changes
// listener settings but not the address keeps them, so the connections of
// the old listeners keep their packets: a second UDP socket on the same
// port (SO_REUSEPORT) would have the kernel hash part of their datagrams to
// it, where no connection knows their connection IDs.
type sockets struct {
	udp *udpSocket
	tcp *tcpFront // nil without TCP
}

// udpSocket is a UDP socket and the QUIC transport on it. Every generation
// of listeners on it holds a reference; the last one to finish closes it,
// so a generation replaced twice within the grace keeps its connections.
type udpSocket struct {
	conn  *net.UDPConn
	tr    *quic.Transport
	users atomic.Int32
}

func (u *udpSocket) close() {
	_ = u.tr.Close()
	_ = u.conn.Close()
}

func (u *udpSocket) release() {
	if u.users.Add(-1) == 0 {
		u.close()
	}
}

// bindUDP binds sc's UDP address and sets up the QUIC transport on it.
func (s *Server) bindUDP(sc ServiceConfig) (*sockets, error) {
	ua, err := net.ResolveUDPAddr("udp", sc.Address)
	if err != nil {
		return nil, fmt.Errorf("service %s: resolve %s: %w", sc.Name, sc.Address, err)
	}
	conn, err := net.ListenUDP("udp", ua)
	if err != nil {
		return nil, fmt.Errorf("service %s: listen udp %s: %w", sc.Name, sc.Address, err)
	}
	gen := sc.ConnectionIDGenerator
	if gen == nil {
		gen = s.cidGen
	}
	tr := &quic.Transport{Conn: conn, ConnectionIDGenerator: gen, ConnectionIDLength: s.cidLen}
	return &sockets{udp: &udpSocket{conn: conn, tr: tr}}, nil
}

// bind binds everything sc needs: UDP and, with sc.TCP, TCP on the same
// IP and port (so Alt-Svc can name just the port, RFC 7838 §3).
func (s *Server) bind(sc ServiceConfig) (*sockets, error) {
	so, err := s.bindUDP(sc)
	if err != nil {
		return nil, err
	}
	if sc.TCP {
		if so.tcp, err = bindTCP(sc, so.port()); err != nil {
			so.close()
			return nil, err
		}
	}
	return so, nil
}

func (so *sockets) port() int { return so.udp.conn.LocalAddr().(*net.UDPAddr).Port }

// close closes sockets no generation uses: the transport, the UDP socket
// and the TCP listener.
func (so *sockets) close() {
	if so.tcp != nil {
		so.tcp.close()
	}
	so.udp.close()
}

// tcpFront accepts TCP connections and hands each to the http.Server of
// the listeners generation that is current, so a reload can replace the
// server without closing the listening socket.
type tcpFront struct {
	ln     net.Listener
	target atomic.Pointer[connQueue]
	once   sync.Once
	done   sync.WaitGroup
}

// bindTCP listens on sc's IP and port and starts accepting.
func bindTCP(sc ServiceConfig, port int) (*tcpFront, error) {
	host, _, _ := net.SplitHostPort(sc.Address)
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("service %s: listen tcp %s: %w", sc.Name, addr, err)
	}
	f := &tcpFront{ln: ln}
	f.done.Go(f.run)
	return f, nil
}

func (f *tcpFront) run() {
	var backoff time.Duration
	for {
		c, err := f.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of descriptors and the like: back off as net/http does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		if q := f.target.Load(); q == nil || !q.push(c) {
			_ = c.Close()
		}
	}
}

// close stops accepting; connections already handed on are not touched.
func (f *tcpFront) close() {
	f.once.Do(func() { _ = f.ln.Close() })
	f.done.Wait()
}

// connQueue is a net.Listener fed by a tcpFront.
type connQueue struct {
	addr net.Addr
	ch   chan net.Conn
	once sync.Once
	shut chan struct{}
}

func newConnQueue(addr net.Addr) *connQueue {
	return &connQueue{addr: addr, ch: make(chan net.Conn), shut: make(chan struct{})}
}

// push hands c to the server; false if the queue was closed first.
func (q *connQueue) push(c net.Conn) bool {
	select {
	case q.ch <- c:
		return true
	case <-q.shut:
		return false
	}
}

func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.ch:
		return c, nil
	case <-q.shut:
		return nil, net.ErrClosed
	}
}

func (q *connQueue) Close() error {
	q.once.Do(func() { close(q.shut) })
	return nil
}

func (q *connQueue) Addr() net.Addr { return q.addr }

// listeners are one generation of a service's servers: the QUIC listener,
// the HTTP/3 server and, with TCP, the HTTP/1.1 and HTTP/2 server, built
// with the listener settings of one config on the service's sockets. A
// reload that changes those settings starts a new generation and retires
// the old one, which finishes its connections.
type listeners struct {
	socks *sockets
	ln    http3.QUICListener
	h3    *http3.Server
	h1    *http.Server // nil without TCP
	done  sync.WaitGroup

	// ownsTCP says the generation closes the TCP listener when it stops
	// accepting: it was not handed on to a successor.
	ownsTCP atomic.Bool
	// draining is set when the server shuts down: new QUIC connections
	// are refused.
	draining atomic.Bool
	released sync.Once // the generation's reference to the UDP socket
	// tunnels are the WebSockets and CONNECT tunnels opened on the
	// generation's connections (tunnel.go).
	tunnels tunnelSet
}

// listen starts a generation of svc with sc's listener settings on so.
// Only the QUIC listen can fail, before anything was started.
func (s *Server) listen(svc *service, sc ServiceConfig, so *sockets) (*listeners, error) {
	l := &listeners{socks: so}
	l.ownsTCP.Store(true)
	// Datagrams (RFC 9221, HTTP Datagrams RFC 9297) carry CONNECT-UDP
	// (connectudp.go); a reload may allow it on a route at any time.
	qconf := &quic.Config{MaxIdleTimeout: sc.IdleTimeout, Allow0RTT: sc.Allow0RTT, EnableDatagrams: true}
	qconf.GetConfigForClient = func(*quic.ClientInfo) (*quic.Config, error) {
		if l.draining.Load() {
			return nil, errDraining
		}
		return qconf, nil
	}
	// One tls.Config per service for every generation: they share session
	// ticket keys, so a client resumes (and may use 0-RTT) across reloads.
	var err error
	if sc.Allow0RTT {
		l.ln, err = so.udp.tr.ListenEarly(svc.quicTLS, qconf)
	} else {
		l.ln, err = so.udp.tr.Listen(svc.quicTLS, qconf)
	}
	if err != nil {
		return nil, fmt.Errorf("service %s: listen quic: %w", sc.Name, err)
	}
	so.udp.users.Add(1)
	obs := svc.obs
	l.h3 = &http3.Server{
		Handler:         svc,
		IdleTimeout:     sc.IdleTimeout,
		MaxHeaderBytes:  sc.MaxHeaderBytes,
		Logger:          svc.log,
		EnableDatagrams: true,
		ConnContext: func(ctx context.Context, c *quic.Conn) context.Context {
			if obs != nil {
				obs.ConnOpened(svc.name, ProtoQUIC)
				context.AfterFunc(c.Context(), func() { obs.ConnClosed(svc.name, ProtoQUIC) })
			}
			return context.WithValue(context.WithValue(ctx, connKey{}, c), tunnelGenKey{}, &l.tunnels)
		},
	}
	l.done.Go(func() {
		if err := l.h3.ServeListener(l.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			svc.log.Error("http3 server stopped", "error", err)
		}
	})
	if so.tcp != nil {
		altSvc := fmt.Sprintf(`h3=":%d"; ma=86400`, so.port())
		// net/http edits the config it serves with (HTTP/2 setup), so each
		// generation has its own copy; the copies share the session ticket
		// keys that buildService initialised.
		tc := svc.tcpTLS.Clone()
		l.h1 = &http.Server{
			Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				// RFC 7838 §3: advertise the HTTP/3 endpoint on the same port.
				w.Header().Set("Alt-Svc", altSvc)
				if closeAfter(r) {
					w.Header().Set("Connection", "close")
				}
				svc.ServeHTTP(w, r)
			}),
			TLSConfig:         tc,
			IdleTimeout:       sc.IdleTimeout,
			ReadHeaderTimeout: 10 * time.Second,
			MaxHeaderBytes:    sc.MaxHeaderBytes,
			ErrorLog:          slog.NewLogLogger(svc.log.Handler(), slog.LevelDebug),
			ConnContext: func(ctx context.Context, _ net.Conn) context.Context {
				return context.WithValue(ctx, tunnelGenKey{}, &l.tunnels)
			},
		}
		if obs != nil {
			l.h1.ConnState = func(_ net.Conn, st http.ConnState) {
				switch st {
				case http.StateNew:
					obs.ConnOpened(svc.name, ProtoTCP)
				case http.StateClosed, http.StateHijacked:
					obs.ConnClosed(svc.name, ProtoTCP)
				}
			}
		}
		q := newConnQueue(so.tcp.ln.Addr())
		tl := tls.NewListener(q, tc)
		l.done.Go(func() {
			if err := l.h1.Serve(tl); err != nil && !errors.Is(err, http.ErrServerClosed) {
				svc.log.Error("tcp server stopped", "error", err)
			}
		})
		// From here new TCP connections go to this generation.
		so.tcp.target.Store(q)
		noteH2WebSockets(svc.log)
	}
	svc.log.Info("l7 service listening", "address", so.udp.conn.LocalAddr().String(), "tcp", sc.TCP, "0rtt", sc.Allow0RTT, "idle_timeout", sc.IdleTimeout)
	return l, nil
}

// stopAccepting refuses new connections (and handshakes in progress) and
// closes a TCP listener the generation did not hand on; accepted
// connections live on.
func (l *listeners) stopAccepting() {
	_ = l.ln.Close()
	l.stopTCP()
}

func (l *listeners) stopTCP() {
	if l.socks.tcp != nil && l.ownsTCP.Load() {
		l.socks.tcp.close()
	}
}

// shutdown sends GOAWAY (RFC 9114 §5.2; HTTP/2 GOAWAY; HTTP/1.1
// Connection: close), waits for requests in flight until ctx ends, then
// closes what the generation owns. Requests sent after GOAWAY are reset
// with H3_REQUEST_REJECTED by the HTTP/3 server.
//
// With refuse (the server is going away), new QUIC connections are
// refused with CONNECTION_REFUSED (RFC 9000 §20.1) rather than silence: a
// client told to go away on its connection retries on a new one and must
// learn at once that this server is gone, not after its handshake timeout;
// the QUIC listener stays open until the end so that refusals can be
// sent. Without refuse (a reload retiring the generation), the listener
// closes at once, handing the socket to its successor.
func (l *listeners) shutdown(ctx context.Context, refuse bool) error {
	if refuse {
		l.draining.Store(true)
		l.done.Go(l.refuseAccepted)
		l.stopTCP()
	} else {
		l.stopAccepting()
	}
	var wg sync.WaitGroup
	var h3err, h1err error
	wg.Go(func() { h3err = l.h3.Shutdown(ctx) })
	if l.h1 != nil {
		wg.Go(func() { h1err = l.h1.Shutdown(ctx) })
	}
	// Tunnels may finish within the drain; at its end they are closed
	// (net/http's Shutdown does not track hijacked connections).
	wg.Go(func() { l.tunnels.drain(ctx) })
	wg.Wait()
	l.close()
	return errors.Join(h3err, h1err)
}

// close aborts everything of the generation at once and gives up its
// reference to the UDP socket, closing it if no other generation uses it.
func (l *listeners) close() {
	l.tunnels.closeAll()
	_ = l.h3.Close()
	if l.h1 != nil {
		_ = l.h1.Close()
	}
	l.stopAccepting()
	l.done.Wait()
	l.released.Do(l.socks.udp.release)
}

// errDraining refuses new connections once shutdown has begun.
var errDraining = errors.New("service shutting down")

// refuseAccepted closes connections whose handshake was under way when
// shutdown began: the HTTP/3 server no longer accepts them, and they would
// otherwise wait, unserved, for the end of the grace. It returns when the
// listener closes.
func (l *listeners) refuseAccepted() {
	for {
		c, err := l.ln.Accept(context.Background())
		if err != nil {
			return
		}
		_ = c.CloseWithError(quic.ApplicationErrorCode(http3.ErrCodeNoError), "shutting down")
	}
}
