package metrics

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
)

// mustServe starts m's server on a free loopback port and closes it when
// the test ends.
func mustServe(tb testing.TB, m *Metrics, path string, ready func() error) *Server {
	tb.Helper()
	s, err := m.Serve("127.0.0.1:0", path, ready)
	if err != nil {
		tb.Fatalf("serve: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("close: %v", err)
		}
	})
	return s
}

// mustGet fetches path from s and returns the status and body.
func mustGet(tb testing.TB, s *Server, path string) (int, string) {
	tb.Helper()
	resp, err := http.Get("http://" + s.Addr().String() + path)
	if err != nil {
		tb.Fatalf("get %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("read %s: %v", path, err)
	}
	return resp.StatusCode, string(body)
}

func TestServerAnswersMetricsAndProbes(t *testing.T) {
	m := New(Options{})
	m.ObserveReload(true, "aaaa")
	var readyErr atomic.Pointer[error]
	notYet := errors.New("no config applied yet")
	readyErr.Store(&notYet)
	s := mustServe(t, m, "/custom/metrics", func() error { return *readyErr.Load() })

	t.Run("the metrics are served at the configured path", func(t *testing.T) {
		code, body := mustGet(t, s, "/custom/metrics")
		if code != http.StatusOK {
			t.Fatalf("status %d", code)
		}
		if got := mustValue(t, mustParse(t, body), "spooky_config_info", l("sha256", "aaaa")); got != 1 {
			t.Errorf("spooky_config_info = %v, want 1", got)
		}
	})
	t.Run("healthz says the process is alive", func(t *testing.T) {
		if code, body := mustGet(t, s, "/healthz"); code != http.StatusOK || strings.TrimSpace(body) != "ok" {
			t.Errorf("healthz = %d %q, want 200 ok", code, body)
		}
	})
	t.Run("readyz is 503 with the reason before the daemon is ready", func(t *testing.T) {
		code, body := mustGet(t, s, "/readyz")
		if code != http.StatusServiceUnavailable || !strings.Contains(body, "no config applied yet") {
			t.Errorf("readyz = %d %q, want 503 naming the reason", code, body)
		}
	})
	t.Run("readyz is 200 once the daemon is ready", func(t *testing.T) {
		var none error
		readyErr.Store(&none)
		if code, _ := mustGet(t, s, "/readyz"); code != http.StatusOK {
			t.Errorf("readyz = %d, want 200", code)
		}
	})
	t.Run("other paths are not found", func(t *testing.T) {
		for _, p := range []string{"/metrics", "/", "/custom/metrics/x"} {
			if code, _ := mustGet(t, s, p); code != http.StatusNotFound {
				t.Errorf("%s = %d, want 404", p, code)
			}
		}
	})
}

func TestServerWithoutReadinessIsReady(t *testing.T) {
	s := mustServe(t, New(Options{}), "/metrics", nil)
	if code, _ := mustGet(t, s, "/readyz"); code != http.StatusOK {
		t.Errorf("readyz = %d with no readiness func, want 200", code)
	}
}

func TestServeRejects(t *testing.T) {
	tests := []struct {
		name, listen, path, want string
	}{
		{"a path without a leading slash", "127.0.0.1:0", "metrics", "does not start with /"},
		{"the healthz path", "127.0.0.1:0", "/healthz", "taken by a probe"},
		{"the readyz path", "127.0.0.1:0", "/readyz", "taken by a probe"},
		{"an address it cannot listen on", "198.51.100.1:0", "/metrics", "serve metrics on 198.51.100.1:0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(Options{}).Serve(tt.listen, tt.path, nil)
			if err == nil {
				s.Close()
				t.Fatal("Serve succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestServerCloseStopsListening(t *testing.T) {
	s, err := New(Options{}).Serve("127.0.0.1:0", "/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := s.Addr().String()
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if resp, err := http.Get("http://" + addr + "/healthz"); err == nil {
		resp.Body.Close()
		t.Error("the server still answers after Close")
	}
}
