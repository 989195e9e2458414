package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const (
	exampleCert = "../examples/certs/example.test.crt"
	exampleKey  = "../examples/certs/example.test.key"
)

// Each case is a broken file and exactly the problems it must produce, at
// the line and column of the node that causes each.
var problemCases = []struct {
	name string
	src  string
	want []string
}{
	{
		name: "a misspelt field is unknown and the real one missing",
		src: `services:
  - name: web
    address: 198.18.0.10
    prot: 443
    backends:
      - {name: b1, address: 198.18.1.1}
`,
		want: []string{
			`2:5: missing required field "port"`,
			`4:5: unknown field "prot" (did you mean "port"?)`,
		},
	},
	{
		name: "an unknown mode is rejected",
		src:  minimalL4 + "    mode: l5\n",
		want: []string{`7:11: mode: "l5" is not one of l4, l7`},
	},
	{
		name: "a bad IP is reported once, not also as missing",
		src:  strings.Replace(minimalL4, "198.18.0.10", "198.18.0.300", 1),
		want: []string{`3:14: address: "198.18.0.300" is not an IP address`},
	},
	{
		name: "unspecified and IPv4-mapped addresses are not VIPs",
		src: `services:
  - name: web
    address: 0.0.0.0
    port: 443
    backends:
      - {name: b1, address: "::ffff:198.18.1.1"}
`,
		want: []string{
			`3:14: address: 0.0.0.0 is not a unicast address: it is the unspecified address, which names no host (RFC 1122 §3.2.1.3, RFC 4291 §2.5.2)`,
			`6:29: address: write the IPv4-mapped address ::ffff:198.18.1.1 as 198.18.1.1`,
		},
	},
	{
		name: "a backend address must name one host that the forwarding can reach",
		src: `services:
  - name: web
    address: 198.18.0.10
    port: 443
    backends:
      - {name: b1, address: 255.255.255.255}
      - {name: b2, address: "::"}
      - {name: b3, address: 0.1.2.3}
      - {name: b4, address: ff02::1}
      - {name: b5, address: 127.0.0.1}
      - {name: b6, address: "::1"}
      - {name: b7, address: fe80::1}
      - {name: b8, address: 169.254.1.1}
  - name: tunnel
    address: 198.18.0.11
    port: 443
    forwarding: ipip
    backends:
      - {name: b1, address: 169.254.1.1}
  - name: local
    address: 198.18.0.12
    port: 443
    forwarding: proxy
    backends:
      - {name: b1, address: 127.0.0.1}
      - {name: b2, address: fe80::1}
`,
		want: []string{
			`6:29: address: 255.255.255.255 is not a unicast address: it is the limited broadcast address (RFC 919)`,
			`7:29: address: :: is not a unicast address: it is the unspecified address, which names no host (RFC 1122 §3.2.1.3, RFC 4291 §2.5.2)`,
			`8:29: address: 0.1.2.3 is not a unicast address: 0.0.0.0/8 is only ever a source address (RFC 1122 §3.2.1.3)`,
			`9:29: address: ff02::1 is not a unicast address: it is a multicast address`,
			`10:29: address: 127.0.0.1 is a loopback address, which forwarding l2dsr cannot reach: XDP sends packets out of the network interface`,
			`11:29: address: ::1 is a loopback address, which forwarding l2dsr cannot reach: XDP sends packets out of the network interface`,
			`12:29: address: fe80::1 is an IPv6 link-local address, which names a host only together with an interface; use a global or unique local address`,
			`19:29: address: 169.254.1.1 is an IPv4 link-local address, which routers do not forward (RFC 3927 §2.7); forwarding ipip cannot rely on reaching it, use l2dsr`,
			`26:29: address: fe80::1 is an IPv6 link-local address, which names a host only together with an interface; use a global or unique local address`,
		},
	},
	{
		name: "a broadcast address is not a VIP either",
		src:  strings.Replace(minimalL4, "198.18.0.10", "255.255.255.255", 1),
		want: []string{`3:14: address: 255.255.255.255 is not a unicast address: it is the limited broadcast address (RFC 919)`},
	},
	{
		name: "a port above 65535 is out of range",
		src:  strings.Replace(minimalL4, "port: 443", "port: 70000", 1),
		want: []string{`4:11: port: 70000 is out of range 1..65535`},
	},
	{
		name: "an explicit port 0 is out of range, not missing",
		src:  strings.Replace(minimalL4, "port: 443", "port: 0", 1),
		want: []string{`4:11: port: 0 is out of range 1..65535`},
	},
	{
		name: "a quoted port is a string, not an integer",
		src:  strings.Replace(minimalL4, "port: 443", `port: "443"`, 1),
		want: []string{`4:11: port: expected an integer, got a string`},
	},
	{
		name: "duplicate service names and VIPs are reported at the second",
		src: `services:
  - name: web
    address: 198.18.0.10
    port: 443
    backends: [{name: b1, address: 198.18.1.1}]
  - name: web
    address: 198.18.0.10
    port: 443
    backends: [{name: b1, address: 198.18.1.1}]
`,
		want: []string{
			`6:11: name: duplicate service name "web" (first at 2:11)`,
			`8:11: port: service 198.18.0.10:443 is already defined (first at 4:11)`,
		},
	},
	{
		name: "duplicate backend names and addresses in a service",
		src: `services:
  - name: web
    address: 198.18.0.10
    port: 443
    backends:
      - {name: b1, address: 198.18.1.1}
      - {name: b1, address: 198.18.1.1}
`,
		want: []string{
			`7:16: name: duplicate backend name "b1" (first at 6:16)`,
			`7:29: address: duplicate backend 198.18.1.1:443 (first at 6:29)`,
		},
	},
	{
		name: "server IDs must be hex, of the cid length, present and unique",
		src: `services:
  - name: web
    address: 198.18.0.10
    port: 443
    cid: [{server_id_len: 2, nonce_len: 6}]
    backends:
      - {name: b1, address: 198.18.1.1, server_id: "zz"}
      - {name: b2, address: 198.18.1.2, server_id: "000102"}
      - {name: b3, address: 198.18.1.3, server_id: "0001"}
      - {name: b4, address: 198.18.1.4, server_id: "0001"}
      - {name: b5, address: 198.18.1.5}
`,
		want: []string{
			`7:52: server_id: "zz" is not hex octets (an even number of hex digits)`,
			`8:52: server_id: 000102 is 3 octets; the service's cid configs have server_id_len 2`,
			`10:52: server_id: duplicate server_id 0001 (first at 9:52)`,
			`11:9: missing required field "server_id" (the service has cid configs)`,
		},
	},
	{
		name: "a server ID without cid configs routes nothing",
		src:  strings.Replace(minimalL4, "198.18.1.1}", "198.18.1.1, server_id: 01}", 1),
		want: []string{`6:41: server_id: the service has no cid configs to route by it`},
	},
	{
		name: "cid configs are checked by package cid and for duplicates",
		src: `services:
  - name: web
    address: 198.18.0.10
    port: 443
    cid:
      - {config_id: 7, server_id_len: 2, nonce_len: 6}
      - {config_id: 1, server_id_len: 2, nonce_len: 2}
      - {config_id: 1, server_id_len: 2, nonce_len: 6, key: 00ff}
      - {config_id: 2, server_id_len: 3, nonce_len: 6}
      - {config_id: 3, nonce_len: 6}
    backends:
      - {name: b1, address: 198.18.1.1, server_id: "0001"}
`,
		want: []string{
			`6:9: cid: invalid quic-lb config: config ID 7 out of range 0..6 (0b111 is reserved for unroutable CIDs, draft-21 §3.2)`,
			`7:9: cid: invalid quic-lb config: nonce length 2, must be at least 4 octets (draft-21 §5.3)`,
			`8:21: config_id: duplicate config_id 1 (first at 7:21)`,
			`8:61: key: must be 32 hex digits (AES-128), got 4`,
			`9:39: server_id_len: 3 differs from 2 in the service's first cid config; a backend has one server ID for all configs`,
			`10:9: missing required field "server_id_len"`,
		},
	},
	{
		name: "maglev_size must be prime",
		src:  minimalL4 + "    maglev_size: 65536\n",
		want: []string{`7:18: maglev_size: 65536 is not prime (Maglev needs a prime table size; try 65537)`},
	},
	{
		name: "maglev_size must fit the XDP maps",
		src:  minimalL4 + "    maglev_size: 65539\n",
		want: []string{`7:18: maglev_size: 65539 is out of range 2..65537 (the largest table the XDP maps hold)`},
	},
	{
		name: "maglev_size must be at least 100 times the backends",
		src:  minimalL4 + "      - {name: b2, address: 198.18.1.2}\n    maglev_size: 101\n",
		want: []string{`8:18: maglev_size: 101 is less than 100 × 2 backends, which skews load; try 211`},
	},
	{
		name: "direct server return cannot change a backend's port",
		src:  strings.Replace(minimalL4, "198.18.1.1}", "198.18.1.1, port: 8443}", 1),
		want: []string{`6:47: port: forwarding l2dsr cannot change the port (443 → 8443); leave port out or use forwarding: proxy`},
	},
	{
		name: "types, enums, weights and health check limits",
		src: `log: {level: verbose}
admin: {listen: "198.18.0.1:9901"}
services:
  - name: web
    address: 198.18.0.10
    port: 443
    flow_timeout: 60
    backends:
      - {name: b1, address: 198.18.1.1, weight: 0}
    health_check: {type: ping, interval: 1s, timeout: 2s, rise: 0}
`,
		want: []string{
			`1:14: level: "verbose" is not one of debug, info, warn, error`,
			`2:17: listen: "198.18.0.1" is not a loopback address; the admin API has no authentication, so it listens only on loopback or a unix socket`,
			`7:19: flow_timeout: expected a duration such as 2s or 500ms, got an integer`,
			`9:49: weight: must be positive, got 0`,
			`10:26: type: "ping" is not one of http3, https, http, tcp, quic`,
			`10:55: timeout: 2s exceeds interval 1s; a probe must end before the next begins`,
			`10:65: rise: must be positive, got 0`,
		},
	},
	{
		name: "admin takes a socket or a listen address, not both",
		src:  "admin: {socket: /run/a.sock, listen: \"127.0.0.1:9901\"}\n" + minimalL4,
		want: []string{`1:30: listen: set admin socket or listen, not both`},
	},
	{
		name: "admin listens only on a loopback IP literal, not a name",
		src:  "admin: {listen: \"localhost:9901\"}\n" + minimalL4,
		want: []string{`1:17: listen: "localhost" is a name; write 127.0.0.1 or [::1] so the admin API cannot end up beyond loopback`},
	},
	{
		name: "admin refuses every address but loopback",
		src:  "admin: {listen: \":9901\"}\n" + minimalL4,
		want: []string{`1:17: listen: "" is not a loopback address; the admin API has no authentication, so it listens only on loopback or a unix socket`},
	},
	{
		name: "admin socket paths fit a unix socket address",
		src:  "admin: {socket: /run/" + strings.Repeat("s", 103) + "}\n" + minimalL4,
		want: []string{`1:17: socket: path is 108 bytes; a unix socket path holds at most 107`},
	},
	{
		name: "an l7 service needs tls and routes",
		src: `services:
  - name: edge
    address: 198.18.0.20
    port: 443
    mode: l7
`,
		want: []string{
			`2:5: tls: mode l7 terminates TLS and needs at least one certificate`,
			`2:5: routes: mode l7 needs at least one route`,
		},
	},
	{
		name: "l7 problems: l4 fields, missing cert, bad regex, unknown and unused pools",
		src: `services:
  - name: edge
    address: 198.18.0.20
    port: 443
    mode: l7
    maglev_size: 65537
    tls:
      - {server_names: [example.test], cert: nope.crt, key: ` + exampleKey + `}
    routes:
      - match: {path_regex: "(unclosed"}
        pool: apy
pools:
  - name: api
    upstreams: [{address: "http://198.18.2.1:8080"}]
`,
		want: []string{
			`6:5: maglev_size: only valid with mode l4`,
			`8:46: cert: file nope.crt does not exist`,
			"10:29: path_regex: error parsing regexp: missing closing ): `(unclosed`",
			`11:15: pool: no pool named "apy" (did you mean "api"?)`,
			`13:11: name: pool "api" is not used by any route`,
		},
	},
	{
		name: "route matchers: one path kind, case-sensitive methods, valid headers",
		src: `services:
  - name: edge
    address: 198.18.0.20
    port: 443
    mode: l7
    tls: [{server_names: [example.test], cert: ` + exampleCert + `, key: ` + exampleKey + `}]
    routes:
      - match:
          path_prefix: api
          path_exact: /x
          methods: [get]
          headers: {"Bad Header": x}
        pool: api
        transforms: {strip_prefix: /a, rewrite_path: /b}
pools:
  - {name: api, upstreams: [{address: "ftp://198.18.2.1"}, {address: "http://198.18.2.1:8080/path"}]}
`,
		want: []string{
			`9:24: path_prefix: "api" does not start with /`,
			`10:11: path_exact: set only one of path_prefix, path_exact and path_regex (path_prefix is already set)`,
			`11:21: methods: "get" never matches: methods are case-sensitive (RFC 9110 §9.1); write "GET"`,
			`12:21: headers: "Bad Header" is not a valid header name`,
			`14:40: rewrite_path: set strip_prefix or rewrite_path, not both`,
			`16:39: address: "ftp://198.18.2.1": scheme must be one of http, https, h2c, h3`,
			`16:70: address: "http://198.18.2.1:8080/path": only scheme://host[:port] is allowed`,
		},
	},
	{
		name: "an l7 server ID must fit the cid configs",
		src: `services:
  - name: edge
    address: 198.18.0.20
    port: 443
    mode: l7
    cid: [{server_id_len: 2, nonce_len: 6}]
    l7_server_id: ff
    tls: [{server_names: [example.test], cert: ` + exampleCert + `, key: ` + exampleKey + `}]
    routes: [{pool: api}]
pools: [{name: api, upstreams: [{address: "h3://198.18.2.1"}]}]
`,
		want: []string{`7:19: l7_server_id: ff is 1 octets; the service's cid configs have server_id_len 2`},
	},
	{
		name: "an upstream CA file must exist and hold a certificate",
		src: `services:
  - name: edge
    address: 198.18.0.20
    port: 443
    mode: l7
    tls: [{server_names: [example.test], cert: ` + exampleCert + `, key: ` + exampleKey + `}]
    routes: [{pool: api}]
pools:
  - name: api
    upstreams:
      - {address: "h3://198.18.2.1", tls: {ca: /nonexistent/ca.pem}}
      - {address: "h3://198.18.2.2", tls: {ca: ` + exampleKey + `}}
`,
		want: []string{
			`11:48: ca: file /nonexistent/ca.pem does not exist`,
			`12:48: ca: ../examples/certs/example.test.key holds no PEM certificate`,
		},
	},
	{
		name: "certificates must cover the server names, which are DNS names",
		src: `services:
  - name: edge
    address: 198.18.0.20
    port: 443
    mode: l7
    tls: [{server_names: [other.test, 198.18.0.20, "*.example.test"], cert: ` + exampleCert + `, key: ` + exampleKey + `}]
    routes: [{pool: api}]
pools: [{name: api, upstreams: [{address: "h3://198.18.2.1"}]}]
`,
		want: []string{
			`6:27: server_names: certificate ../examples/certs/example.test.crt does not cover "other.test"`,
			`6:39: server_names: "198.18.0.20" is an IP address; TLS server names are DNS names (RFC 6066 §3)`,
		},
	},
	{
		name: "an empty list or string for a required field is empty, not missing",
		src: `services:
  - name: edge
    address: 198.18.0.20
    port: 443
    mode: l7
    tls: [{server_names: [], cert: ` + exampleCert + `, key: ''}]
    routes: [{pool: api}]
pools: [{name: api, upstreams: [{address: "h3://198.18.2.1"}]}]
`,
		want: []string{
			`6:26: server_names: must not be empty`,
			`6:77: key: must not be empty`,
		},
	},
	{
		name: "a file without services says so",
		src:  "log: {level: info}\n",
		want: []string{`1:1: at least one service is required`},
	},
	{
		name: "an empty file says so",
		src:  "",
		want: []string{`1:1: at least one service is required`},
	},
	{
		name: "a list at the top is not a config",
		src:  "- a\n",
		want: []string{`1:1: config: expected a mapping, got a list`},
	},
	{
		name: "a YAML syntax error carries its position",
		src:  "services: [\n",
		want: []string{`1:11: yaml: sequence end token ']' not found`},
	},
	{
		name: "a key written twice is a syntax error",
		src:  minimalL4 + "services: []\n",
		want: []string{`7:1: yaml: mapping key "services" already defined at [1:1]`},
	},
	{
		name: "an alias needs its anchor",
		src:  strings.Replace(minimalL4, "backends:\n      - {name: b1, address: 198.18.1.1}", "backends: *nope", 1),
		want: []string{`5:15: alias *nope names no anchor defined before it`},
	},
}

