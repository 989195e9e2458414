package admin_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/spooky-lb/spooky/admin"
	"github.com/spooky-lb/spooky/admin/admintest"
	"github.com/spooky-lb/spooky/config"
)

func TestStatusReachesTheClientAsTheDaemonReportsIt(t *testing.T) {
	d := admintest.New()
	_, c := mustServeSocket(t, d)
	got, err := c.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want, _ := d.Status(context.Background())
	if !reflect.DeepEqual(got, want) {
		t.Errorf("status:\n got %+v\nwant %+v", got, want)
	}
}

func TestStatusJSONUsesTheDocumentedNamesAndRFC3339Times(t *testing.T) {
	srv, _ := mustServeSocket(t, admintest.New())
	a := mustDo(t, srv.Addr(), http.MethodGet, "/v1/status", nil, nil)
	if a.status != http.StatusOK || a.header.Get("Content-Type") != "application/json" {
		t.Fatalf("HTTP %d %s: %s", a.status, a.header.Get("Content-Type"), a.body)
	}
	var st struct {
		Config   map[string]any `json:"config"`
		Services []struct {
			Backends []map[string]any `json:"backends"`
		} `json:"services"`
		Pools []struct {
			Upstreams []map[string]any `json:"upstreams"`
		} `json:"pools"`
	}
	if err := json.Unmarshal(a.body, &st); err != nil {
		t.Fatal(err)
	}
	keys := func(m map[string]any) []string {
		var out []string
		for k := range m {
			out = append(out, k)
		}
		slices.Sort(out)
		return out
	}
	checks := []struct {
		name string
		m    map[string]any
		want []string
	}{
		{"config", st.Config, []string{"last_reload", "loaded_at", "path", "sha256"}},
		{"a failed last reload", st.Config["last_reload"].(map[string]any), []string{"at", "error", "ok"}},
		{"a healthy backend", st.Services[0].Backends[0], []string{"address", "bytes", "name", "packets", "port", "reason", "since", "state", "weight"}},
		{"an unhealthy backend", st.Services[0].Backends[1], []string{"address", "bytes", "name", "packets", "port", "reason", "since", "source", "state", "weight"}},
		{"a never reported upstream", st.Pools[0].Upstreams[0], []string{"breaker", "in_flight", "name", "requests", "state", "weight"}},
		{"an upstream with an open breaker", st.Pools[0].Upstreams[1], []string{"breaker", "in_flight", "name", "reason", "requests", "since", "source", "state", "weight"}},
	}
	for _, c := range checks {
		if got := keys(c.m); !slices.Equal(got, c.want) {
			t.Errorf("%s has keys %v, want %v", c.name, got, c.want)
		}
	}
	if got := st.Config["loaded_at"]; got != "2025-03-01T12:00:00Z" {
		t.Errorf("loaded_at = %v, want RFC 3339 2025-03-01T12:00:00Z", got)
	}
	if got := st.Services[0].Backends[1]["since"]; got != "2025-03-01T12:05:00Z" {
		t.Errorf("since = %v, want RFC 3339 2025-03-01T12:05:00Z", got)
	}
}

