package l7

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestRouteMatching(t *testing.T) {
	pools := map[string]*Pool{}
	for _, n := range []string{"exact", "wild", "api", "regex", "post", "hdr", "hdrre", "path", "all"} {
		pools[n] = &Pool{name: n}
	}
	routes := []Route{
		{Match: Match{Hosts: []string{"exact.example.com"}}, Pool: "exact"},
		{Match: Match{Hosts: []string{"*.wild.example.com"}}, Pool: "wild"},
		{Match: Match{PathExact: "/exact/path"}, Pool: "path"},
		{Match: Match{PathPrefix: "/api", Methods: []string{"POST"}}, Pool: "post"},
		{Match: Match{PathPrefix: "/api"}, Pool: "api"},
		{Match: Match{PathRegex: `^/v[0-9]+/items$`}, Pool: "regex"},
		{Match: Match{Headers: []HeaderMatch{{Name: "x-canary", Value: "yes"}}}, Pool: "hdr"},
		{Match: Match{Headers: []HeaderMatch{{Name: "User-Agent", Regex: "^curl/"}}}, Pool: "hdrre"},
		{Match: Match{Hosts: []string{"all.example.com"}, PathPrefix: "/"}, Pool: "all"},
	}
	rt, err := compileRoutes(routes, pools)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, method, url string
		header            http.Header
		want              string // pool name, "" = no match
	}{
		{"an exact host matches", "GET", "https://exact.example.com/", nil, "exact"},
		{"an exact host matches ignoring case and port", "GET", "https://EXACT.example.com:8443/", nil, "exact"},
		{"a wildcard host matches one label", "GET", "https://a.wild.example.com/", nil, "wild"},
		{"a wildcard host does not match two labels", "GET", "https://a.b.wild.example.com/", nil, ""},
		{"a wildcard host does not match the bare domain", "GET", "https://wild.example.com/", nil, ""},
		{"an exact path matches", "GET", "https://x/exact/path", nil, "path"},
		{"an exact path does not match a longer one", "GET", "https://x/exact/path/more", nil, ""},
		{"routes are tried in order: method route before the prefix route", "POST", "https://x/api/users", nil, "post"},
		{"a prefix matches under a segment", "GET", "https://x/api/users", nil, "api"},
		{"a prefix matches itself", "GET", "https://x/api", nil, "api"},
		{"a prefix does not match inside a segment", "GET", "https://x/apix", nil, ""},
		{"a regex matches", "GET", "https://x/v2/items", nil, "regex"},
		{"a regex does not match other paths", "GET", "https://x/v2/items/1", nil, ""},
		{"a header value matches", "GET", "https://x/other", http.Header{"X-Canary": {"yes"}}, "hdr"},
		{"a different header value does not match", "GET", "https://x/other", http.Header{"X-Canary": {"no"}}, ""},
		{"a header regex matches", "GET", "https://x/other", http.Header{"User-Agent": {"curl/8.0"}}, "hdrre"},
		{"host and prefix together match", "DELETE", "https://all.example.com/anything", nil, "all"},
		{"a prefix does not match a path that climbs out of it", "GET", "https://x/api/../other", nil, ""},
		{"a prefix matches a path that climbs back into it", "GET", "https://x/other/../api/users", nil, "api"},
		{"a prefix matches an encoded unreserved spelling of it", "GET", "https://x/%61pi/users", nil, "api"},
		{"an encoded slash is no segment boundary for a prefix", "GET", "https://x/api%2Fusers", nil, ""},
		{"an exact path matches after dot segments are removed", "GET", "https://x/exact/./path", nil, "path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(tc.method, tc.url, nil)
			for k, v := range tc.header {
				r.Header[k] = v
			}
			got := ""
			if cr := rt.match(r, normalizePath(r.URL.EscapedPath())); cr != nil {
				got = cr.pool.name
			}
			if got != tc.want {
				t.Fatalf("matched pool %q, want %q", got, tc.want)
			}
		})
	}
}

func TestRouteConfigErrors(t *testing.T) {
	cert := mustCert(t, "a.example")
	base := func() Config {
		return oneService(t, cert, PoolConfig{Upstreams: []UpstreamConfig{{Address: "127.0.0.1:1"}}})
	}
	for _, tc := range []struct {
		name   string
		mutate func(*Config)
	}{
		{"a route naming an unknown pool is refused", func(c *Config) { c.Services[0].Routes[0].Pool = "nope" }},
		{"a bad path regex is refused", func(c *Config) { c.Services[0].Routes[0].Match.PathRegex = "(" }},
		{"an unknown policy is refused", func(c *Config) { c.Pools[0].Policy = "fastest" }},
		{"an unknown upstream protocol is refused", func(c *Config) { c.Pools[0].Upstreams[0].Protocol = "spdy" }},
		{"a pool without upstreams is refused", func(c *Config) { c.Pools[0].Upstreams = nil }},
		{"a prefix without a leading slash is refused", func(c *Config) { c.Services[0].Routes[0].Match.PathPrefix = "api" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := base()
			tc.mutate(&c)
			if _, err := New(c); err == nil {
				t.Fatal("New accepted the config")
			}
		})
	}
}

func TestRequestHostDropsPortTrailingDotAndCase(t *testing.T) {
	for _, tc := range []struct{ name, host, want string }{
		{"a name with a port loses the port", "App.Example.com:443", "app.example.com"},
		{"a name without a port is lower-cased", "App.Example.COM", "app.example.com"},
		{"a trailing dot is dropped", "app.example.com.", "app.example.com"},
		{"an IPv6 literal with a port loses brackets and port", "[2001:db8::1]:443", "2001:db8::1"},
		{"an IPv6 literal without a port is kept as sent", "[2001:DB8::1]", "[2001:db8::1]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.Host = tc.host
			if got := requestHost(r); got != tc.want {
				t.Fatalf("requestHost(%q) = %q, want %q", tc.host, got, tc.want)
			}
		})
	}
}
