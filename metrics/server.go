package metrics

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"
)

// Probe paths served beside the metrics.
const (
	// HealthzPath answers 200 while the process runs (liveness).
	HealthzPath = "/healthz"
	// ReadyzPath answers 200 once the daemon is ready, 503 before
	// (readiness).
	ReadyzPath = "/readyz"
)

// Timeouts of the metrics server. A scrape reads BPF maps and the health
// registry, which takes milliseconds; the limits only keep a stuck or
// slow client from holding a connection.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	writeTimeout      = 30 * time.Second
	idleTimeout       = 2 * time.Minute
)

// Server serves the metrics and the liveness and readiness probes on one
// listener.
type Server struct {
	srv  *http.Server
	ln   net.Listener
	done chan struct{}
	err  error // Serve's error, set before done is closed
}

// Serve listens on listen (host:port; port 0 picks one) and serves the
// metrics at path, HealthzPath and ReadyzPath. ready says whether the
// daemon is ready (the daemon answers nil once the first config is
// applied); /readyz answers 503 with its error until then. If ready is
// nil, /readyz always answers 200.
func (m *Metrics) Serve(listen, path string, ready func() error) (*Server, error) {
	if !strings.HasPrefix(path, "/") {
		return nil, fmt.Errorf("serve metrics: path %q does not start with /", path)
	}
	if path == HealthzPath || path == ReadyzPath {
		return nil, fmt.Errorf("serve metrics: path %q is taken by a probe", path)
	}
	metrics := m.Handler()
	// Routed by hand rather than by http.ServeMux, whose patterns would
	// read "{", "}" or a space in the configured path as syntax.
	routes := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case path:
			metrics.ServeHTTP(w, r)
		case HealthzPath:
			writeText(w, http.StatusOK, "ok")
		case ReadyzPath:
			if ready != nil {
				if err := ready(); err != nil {
					writeText(w, http.StatusServiceUnavailable, "not ready: "+err.Error())
					return
				}
			}
			writeText(w, http.StatusOK, "ready")
		default:
			http.NotFound(w, r)
		}
	})
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("serve metrics on %s: %w", listen, err)
	}
	s := &Server{
		srv: &http.Server{
			Handler:           routes,
			ReadHeaderTimeout: readHeaderTimeout,
			ReadTimeout:       readTimeout,
			WriteTimeout:      writeTimeout,
			IdleTimeout:       idleTimeout,
		},
		ln:   ln,
		done: make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			s.err = err
			m.log.Error("serve metrics", "listen", ln.Addr().String(), "error", err)
		}
	}()
	m.log.Info("serving metrics", "listen", ln.Addr().String(), "path", path)
	return s, nil
}

// Addr returns the address the server listens on (with the port chosen
// when listen asked for port 0).
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Close stops the server, closing its listener and connections, and waits
// for it to end. It returns the error that ended serving early, if any.
func (s *Server) Close() error {
	err := s.srv.Close()
	<-s.done
	if s.err != nil {
		return fmt.Errorf("serve metrics: %w", s.err)
	}
	if err != nil {
		return fmt.Errorf("close metrics server: %w", err)
	}
	return nil
}

// writeText writes a one-line plain-text answer.
func writeText(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	fmt.Fprintln(w, msg)
}
