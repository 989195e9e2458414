package l7

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestTransformsRewriteRequests(t *testing.T) {
	for _, tc := range []struct {
		name               string
		tr                 Transforms
		path               string
		wantPath, wantHost string
	}{
		{"a prefix is stripped", Transforms{StripPrefix: "/api"}, "/api/users", "/users", "app.example"},
		{"stripping the whole path leaves /", Transforms{StripPrefix: "/api/"}, "/api", "/", "app.example"},
		{"a path outside the prefix is left alone", Transforms{StripPrefix: "/api"}, "/apix", "/apix", "app.example"},
		{"a regex rewrites the path with groups", Transforms{PathRegex: `^/v1/(.*)$`, PathReplacement: "/v2/$1"}, "/v1/items", "/v2/items", "app.example"},
		{"the host is rewritten", Transforms{Host: "internal.svc"}, "/", "/", "internal.svc"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr, err := newTransformer(tc.tr)
			if err != nil {
				t.Fatal(err)
			}
			r := httptest.NewRequest("GET", "https://app.example"+tc.path, nil)
			tr.request(r)
			if r.URL.Path != tc.wantPath || r.Host != tc.wantHost {
				t.Fatalf("path %q host %q, want %q %q", r.URL.Path, r.Host, tc.wantPath, tc.wantHost)
			}
		})
	}
}

func TestTransformsEndToEnd(t *testing.T) {
	cert := mustCert(t, "app.example.com")
	up := mustUpstream(t, ProtoH1, "u", nil)
	route := Route{Pool: "p", Transforms: Transforms{
		StripPrefix:     "/api",
		Host:            "backend.internal",
		RequestHeaders:  HeaderOps{Set: map[string]string{"X-Set": "s"}, Add: map[string]string{"X-Added": "a"}, Remove: []string{"X-Removed"}},
		ResponseHeaders: HeaderOps{Set: map[string]string{"X-Resp": "r"}, Remove: []string{"X-Seen-Proto"}},
	}}
	s := mustServer(t, oneService(t, cert, PoolConfig{Upstreams: []UpstreamConfig{up}}, route))
	c, _ := h3Client(t, cert, mustAddr(t, s))
	req, _ := http.NewRequest("GET", "https://app.example.com/api/users", nil)
	req.Header.Set("X-Removed", "gone")
	req.Header.Set("X-Set", "client")
	res, _ := mustDo(t, c, req)
	checks := map[string]string{
		"X-Seen-Path":      "/users",
		"X-Seen-Host":      "backend.internal",
		"X-Seen-X-Set":     "s",
		"X-Seen-X-Added":   "a",
		"X-Seen-X-Removed": "",
		"X-Resp":           "r",
		"X-Seen-Proto":     "",
	}
	for k, want := range checks {
		if got := res.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
}
