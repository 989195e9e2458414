package admin_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spooky-lb/spooky/admin"
	"github.com/spooky-lb/spooky/config"
)

// mustSocketDir returns a fresh directory with a short path: a unix socket
// path has at most 107 bytes, and t.TempDir's names grow with the test's.
func mustSocketDir(tb testing.TB) string {
	tb.Helper()
	dir, err := os.MkdirTemp("", "adm")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// mustServe serves d's admin API as cfg says until the test ends, and
// returns the server and a client of it.
func mustServe(tb testing.TB, cfg config.AdminConfig, d admin.Daemon) (*admin.Server, *admin.Client) {
	tb.Helper()
	srv, err := admin.Listen(cfg, d, nil)
	if err != nil {
		tb.Fatalf("listen: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve() }()
	tb.Cleanup(func() {
		if err := srv.Close(); err != nil {
			tb.Errorf("close: %v", err)
		}
		if err := <-done; err != nil {
			tb.Errorf("serve: %v", err)
		}
	})
	c, err := admin.Dial(srv.Addr())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(c.Close)
	return srv, c
}

// mustServeSocket serves d on a unix socket in a fresh directory.
func mustServeSocket(tb testing.TB, d admin.Daemon) (*admin.Server, *admin.Client) {
	tb.Helper()
	return mustServe(tb, config.AdminConfig{Socket: filepath.Join(mustSocketDir(tb), "admin.sock")}, d)
}

// rawAnswer is an HTTP answer as a test sees it.
type rawAnswer struct {
	status int
	header http.Header
	body   []byte
}

// errorBody decodes the answer as an error body.
func (a rawAnswer) errorBody(tb testing.TB) admin.ErrorBody {
	tb.Helper()
	var eb admin.ErrorBody
	if err := json.Unmarshal(a.body, &eb); err != nil {
		tb.Fatalf("HTTP %d answer is not a JSON error body: %v: %s", a.status, err, a.body)
	}
	return eb
}

// mustDo sends a raw request to the unix socket at path, bypassing the
// client, so tests can send what the client never would.
func mustDo(tb testing.TB, path, method, target string, body io.Reader, header http.Header) rawAnswer {
	tb.Helper()
	hc := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}
	defer hc.CloseIdleConnections()
	return mustDoWith(tb, hc, "http://localhost", method, target, body, header)
}

func mustDoWith(tb testing.TB, hc *http.Client, base, method, target string, body io.Reader, header http.Header) rawAnswer {
	tb.Helper()
	req, err := http.NewRequest(method, base+target, body)
	if err != nil {
		tb.Fatal(err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	if h := header.Get("Host"); h != "" {
		req.Host = h
	}
	resp, err := hc.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return rawAnswer{status: resp.StatusCode, header: resp.Header, body: b}
}

// wantErrorAnswer checks an answer's status, code and that its message
// contains want.
func wantErrorAnswer(tb testing.TB, a rawAnswer, status int, code, want string) {
	tb.Helper()
	eb := a.errorBody(tb)
	if a.status != status || eb.Code != code || !strings.Contains(eb.Error, want) {
		tb.Errorf("got HTTP %d %+v; want HTTP %d, code %s, an error containing %q", a.status, eb, status, code, want)
	}
	if ct := a.header.Get("Content-Type"); ct != "application/json" {
		tb.Errorf("Content-Type %q, want application/json", ct)
	}
}