func TestParseReportsProblemsAtTheirPositions(t *testing.T) {
	for _, tc := range problemCases {
		t.Run(tc.name, func(t *testing.T) {
			got := problems(t, tc.src)
			if !slices.Equal(got, tc.want) {
				t.Errorf("problems:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(tc.want, "\n  "))
			}
		})
	}
}

func TestParseReportsEveryProblemInOneRun(t *testing.T) {
	src := `log: {level: loud, format: xml}
metrics: {path: metrics}
services:
  - name: "web one"
    address: 198.18.0.10
    port: 443
    hash: random
    bogus: 1
    backends:
      - {name: b1, address: 198.18.1.1, weight: -1}
      - {name: b2}
  - name: edge
    address: 198.18.0.20
    port: 99999
    mode: l7
    routes: [{pool: nope}]
pools:
  - name: unused
    policy: fastest
    upstreams: []
    circuit_breaker: {error_ratio: 1.5}
`
	want := []string{
		`1:14: level: "loud" is not one of debug, info, warn, error`,
		`1:28: format: "xml" is not one of text, json`,
		`2:17: path: "metrics" does not start with /`,
		`4:11: name: "web one" must be 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit`,
		`7:11: hash: "random" is not one of src-ip, 4-tuple`,
		`8:5: unknown field "bogus"`,
		`10:49: weight: must be positive, got -1`,
		`11:9: missing required field "address"`,
		`12:5: tls: mode l7 terminates TLS and needs at least one certificate`,
		`14:11: port: 99999 is out of range 1..65535`,
		`16:21: pool: no pool named "nope"`,
		`18:11: name: pool "unused" is not used by any route`,
		`19:13: policy: "fastest" is not one of random, round_robin, weighted_round_robin, least_conn, ip_hash, least_response_time, p2c`,
		`20:16: upstreams: a pool needs at least one upstream`,
		`21:36: error_ratio: 1.5 is not in (0, 1]`,
	}
	got := problems(t, src)
	if !slices.Equal(got, want) {
		t.Errorf("problems:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	_, err := Parse([]byte(src), "many.yaml")
	if lines := strings.Split(err.Error(), "\n"); len(lines) != len(want) || !strings.HasPrefix(lines[0], "many.yaml:1:14: ") {
		t.Errorf("Error() = %q, want %d lines of file:line:col: message", err, len(want))
	}
}

func TestParseRejectsAKeyThatDoesNotMatchTheCertificate(t *testing.T) {
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, "other.key")
	if err := os.WriteFile(other, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := filepath.Abs(exampleCert)
	src := `services:
  - name: edge
    address: 198.18.0.20
    port: 443
    mode: l7
    tls:
      - server_names: [example.test]
        cert: ` + cert + `
        key: ` + other + `
    routes: [{pool: api}]
pools: [{name: api, upstreams: [{address: "h3://198.18.2.1"}]}]
`
	got := problems(t, src)
	want := "8:15: cert: " + cert + " with key " + other + ": tls: private key does not match public key"
	if !slices.Equal(got, []string{want}) {
		t.Errorf("problems = %q, want %q", got, want)
	}
}

func TestValidationRefusesCertificateFilesItCannotReadSafely(t *testing.T) {
	fifo := mustFIFO(t)
	big := mustSparseFile(t, "big.pem", MaxPEMFileSize+1)
	key, _ := filepath.Abs(exampleKey)
	src := `services:
  - name: edge
    address: 198.18.0.20
    port: 443
    mode: l7
    tls:
      - {server_names: [example.test], cert: ` + fifo + `, key: /dev/zero}
      - {server_names: [b.example.test], cert: ` + big + `, key: ` + key + `}
    routes: [{pool: api}]
pools:
  - name: api
    upstreams: [{address: "h3://198.18.2.1", tls: {ca: ` + fifo + `}}]
`
	var got []string
	mustFinish(t, "Parse", func() { got = problems(t, src) })
	// at is "line:col" of the first text on a 1-based line of src.
	at := func(line int, text string) string {
		return fmt.Sprintf("%d:%d", line, 1+strings.Index(strings.Split(src, "\n")[line-1], text))
	}
	want := []string{
		at(7, fifo) + ": cert: " + fifo + ": not a regular file (a named pipe)",
		at(7, "/dev/zero") + ": key: /dev/zero: not a regular file (a character device)",
		at(8, big) + ": cert: " + big + ": file too large: 1048577 bytes; the limit is 1048576 bytes",
		at(12, fifo) + ": ca: " + fifo + ": not a regular file (a named pipe)",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("problems:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}