func TestBackendsNarrowsTheStatusToOneService(t *testing.T) {
	_, c := mustServeSocket(t, admintest.New())
	ctx := context.Background()
	tests := []struct {
		service       string
		wantServices  []string
		wantPools     []string
		wantUnknownSv bool
	}{
		{service: "", wantServices: []string{"web", "edge"}, wantPools: []string{"api", "static"}},
		{service: "web", wantServices: []string{"web"}, wantPools: nil},
		{service: "edge", wantServices: []string{"edge"}, wantPools: []string{"api"}},
		{service: "nope", wantUnknownSv: true},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("service %q", tt.service), func(t *testing.T) {
			st, err := c.Backends(ctx, tt.service)
			if tt.wantUnknownSv {
				var ae *admin.Error
				if !errors.Is(err, admin.ErrUnknownService) || !errors.As(err, &ae) || ae.StatusCode != http.StatusNotFound ||
					err.Error() != `unknown service "nope"` {
					t.Errorf("err = %v, want HTTP 404 unknown service \"nope\"", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var svcs, pools []string
			for _, s := range st.Services {
				svcs = append(svcs, s.Name)
			}
			for _, p := range st.Pools {
				pools = append(pools, p.Name)
			}
			if !slices.Equal(svcs, tt.wantServices) || !slices.Equal(pools, tt.wantPools) {
				t.Errorf("services %v pools %v, want %v %v", svcs, pools, tt.wantServices, tt.wantPools)
			}
		})
	}
}

func TestDrainAndUndrainChangeTheTargetTheyName(t *testing.T) {
	ctx := context.Background()
	for _, target := range []string{"web/b1", "https://198.18.2.1:8443"} {
		t.Run(target, func(t *testing.T) {
			d := admintest.New()
			_, c := mustServeSocket(t, d)
			p, err := c.Drain(ctx, target, true)
			if err != nil {
				t.Fatal(err)
			}
			if p.Target != target || p.State != "draining" || !p.Done {
				t.Errorf("drain answered %+v, want %s draining and done", p, target)
			}
			if got := stateOf(t, c, target); got != "draining/operator" {
				t.Errorf("after drain, status says %s, want draining/operator", got)
			}
			if p, err = c.DrainProgress(ctx, target); err != nil || p.State != "draining" {
				t.Errorf("progress %+v, %v", p, err)
			}
			if p, err = c.Drain(ctx, target, false); err != nil || p.State != "healthy" {
				t.Fatalf("undrain answered %+v, %v; want healthy", p, err)
			}
			if got := stateOf(t, c, target); got != "healthy/" {
				t.Errorf("after undrain, status says %s, want healthy", got)
			}
		})
	}
}

// stateOf returns "state/source" of target in c's status.
func stateOf(tb testing.TB, c *admin.Client, target string) string {
	tb.Helper()
	st, err := c.Status(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	for _, s := range st.Services {
		for _, b := range s.Backends {
			if s.Name+"/"+b.Name == target {
				return b.State + "/" + b.Source
			}
		}
	}
	for _, p := range st.Pools {
		for _, u := range p.Upstreams {
			if u.Name == target {
				return u.State + "/" + u.Source
			}
		}
	}
	tb.Fatalf("%s is not in the status", target)
	return ""
}

func TestAnUnknownDrainTargetIsNotFound(t *testing.T) {
	srv, c := mustServeSocket(t, admintest.New())
	ctx := context.Background()
	calls := map[string]func() error{
		"drain":    func() error { _, err := c.Drain(ctx, "web/b9", true); return err },
		"undrain":  func() error { _, err := c.Drain(ctx, "web/b9", false); return err },
		"progress": func() error { _, err := c.DrainProgress(ctx, "web/b9"); return err },
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			err := call()
			var ae *admin.Error
			if !errors.Is(err, admin.ErrUnknownTarget) || !errors.As(err, &ae) || ae.StatusCode != http.StatusNotFound {
				t.Fatalf("err = %v, want an HTTP 404 wrapping ErrUnknownTarget", err)
			}
			if err.Error() != `unknown target "web/b9"` {
				t.Errorf("message %q, want the daemon's: unknown target \"web/b9\"", err)
			}
		})
	}
	a := mustDo(t, srv.Addr(), http.MethodGet, "/v1/drain?target=web%2Fb9", nil, nil)
	wantErrorAnswer(t, a, http.StatusNotFound, admin.CodeUnknownTarget, `unknown target "web/b9"`)
}

func TestARejectedReloadListsEveryProblem(t *testing.T) {
	_, errs := config.Parse([]byte("services:\n  - name: web\n    address: 198.18.0.300\n    port: 70000\n"), "/etc/spooky/spooky.yaml")
	if len(admin.Problems(errs)) != 3 {
		t.Fatalf("the test's file should have 3 problems, got %v", errs)
	}
	d := admintest.New()
	d.ReloadErr = fmt.Errorf("reload /etc/spooky/spooky.yaml: %w", errs)
	srv, c := mustServeSocket(t, d)

	_, err := c.Reload(context.Background())
	var ae *admin.Error
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusUnprocessableEntity || ae.Code != admin.CodeConfigRejected {
		t.Fatalf("err = %#v, want HTTP 422 config_rejected", err)
	}
	if got, want := admin.Problems(err).Error(), errs.Error(); got != want {
		t.Errorf("problems through the API:\n%s\nwant:\n%s", got, want)
	}
	if !strings.HasPrefix(admin.Problems(err)[0].Error(), "/etc/spooky/spooky.yaml:2:5: ") {
		t.Errorf("first problem %q lacks file:line:col", admin.Problems(err)[0])
	}

	a := mustDo(t, srv.Addr(), http.MethodPost, "/v1/reload", nil, nil)
	var body struct {
		Error    string           `json:"error"`
		Problems []map[string]any `json:"problems"`
	}
	if err := json.Unmarshal(a.body, &body); err != nil || a.status != http.StatusUnprocessableEntity {
		t.Fatalf("HTTP %d %s (%v)", a.status, a.body, err)
	}
	if body.Error != "configuration rejected, 3 problems; the running configuration stays" || len(body.Problems) != 3 {
		t.Errorf("body %+v", body)
	}
	want := map[string]any{"file": "/etc/spooky/spooky.yaml", "line": 3.0, "col": 14.0, "path": "services[0].address",
		"message": `address: "198.18.0.300" is not an IP address`}
	if !reflect.DeepEqual(body.Problems[1], want) {
		t.Errorf("second problem %v, want %v", body.Problems[1], want)
	}
}

func TestASuccessfulReloadSaysWhatChanged(t *testing.T) {
	d := admintest.New()
	d.ReloadResult = admin.ReloadResult{Config: admin.ConfigInfo{Path: "/etc/spooky/spooky.yaml", SHA256: "ab", LoadedAt: admintest.Loaded}, Changes: "service web: backends added b3"}
	_, c := mustServeSocket(t, d)
	res, err := c.Reload(context.Background())
	if err != nil || !reflect.DeepEqual(*res, d.ReloadResult) {
		t.Errorf("reload = %+v, %v; want %+v", res, err, d.ReloadResult)
	}
	if d.Reloads() != 1 {
		t.Errorf("daemon reloaded %d times, want 1", d.Reloads())
	}
}

func TestBadBodiesAreRefusedWithTheProblem(t *testing.T) {
	huge := `{"target": "` + strings.Repeat("a", admin.MaxBodyBytes) + `", "drain": true}`
	tests := []struct {
		name   string
		path   string
		body   string
		status int
		code   string
		want   string
	}{
		{"invalid JSON", "/v1/drain", `{"target": "web/b1", "drain": tru}`, 400, admin.CodeBadRequest, "body: invalid JSON at byte 34: invalid character '}' in literal true"},
		{"truncated JSON", "/v1/drain", `{"target": "web/b1"`, 400, admin.CodeBadRequest, "body: invalid JSON: unexpected end"},
		{"an unknown field", "/v1/drain", `{"target": "web/b1", "drain": true, "force": 1}`, 400, admin.CodeBadRequest, `body: unknown field "force"`},
		{"a missing target", "/v1/drain", `{"drain": true}`, 400, admin.CodeBadRequest, `body: missing "target"`},
		{"an empty target", "/v1/drain", `{"target": "", "drain": true}`, 400, admin.CodeBadRequest, `body: missing "target"`},
		{"a missing drain", "/v1/drain", `{"target": "web/b1"}`, 400, admin.CodeBadRequest, `body: missing "drain" (true to drain, false to undrain)`},
		{"a target of the wrong type", "/v1/drain", `{"target": 5, "drain": true}`, 400, admin.CodeBadRequest, `body: field "target": want a string, got number`},
		{"a drain of the wrong type", "/v1/drain", `{"target": "web/b1", "drain": "yes"}`, 400, admin.CodeBadRequest, `body: field "drain": want true or false, got string`},
		{"a target and all", "/v1/drain", `{"target": "web/b1", "all": true, "drain": true}`, 400, admin.CodeBadRequest, `body: give "target" or "all", not both`},
		{"all without drain", "/v1/drain", `{"all": true}`, 400, admin.CodeBadRequest, `body: missing "drain" (true to drain, false to undrain)`},
		{"an array", "/v1/drain", `[]`, 400, admin.CodeBadRequest, "body: want a JSON object, got array"},
		{"two objects", "/v1/drain", `{"target": "web/b1", "drain": true} {}`, 400, admin.CodeBadRequest, "body: more than one JSON value"},
		{"no body", "/v1/drain", ``, 400, admin.CodeBadRequest, "body: empty; want a JSON object"},
		{"a body over 64 KiB", "/v1/drain", huge, 413, admin.CodeTooLarge, "body: larger than 65536 bytes"},
		{"a reload with a field", "/v1/reload", `{"force": true}`, 400, admin.CodeBadRequest, `body: unknown field "force"`},
		{"a reload over 64 KiB", "/v1/reload", `{"` + strings.Repeat("a", admin.MaxBodyBytes) + `": 1}`, 413, admin.CodeTooLarge, "body: larger than 65536 bytes"},
	}
	d := admintest.New()
	srv, c := mustServeSocket(t, d)
	for _, tt := range tests {
		t.Run(tt.name+" is refused", func(t *testing.T) {
			a := mustDo(t, srv.Addr(), http.MethodPost, tt.path, strings.NewReader(tt.body), http.Header{"Content-Type": {"application/json"}})
			wantErrorAnswer(t, a, tt.status, tt.code, tt.want)
		})
	}
	if got := stateOf(t, c, "web/b1"); got != "healthy/" || d.Reloads() != 0 {
		t.Errorf("after refused requests web/b1 is %s and the daemon reloaded %d times; want healthy, 0", got, d.Reloads())
	}
}

func TestRoutesAnswerWrongMethodsAndPathsInJSON(t *testing.T) {
	srv, _ := mustServeSocket(t, admintest.New())
	tests := []struct {
		method, path string
		status       int
		code, want   string
		allow        string
	}{
		{"DELETE", "/v1/drain", 405, admin.CodeMethodNotAllowed, "DELETE /v1/drain: method not allowed (use GET or POST)", "GET, POST"},
		{"POST", "/v1/status", 405, admin.CodeMethodNotAllowed, "method not allowed (use GET)", "GET"},
		{"GET", "/v1/reload", 405, admin.CodeMethodNotAllowed, "method not allowed (use POST)", "POST"},
		{"PUT", "/v1/config", 405, admin.CodeMethodNotAllowed, "method not allowed (use GET)", "GET"},
		{"GET", "/v1/nope", 404, admin.CodeNotFound, "no such endpoint /v1/nope", ""},
		{"GET", "/v2/status", 404, admin.CodeNotFound, "no such endpoint /v2/status", ""},
		{"GET", "/v1/status?verbose=1", 400, admin.CodeBadRequest, `unknown query parameter "verbose"`, ""},
		{"GET", "/v1/drain", 400, admin.CodeBadRequest, "missing ?target=", ""},
		{"POST", "/v1/reload?now=1", 400, admin.CodeBadRequest, `unknown query parameter "now"`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			a := mustDo(t, srv.Addr(), tt.method, tt.path, nil, nil)
			wantErrorAnswer(t, a, tt.status, tt.code, tt.want)
			if got := a.header.Get("Allow"); got != tt.allow {
				t.Errorf("Allow %q, want %q", got, tt.allow)
			}
		})
	}
}

