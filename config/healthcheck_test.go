package config

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseStatusRange(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want StatusRange
		ok   bool
	}{
		{"200", StatusRange{200, 200}, true},
		{"200-399", StatusRange{200, 399}, true},
		{"2xx", StatusRange{200, 299}, true},
		{"5XX", StatusRange{500, 599}, true},
		{"99", StatusRange{}, false},
		{"600", StatusRange{}, false},
		{"399-200", StatusRange{}, false},
		{"6xx", StatusRange{}, false},
		{"+200", StatusRange{}, false},
		{"ok", StatusRange{}, false},
		{"", StatusRange{}, false},
	} {
		got, err := ParseStatusRange(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseStatusRange(%q) = %v, %v; want %v, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
	if r := (StatusRange{200, 399}); !r.Contains(200) || !r.Contains(399) || r.Contains(400) || r.String() != "200-399" {
		t.Errorf("StatusRange{200, 399}: Contains or String is wrong")
	}
}

// l7WithPoolCheck is a valid l7 service whose pool has the given
// health_check (a flow mapping's contents).
func l7WithPoolCheck(check string) string {
	return `services:
  - name: edge
    address: 198.18.0.20
    port: 443
    mode: l7
    tls:
      - {server_names: [example.test], cert: ` + exampleCert + `, key: ` + exampleKey + `}
    routes: [{pool: api}]
pools:
  - name: api
    upstreams: [{address: "https://198.18.2.1:8443"}]
    health_check: {` + check + `}
`
}

func TestHealthCheckDefaults(t *testing.T) {
	t.Run("an l4 quic check offers h3 and probes through the VIP", func(t *testing.T) {
		h := mustParse(t, minimalL4+"    health_check: {type: quic}\n").Services[0].HealthCheck
		want := HealthCheckConfig{Type: CheckQUIC, Address: CheckAddressVIP, ALPN: "h3", Interval: 2 * time.Second,
			Jitter: 0.1, Timeout: time.Second, Rise: 2, Fall: 3}
		if !reflect.DeepEqual(*h, want) {
			t.Errorf("check\ngot  %+v\nwant %+v", *h, want)
		}
	})
	t.Run("a pool's http check expects 200-399 and chooses no address", func(t *testing.T) {
		h := mustParse(t, l7WithPoolCheck("type: https")).Pools[0].HealthCheck
		if h.Address != "" || h.Path != "/" || !slices.Equal(h.ExpectStatus, []string{"200-399"}) || h.ALPN != "" {
			t.Errorf("check = %+v", *h)
		}
		if got := h.StatusRanges(); !slices.Equal(got, []StatusRange{{200, 399}}) {
			t.Errorf("StatusRanges = %v", got)
		}
	})
	t.Run("explicit values stay", func(t *testing.T) {
		h := mustParse(t, minimalL4+`    health_check:
      type: http3
      address: backend
      host: health.example.test
      expect_status: [204, 3xx]
      body: '"status": ?"ok"'
      server_name: backend.example.test
      jitter: 0
`).Services[0].HealthCheck
		if h.Address != CheckAddressBackend || h.Host != "health.example.test" || h.Body != `"status": ?"ok"` ||
			h.ServerName != "backend.example.test" || h.Jitter != 0 {
			t.Errorf("check = %+v", *h)
		}
		if got := h.StatusRanges(); !slices.Equal(got, []StatusRange{{204, 204}, {300, 399}}) {
			t.Errorf("StatusRanges = %v", got)
		}
	})
	t.Run("a relative ca is resolved against the file's directory", func(t *testing.T) {
		dir := t.TempDir()
		crt, err := os.ReadFile(exampleCert)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "ca.pem"), crt, 0o600); err != nil {
			t.Fatal(err)
		}
		src := minimalL4 + "    health_check: {type: quic, tls: {ca: ca.pem}}\n"
		c, err := Parse([]byte(src), filepath.Join(dir, "spooky.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if got, want := c.Services[0].HealthCheck.TLS.CA, filepath.Join(dir, "ca.pem"); got != want {
			t.Errorf("ca = %q, want %q", got, want)
		}
	})
}

func TestHealthCheckProblems(t *testing.T) {
	for _, tc := range []struct {
		name string
		src  string
		want []string
	}{
		{
			name: "fields the check's type does not use are errors",
			src: minimalL4 + `    health_check:
      type: tcp
      path: /healthz
      host: a.example.test
      expect_status: [200]
      body: ok
      alpn: h3
      server_name: a.example.test
      tls: {insecure_skip_verify: true}
`,
			want: []string{
				`9:7: path: only http, https and http3 checks use it`,
				`10:7: host: only http, https and http3 checks use it`,
				`11:7: expect_status: only http, https and http3 checks use it`,
				`12:7: body: only http, https and http3 checks use it`,
				`13:7: alpn: only quic checks use it`,
				`14:7: server_name: only https, http3 and quic checks use it`,
				`15:7: tls: only https, http3 and quic checks use it`,
			},
		},
		{
			name: "statuses, body, host and jitter are checked",
			src: minimalL4 + `    health_check:
      type: http
      host: "a b"
      expect_status: [200, 399-200, 7xx]
      body: "(unclosed"
      jitter: 0.7
`,
			want: []string{
				`9:13: host: "a b" is not a valid Host`,
				`10:28: expect_status: "399-200" is an empty range`,
				`10:37: expect_status: "7xx" is not a status code (100..599), a range such as 200-299 or a class such as 2xx`,
				`11:13: body: error parsing regexp: missing closing ): ` + "`(unclosed`",
				`12:15: jitter: 0.7 is not in [0, 0.5]`,
			},
		},
		{
			name: "an empty expect_status and alpn are errors, not defaults",
			src:  minimalL4 + "    health_check: {type: http3, expect_status: []}\n  - name: doq\n    address: 198.18.0.11\n    port: 853\n    backends: [{name: b1, address: 198.18.1.1}]\n    health_check: {type: quic, alpn: \"\"}\n",
			want: []string{
				`7:48: expect_status: must list at least one status`,
				`12:38: alpn: must not be empty`,
			},
		},
		{
			name: "an l4 check probes the vip or the backend",
			src:  minimalL4 + "    health_check: {type: quic, address: router}\n",
			want: []string{`7:41: address: "router" is not one of vip, backend`},
		},
		{
			name: "a pool's check takes no address",
			src:  l7WithPoolCheck("type: https, address: vip"),
			want: []string{`12:33: address: only l4 services choose where to probe; a pool probes each upstream's address`},
		},
		{
			name: "a pool's tcp check may carry tls for its h3 upstreams",
			src:  l7WithPoolCheck("type: tcp, server_name: api.example.test, tls: {ca: " + exampleCert + ", insecure_skip_verify: true}"),
			want: []string{`12:108: insecure_skip_verify: set ca or insecure_skip_verify, not both`},
		},
		{
			name: "a server name is a DNS name and a ca must hold certificates",
			src:  minimalL4 + "    health_check: {type: quic, server_name: 198.18.1.1, tls: {ca: " + exampleKey + "}}\n",
			want: []string{
				`7:45: server_name: "198.18.1.1" is not a DNS name; SNI carries DNS names only (RFC 6066 §3)`,
				`7:67: ca: ../examples/certs/example.test.key holds no PEM certificate`,
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := problems(t, tc.src)
			if !slices.Equal(got, tc.want) {
				t.Errorf("problems:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(tc.want, "\n  "))
			}
		})
	}
}
