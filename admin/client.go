package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// Client talks to a daemon's admin API.
type Client struct {
	addr string
	base string
	hc   *http.Client
}

// maxAnswerBytes bounds what the client reads of an answer.
const maxAnswerBytes = 64 << 20

// Dial returns a client of the admin API at addr: a path (anything with a
// "/") is a unix socket, anything else a TCP host:port. It does not
// connect until the first call; calls return an error wrapping ErrNoDaemon
// if nobody answers at addr.
func Dial(addr string) (*Client, error) {
	c := &Client{addr: addr}
	tr := &http.Transport{
		MaxIdleConns:          2,
		IdleConnTimeout:       30 * time.Second,
		ResponseHeaderTimeout: writeTimeout,
		DisableCompression:    true,
	}
	if strings.Contains(addr, "/") {
		d := net.Dialer{Timeout: 5 * time.Second}
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", addr)
		}
		// The host is only the Host header; the socket is what counts.
		c.base = "http://localhost"
	} else {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("admin address %q: want a socket path or host:port: %w", addr, err)
		}
		d := net.Dialer{Timeout: 5 * time.Second}
		tr.DialContext = d.DialContext
		c.base = "http://" + addr
	}
	c.hc = &http.Client{Transport: tr}
	return c, nil
}

// Addr returns the address the client was dialled with.
func (c *Client) Addr() string { return c.addr }

// Close releases idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// Status returns the daemon's status.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var st Status
	return &st, c.do(ctx, http.MethodGet, "/v1/status", nil, &st)
}

// Backends returns the status of one service and the pools it uses, or
// of everything if service is empty. An unknown service returns an error
// wrapping ErrUnknownService.
func (c *Client) Backends(ctx context.Context, service string) (*Status, error) {
	path := "/v1/backends"
	if service != "" {
		path += "?service=" + url.QueryEscape(service)
	}
	var st Status
	return &st, c.do(ctx, http.MethodGet, path, nil, &st)
}

// Config returns the configuration in force as YAML (see EncodeConfig).
func (c *Client) Config(ctx context.Context) ([]byte, error) {
	var b []byte
	return b, c.do(ctx, http.MethodGet, "/v1/config", nil, &b)
}

// Drain drains target, or undrains it if drain is false, and returns its
// progress right after. An unknown target returns an error wrapping
// ErrUnknownTarget.
func (c *Client) Drain(ctx context.Context, target string, drain bool) (*DrainProgress, error) {
	var p DrainProgress
	return &p, c.do(ctx, http.MethodPost, "/v1/drain", DrainRequest{Target: target, Drain: &drain}, &p)
}

// DrainAll drains every backend and upstream and withdraws every BGP
// route, or (drain false) undoes that.
func (c *Client) DrainAll(ctx context.Context, drain bool) (*DrainAllResult, error) {
	var res DrainAllResult
	return &res, c.do(ctx, http.MethodPost, "/v1/drain", DrainRequest{All: true, Drain: &drain}, &res)
}

// DrainProgress returns how far a drain of target has come.
func (c *Client) DrainProgress(ctx context.Context, target string) (*DrainProgress, error) {
	var p DrainProgress
	return &p, c.do(ctx, http.MethodGet, "/v1/drain?target="+url.QueryEscape(target), nil, &p)
}

// Reload asks the daemon to load its configuration file again. A file
// with problems returns an *Error whose problems Problems(err) lists.
func (c *Client) Reload(ctx context.Context) (*ReloadResult, error) {
	var res ReloadResult
	return &res, c.do(ctx, http.MethodPost, "/v1/reload", struct{}{}, &res)
}

// do sends a request with body (JSON, if not nil) and decodes the answer
// into out (a *[]byte takes it raw).
func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return c.connError(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes))
	if err != nil {
		return fmt.Errorf("admin api at %s: read answer: %w", c.addr, err)
	}
	if resp.StatusCode/100 != 2 {
		e := &Error{StatusCode: resp.StatusCode}
		if json.Unmarshal(data, &e.ErrorBody) != nil || e.ErrorBody.Error == "" {
			e.ErrorBody = ErrorBody{Error: fmt.Sprintf("admin api at %s: HTTP %s: %s", c.addr, resp.Status, bytes.TrimSpace(data))}
		}
		return e
	}
	if raw, ok := out.(*[]byte); ok {
		*raw = data
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("admin api at %s: decode answer: %w", c.addr, err)
	}
	return nil
}

// connError names the usual reasons a daemon cannot be reached.
func (c *Client) connError(err error) error {
	switch {
	case errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("%w at %s", ErrNoDaemon, c.addr)
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return fmt.Errorf("admin socket %s: permission denied (mode 0600: only the daemon's user may connect; try sudo)", c.addr)
	}
	return fmt.Errorf("admin api at %s: %w", c.addr, err)
}