func TestRequestsFromBrowsersAreRefused(t *testing.T) {
	d := admintest.New()
	srv, c := mustServeSocket(t, d)
	for _, h := range []http.Header{{"Origin": {"https://attacker.example"}}, {"Sec-Fetch-Site": {"cross-site"}}} {
		a := mustDo(t, srv.Addr(), http.MethodPost, "/v1/drain", strings.NewReader(`{"target": "web/b1", "drain": true}`), h)
		wantErrorAnswer(t, a, http.StatusForbidden, admin.CodeForbidden, "requests from web browsers are refused")
	}
	if got := stateOf(t, c, "web/b1"); got != "healthy/" {
		t.Errorf("web/b1 is %s after refused drains", got)
	}
}

func TestConfigIsServedAsYAML(t *testing.T) {
	d := admintest.New()
	cfg, err := config.Load("../examples/spooky.yaml")
	if err != nil {
		t.Fatal(err)
	}
	d.Cfg = cfg
	srv, c := mustServeSocket(t, d)
	got, err := c.Config(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want, _ := admin.EncodeConfig(cfg)
	if string(got) != string(want) {
		t.Errorf("config:\n%s\nwant:\n%s", got, want)
	}
	if a := mustDo(t, srv.Addr(), http.MethodGet, "/v1/config", nil, nil); a.header.Get("Content-Type") != "application/yaml" {
		t.Errorf("Content-Type %q, want application/yaml", a.header.Get("Content-Type"))
	}
}

func TestDrainAllDrainsEveryTargetAndUndrainAllTakesThemBack(t *testing.T) {
	d := admintest.New()
	_, c := mustServeSocket(t, d)
	res, err := c.DrainAll(context.Background(), true)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Drained || res.Targets != 4 {
		t.Errorf("drain --all answered %+v, want drained, 4 targets", res)
	}
	for _, target := range []string{"web/b1", "web/b2", "https://198.18.2.1:8443"} {
		if got := stateOf(t, c, target); !strings.HasPrefix(got, "draining/") {
			t.Errorf("after drain --all %s is %s", target, got)
		}
	}
	if res, err = c.DrainAll(context.Background(), false); err != nil || res.Drained {
		t.Fatalf("undrain --all: %+v, %v", res, err)
	}
	if got := stateOf(t, c, "web/b1"); !strings.HasPrefix(got, "healthy/") {
		t.Errorf("after undrain --all web/b1 is %s", got)
	}
}
