package l7

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func TestNormalizePath(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"a plain path is kept", "/api/v1/items", "/api/v1/items"},
		{"a dot-dot segment climbs one segment", "/public/../private", "/private"},
		{"dot-dot never climbs above the root", "/../../etc/passwd", "/etc/passwd"},
		{"a dot segment is dropped", "/a/./b", "/a/b"},
		{"a trailing dot-dot leaves a trailing slash", "/a/b/..", "/a/"},
		{"an encoded unreserved letter is decoded", "/%70ublic/x", "/public/x"},
		{"encoded dots are dots and are removed as dot segments", "/a/%2e%2E/b", "/b"},
		{"an encoded slash stays encoded and is no separator", "/v1/..%2fadmin", "/v1/..%2Fadmin"},
		{"an encoded slash beside dots stays data", "/a/%2e%2e%2f%2e%2e/b", "/a/..%2F../b"},
		{"other encodings are kept with upper-case hex", "/a%3fb%2fc", "/a%3Fb%2Fc"},
		{"a stray percent is encoded", "/100%", "/100%25"},
		{"an invalid encoding is encoded", "/%zz", "/%25zz"},
		{"bytes a path cannot carry raw are encoded", "/a b/é", "/a%20b/%C3%A9"},
		{"empty segments are kept", "/a//b", "/a//b"},
		{"an empty path is the root", "", "/"},
		{"a path without a leading slash gets one", "a/../b", "/b"},
		{"the asterisk form is kept", "*", "*"},
		{"segments that only start with dots are kept", "/.well-known/..x/...", "/.well-known/..x/..."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := normalizePath(tc.in); got != tc.want {
				t.Fatalf("normalizePath(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestNormalPathsDoNotAllocate(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { _ = normalizePath("/api/v1/items/42") }); n != 0 {
		t.Fatalf("normalizing a normal path made %v allocations, want 0", n)
	}
}

// pathRewrites are the rewrites the fuzz target applies after routing: a
// prefix strip and regex rewrites whose replacements could, before
// normalising, spell dot segments.
var pathRewrites = []Transforms{
	{StripPrefix: "/v1"},
	{PathRegex: `^/v1/(.*)$`, PathReplacement: "/$1"},
	{PathRegex: `^(.*)$`, PathReplacement: "$1/.."},
	{PathRegex: `^/([^/]*)(.*)$`, PathReplacement: "/.$1/.$2"},
	{PathRegex: `[a-z]+`, PathReplacement: ".."},
}

func FuzzPathNormalization(f *testing.F) {
	for _, s := range []string{
		"/v1/..%2fadmin", "/public/../private", "/%70ublic/x", "/%2e%2e/x", "", "*",
		"/a/./b/../c", "/é", "%", "/%zz", "/v1", "/v1/", "/v1/%2E%2E/%2e", "/.../..../.",
	} {
		f.Add(s, "/v1")
		f.Add(s, "/public/")
	}
	transformers := make([]*transformer, len(pathRewrites))
	for i, tr := range pathRewrites {
		t, err := newTransformer(tr)
		if err != nil {
			f.Fatal(err)
		}
		transformers[i] = t
	}
	f.Fuzz(func(t *testing.T, in, prefix string) {
		n := normalizePath(in)
		if in == "*" {
			return
		}
		mustBeNormal(t, "normalizePath("+quote(in)+")", n)

		// A route's prefix is normalised at compile time; a strip leaves
		// the part under the prefix, which joined back gives n.
		p := normalizePath(prefix)
		if rest, ok := stripPathPrefix(n, p); ok {
			mustBeNormal(t, "stripping "+quote(p)+" from "+quote(n), rest)
			base := strings.TrimRight(p, "/")
			if base+rest != n && !(rest == "/" && n == base) {
				t.Fatalf("stripping %q from %q gave %q, which is not the part under the prefix", p, n, rest)
			}
		}
		for i, tr := range transformers {
			out := tr.rewritePath(n)
			mustBeNormal(t, "rewrite "+pathRewrites[i].PathRegex+" "+pathRewrites[i].StripPrefix+" of "+quote(n), out)
		}
	})
}

// mustBeNormal checks what every path sent upstream must be: absolute, free
// of dot segments, in normal form (normalising again changes nothing) and
// spelled so url.URL forwards it as is.
func mustBeNormal(tb testing.TB, what, p string) {
	tb.Helper()
	if !strings.HasPrefix(p, "/") {
		tb.Fatalf("%s = %q: not an absolute path", what, p)
	}
	for seg := range strings.SplitSeq(p, "/") {
		if seg == "." || seg == ".." {
			tb.Fatalf("%s = %q: holds a dot segment", what, p)
		}
	}
	if again := normalizePath(p); again != p {
		tb.Fatalf("%s = %q: normalising again gives %q", what, p, again)
	}
	var u url.URL
	setEscapedPath(&u, p)
	if got := u.EscapedPath(); got != p {
		tb.Fatalf("%s = %q: the URL would send %q", what, p, got)
	}
}

func quote(s string) string { return "\"" + s + "\"" }

// requestURIHandler answers with the upstream's name and the request-target
// it received, as sent on the wire.
func requestURIHandler(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, name+" "+r.RequestURI)
	})
}

func TestUpstreamsReceiveTheNormalisedPath(t *testing.T) {
	cert := mustCert(t, "app.example.com")
	cfg := oneService(t, cert, PoolConfig{Name: "v1", Upstreams: []UpstreamConfig{mustUpstream(t, ProtoH1, "v1", requestURIHandler("v1"))}},
		Route{Match: Match{PathPrefix: "/v1/"}, Pool: "v1", Transforms: Transforms{StripPrefix: "/v1"}},
		Route{Match: Match{PathPrefix: "/public/"}, Pool: "public"},
		Route{Match: Match{PathPrefix: "/re/"}, Pool: "public", Transforms: Transforms{PathRegex: `^/re/(.*)$`, PathReplacement: "/public/$1"}},
		Route{Match: Match{PathPrefix: "/"}, Pool: "private"},
	)
	cfg.Pools = append(cfg.Pools,
		PoolConfig{Name: "public", Upstreams: []UpstreamConfig{mustUpstream(t, ProtoH1, "public", requestURIHandler("public"))}},
		PoolConfig{Name: "private", Upstreams: []UpstreamConfig{mustUpstream(t, ProtoH3, "private", requestURIHandler("private"))}},
	)
	s := mustServer(t, cfg)
	c, _ := h3Client(t, cert, mustAddr(t, s))
	for _, tc := range []struct{ name, path, want string }{
		{"an encoded slash after dots is stripped without decoding it", "/v1/..%2fadmin", "v1 /..%2Fadmin"},
		{"an encoded slash in a segment reaches the upstream encoded", "/v1/a%2Fb", "v1 /a%2Fb"},
		{"a path that climbs out of a prefix is routed where it lands", "/public/../private", "private /private"},
		{"encoded dots climb out of a prefix like dots", "/public/%2e%2e/private", "private /private"},
		{"an encoded unreserved spelling of a prefix matches it", "/%70ublic/x", "public /public/x"},
		{"a regex rewrite keeps encoded slashes encoded", "/re/a/..%2F..%2Fsecret", "public /public/a/..%2F..%2Fsecret"},
		{"sub-delims are forwarded as sent", "/public/a!b;c=d", "public /public/a!b;c=d"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, body := mustGet(t, c, "https://app.example.com"+tc.path)
			if res.StatusCode != http.StatusOK || body != tc.want {
				t.Fatalf("GET %s: %d %q, want 200 %q", tc.path, res.StatusCode, body, tc.want)
			}
		})
	}
}
