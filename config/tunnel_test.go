package config

import (
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// l7WithRoute is an l7 service whose one route is written as route (a
// YAML flow mapping without the pool, which is api).
func l7WithRoute(route string) string {
	return `services:
  - name: edge
    address: 198.18.0.20
    port: 443
    mode: l7
    tls: [{server_names: [example.test], cert: ` + exampleCert + `, key: ` + exampleKey + `}]
    routes:
      - {pool: api, ` + route + `}
pools: [{name: api, upstreams: [{address: "http://198.18.2.1:8080"}]}]
`
}

func TestTunnelSettingsHaveOneDefaultEach(t *testing.T) {
	r := mustParse(t, l7WithRoute("timeout: 10s")).Services[0].Routes[0]
	if !r.WebSocketEnabled() || r.Connect != nil {
		t.Errorf("a route without tunnel settings: websocket %v, connect %+v; want WebSockets on, CONNECT off", r.WebSocketEnabled(), r.Connect)
	}
	if r.Tunnel.IdleTimeout != DefaultTunnelIdleTimeout || r.Tunnel.MaxLifetime != 0 {
		t.Errorf("tunnel = %+v, want idle timeout %v and no lifetime", r.Tunnel, DefaultTunnelIdleTimeout)
	}

	r = mustParse(t, l7WithRoute(`websocket: false, tunnel: {idle_timeout: 1m, max_lifetime: 24h}, connect: {allow: ["db.example.test:5432"], udp: true}`)).Services[0].Routes[0]
	if r.WebSocketEnabled() {
		t.Error("websocket: false left WebSockets on")
	}
	if r.Tunnel.IdleTimeout != time.Minute || r.Tunnel.MaxLifetime != 24*time.Hour {
		t.Errorf("tunnel = %+v", r.Tunnel)
	}
	if r.Connect == nil || !slices.Equal(r.Connect.Allow, []string{"db.example.test:5432"}) || r.Connect.DialTimeout != DefaultConnectDialTimeout || !r.Connect.UDP {
		t.Errorf("connect = %+v, want the list and dial timeout %v", r.Connect, DefaultConnectDialTimeout)
	}
}

func TestTunnelSettingsAreValidated(t *testing.T) {
	for _, tc := range []struct {
		name, route string
		want        []string
	}{
		{"connect needs a list of destinations", `connect: {}`,
			[]string{`8:30: missing required field "allow"`}},
		{"a destination pattern that allows every host is refused", `connect: {allow: ["*:443", "0.0.0.0/0:22", "db.test"]}`,
			[]string{
				`8:39: allow: "*:443": a host is required; CONNECT is never open to every host`,
				`8:48: allow: "0.0.0.0/0:22": a /0 prefix allows every address; CONNECT is never open to every host`,
				`8:64: allow: "db.test": want host:port`,
			}},
		{"a port must be a port or a range", `connect: {allow: ["db.test:http", "db.test:9-3"]}`,
			[]string{
				`8:39: allow: "db.test:http": port "http" is not a port (1-65535) or a range such as 8000-8999`,
				`8:55: allow: "db.test:9-3": port "9-3" is not a port (1-65535) or a range such as 8000-8999`,
			}},
		{"timeouts must be positive", `tunnel: {idle_timeout: 0s, max_lifetime: -1s}, connect: {allow: ["a.test:1"], dial_timeout: 0s}`,
			[]string{
				`8:44: idle_timeout: must be positive, got 0s`,
				`8:62: max_lifetime: must not be negative, got -1s`,
				`8:113: dial_timeout: must be positive, got 0s`,
			}},
		{"websocket is a boolean", `websocket: sometimes`,
			[]string{`8:32: websocket: expected true or false, got a string`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := problems(t, l7WithRoute(tc.route))
			if !slices.Equal(got, tc.want) {
				t.Errorf("problems:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(tc.want, "\n  "))
			}
		})
	}
}

func TestDestinationPatterns(t *testing.T) {
	for _, tc := range []struct {
		pattern string
		allows  []string
		refuses []string
	}{
		{"db.internal:5432", []string{"db.internal:5432", "DB.internal.:5432"}, []string{"db.internal:5433", "x.db.internal:5432", "198.18.0.1:5432"}},
		{"*.example.test:443", []string{"a.example.test:443"}, []string{"example.test:443", "a.b.example.test:443", "a.example.test:444"}},
		{"198.18.0.0/24:8000-8999", []string{"198.18.0.7:8000", "198.18.0.7:8999", "[::ffff:198.18.0.7]:8080"}, []string{"198.18.1.7:8080", "198.18.0.7:7999", "a.test:8080"}},
		{"[2001:db8::1]:443", []string{"[2001:db8::1]:443"}, []string{"[2001:db8::2]:443"}},
		{"[2001:db8::/64]:443", []string{"[2001:db8::2]:443"}, []string{"[2001:db9::2]:443"}},
	} {
		d, err := ParseDestination(tc.pattern)
		if err != nil {
			t.Fatalf("%s: %v", tc.pattern, err)
		}
		for _, a := range tc.allows {
			host, port, err := SplitDestination(a)
			if err != nil || !d.Allows(host, port) {
				t.Errorf("%s does not allow %s (%v)", tc.pattern, a, err)
			}
		}
		for _, a := range tc.refuses {
			host, port, err := SplitDestination(a)
			if err != nil || d.Allows(host, port) {
				t.Errorf("%s allows %s (%v)", tc.pattern, a, err)
			}
		}
	}
	for _, bad := range []string{"example.test:0", "example.test", "[2001:db8::1:443", "a_b.test:80", "*.*.test:80", "fe80::1%eth0:80"} {
		if _, err := ParseDestination(bad); err == nil {
			t.Errorf("ParseDestination(%q) accepted it", bad)
		}
	}
	for _, bad := range []string{"example.test", ":443", "a.test:0", "a.test:port"} {
		if _, _, err := SplitDestination(bad); err == nil {
			t.Errorf("SplitDestination(%q) accepted it", bad)
		}
	}
}

// The example's CONNECT route is commented out (CONNECT is off by
// default); uncommented, it must be valid too.
func TestExampleConnectRouteIsValid(t *testing.T) {
	raw, err := os.ReadFile("../examples/spooky.yaml")
	if err != nil {
		t.Fatal(err)
	}
	const prefix = "      # "
	var out []string
	in := false
	for line := range strings.SplitSeq(string(raw), "\n") {
		if strings.HasPrefix(line, prefix+"- match:") {
			in = true
		}
		if in && !strings.HasPrefix(line, prefix) {
			in = false
		}
		if in {
			line = "      " + strings.TrimPrefix(line, prefix)
		}
		out = append(out, line)
	}
	src := strings.Join(out, "\n")
	if src == string(raw) {
		t.Fatal("no commented CONNECT route found in examples/spooky.yaml")
	}
	c, err := Parse([]byte(src), "../examples/spooky.yaml")
	if err != nil {
		t.Fatalf("the example with its CONNECT route uncommented:\n%v", err)
	}
	var found bool
	for _, s := range c.Services {
		for _, r := range s.Routes {
			found = found || r.Connect != nil && len(r.Connect.Allow) == 3
		}
	}
	if !found {
		t.Error("the uncommented route has no connect.allow")
	}
}
