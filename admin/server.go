package admin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/spooky-lb/spooky/config"
)

// Limits of the HTTP server. The clients are the CLI and scripts on the
// same host, so they are tight: a slow or stuck client cannot hold the
// daemon's resources.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	// requestTimeout bounds one call into the Daemon; a reload applies a
	// whole configuration to every tier, the slowest call there is.
	requestTimeout = time.Minute
	// writeTimeout leaves the handler its requestTimeout, then time to
	// write the answer.
	writeTimeout   = requestTimeout + 10*time.Second
	idleTimeout    = time.Minute
	maxHeaderBytes = 16 << 10
	// MaxBodyBytes bounds a request body.
	MaxBodyBytes = 64 << 10
)

// Server serves the admin API for one daemon.
type Server struct {
	d    Daemon
	log  *slog.Logger
	ln   net.Listener
	srv  *http.Server
	addr string
	// socket is the unix socket's path and file, removed on Close if it is
	// still ours; empty for TCP.
	socket   string
	socketFI os.FileInfo
	once     sync.Once
}

// Listen opens the admin API's socket as cfg says: the unix socket
// cfg.Socket (if both are empty, config.DefaultAdminSocket) or the
// loopback address cfg.Listen. It refuses to take over a socket another
// daemon serves on, to remove anything at cfg.Socket that is not a stale
// socket, and to listen on anything but a loopback IP. Serve then answers
// requests by calling d. If log is nil, nothing is logged.
func Listen(cfg config.AdminConfig, d Daemon, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{d: d, log: log}
	switch {
	case cfg.Listen != "" && cfg.Socket != "":
		return nil, errors.New("admin: set socket or listen, not both")
	case cfg.Listen != "":
		ln, err := listenTCP(cfg.Listen)
		if err != nil {
			return nil, err
		}
		s.ln, s.addr = ln, ln.Addr().String()
	default:
		path := cfg.Socket
		if path == "" {
			path = config.DefaultAdminSocket
		}
		ln, fi, err := listenUnix(path)
		if err != nil {
			return nil, err
		}
		s.ln, s.addr, s.socket, s.socketFI = ln, path, path, fi
	}
	s.srv = &http.Server{
		Handler:           s.handler(),
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, peerKey{}, peerOf(c))
		},
	}
	return s, nil
}

// Addr returns where the server listens: the socket's path or the TCP
// address (with the port chosen, if the configuration said 0). Dial takes
// it as is.
func (s *Server) Addr() string { return s.addr }

// Serve answers requests until Close. It returns nil after Close.
func (s *Server) Serve() error {
	s.log.Info("admin api serving", "addr", s.addr)
	err := s.srv.Serve(s.ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("admin api: %w", err)
}

// Close stops serving, closes every connection and removes the socket,
// unless something else has replaced it meanwhile.
func (s *Server) Close() error {
	var err error
	s.once.Do(func() {
		err = s.srv.Close()
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		// Serve was perhaps never called, leaving the listener open.
		s.ln.Close()
		if s.socket != "" {
			if fi, lerr := os.Lstat(s.socket); lerr == nil && os.SameFile(fi, s.socketFI) {
				if rerr := os.Remove(s.socket); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
					err = errors.Join(err, fmt.Errorf("admin socket: %w", rerr))
				}
			}
		}
	})
	return err
}

type peerKey struct{}

// peer returns who sent r, for the audit log.
func peer(r *http.Request) string {
	p, _ := r.Context().Value(peerKey{}).(string)
	return p
}
