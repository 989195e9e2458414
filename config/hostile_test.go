package config

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// Hostile inputs: each once crashed, hung or exhausted the memory of Parse,
// and with it `spooky validate` and a daemon reloading the file. Each must
// now give exactly one problem, pointing at the text that causes it.
var hostileCases = []struct {
	name string
	src  string
	msg  string // the problem, without file:line:col
	at   string // what the source holds at the problem's line and column
}{
	{
		name: "a merge key whose list includes itself is a cycle, not a stack overflow",
		src:  strings.Replace(minimalL4, "    backends:", "    <<: &m [*m]\n    backends:", 1),
		msg:  "merge key <<: alias *m names a list that contains it, so the merge never ends",
		at:   "*m]",
	},
	{
		name: "a cycle through a nested list is found too",
		src:  strings.Replace(minimalL4, "    backends:", "    <<: &m [{name: x}, [*m]]\n    backends:", 1),
		msg:  "merge key <<: alias *m names a list that contains it, so the merge never ends",
		at:   "*m]]",
	},
	{
		name: "an anchor whose value is an alias to itself is a cycle, not an endless loop",
		// The alias on a line of its own: goccy/go-yaml places a token that
		// follows a tag on its line one column early.
		src: strings.Replace(minimalL4, "port: 443", "port: &p !t\n      *p", 1),
		msg: "alias *p refers to itself, so it has no value",
		at:  "*p",
	},
	{
		name: "a long chain of aliases of aliases is cut short",
		src:  aliasChain(100) + strings.Replace(minimalL4, "port: 443", "port: *a100", 1),
		msg:  fmt.Sprintf("alias *a100: aliases of aliases chain more than %d deep", MaxNesting),
		at:   "*a100",
	},
	{
		name: "merge lists of aliases of lists stop at MaxValues instead of expanding 2^30 times",
		src:  exponentialMerge(30),
		msg:  fmt.Sprintf("the file expands to more than %d values through aliases and merge keys (each use counts its anchor's values again); use fewer aliases of aliases", MaxValues),
		at:   "*a30",
	},
	{
		name: "aliases that fit the schema stop at MaxValues instead of expanding a million times",
		src:  schemaLaughs(100),
		msg:  fmt.Sprintf("the file expands to more than %d values through aliases and merge keys (each use counts its anchor's values again); use fewer aliases of aliases", MaxValues),
		at:   "*s",
	},
	{
		name: "100,000 nested flow lists are refused before the parser recurses into them",
		src:  "services: " + strings.Repeat("[", 100_000) + strings.Repeat("]", 100_000) + "\n",
		msg:  fmt.Sprintf("lists and mappings nest more than %d deep here", MaxNesting),
		at:   "[[",
	},
	{
		name: "block lists nested on one line count like flow lists",
		src:  "services:\n" + strings.Repeat("- ", 100_000) + "x\n",
		msg:  fmt.Sprintf("lists and mappings nest more than %d deep here", MaxNesting),
		at:   "- -",
	},
	{
		name: "nested flow mappings count too",
		src:  "x-a: " + strings.Repeat("{a: ", 1000) + "1" + strings.Repeat("}", 1000) + "\n",
		msg:  fmt.Sprintf("lists and mappings nest more than %d deep here", MaxNesting),
		at:   "{a: {",
	},
	{
		name: "a file over MaxFileSize is refused before parsing, naming both sizes",
		src:  "services: [\"" + strings.Repeat("x", 50<<20) + "\"]\n",
		msg:  "config file is 50 MiB; the limit is 1 MiB",
		at:   "services",
	},
	{
		name: "a huge bad value is echoed clipped",
		src:  strings.Replace(minimalL4, "198.18.0.10", strings.Repeat("9", 100_000), 1),
		msg:  `address: "` + strings.Repeat("9", maxEcho) + `…" is not an IP address`,
		at:   "999",
	},
	{
		name: "a huge unknown key is echoed clipped",
		src:  minimalL4 + "    " + strings.Repeat("k", 100_000) + ": 1\n",
		msg:  `unknown field "` + strings.Repeat("k", maxEcho) + `…"`,
		at:   "kkk",
	},
	{
		name: "a huge key in a parser message is clipped",
		src:  strings.Repeat("k", 100_000) + ": 1\n" + strings.Repeat("k", 100_000) + ": 2\n",
		msg:  clip(`yaml: mapping key "`+strings.Repeat("k", 100_000)+`" already defined at [1:1]`, len("yaml: ")+maxSyntaxEcho),
		at:   "kkk",
	},
}

// exponentialMerge is a file whose anchor a<i> is a list of two aliases
// of a<i-1>, so that merging a<n> brings in 2^n mappings.
func exponentialMerge(n int) string {
	var b strings.Builder
	b.WriteString("x-a0: &a0 {name: web}\n")
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "x-a%d: &a%d [*a%d, *a%d]\n", i, i, i-1, i-1)
	}
	fmt.Fprintf(&b, "services:\n  - <<: *a%d\n    address: 198.18.0.10\n    port: 443\n", n)
	return b.String()
}

// aliasChain defines anchors a0..an, each but the first an alias of the
// one before: "x-1: &a1 ! *a0".
func aliasChain(n int) string {
	var b strings.Builder
	b.WriteString("x-0: &a0 443\n")
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "x-%d: &a%d ! *a%d\n", i, i, i-1)
	}
	return b.String()
}

// schemaLaughs is "billion laughs" shaped to spooky's schema: n services,
// each n routes, each n methods, n³ values in all from about 10n bytes.
func schemaLaughs(n int) string {
	many := func(s string) string { return strings.TrimSuffix(strings.Repeat(s+", ", n), ", ") }
	return "x-m: &m [" + many("GET") + "]\n" +
		"x-r: &r {pool: p, match: {methods: *m}}\n" +
		"x-rs: &rs [" + many("*r") + "]\n" +
		"x-s: &s {name: s, address: 198.18.0.1, port: 443, mode: l7, routes: *rs}\n" +
		"services: [" + many("*s") + "]\n"
}

// textAt returns src from 1-based line and column on.
func textAt(src string, line, col int) string {
	lines := strings.SplitAfter(src, "\n")
	if line < 1 || line > len(lines) || col < 1 || col > len(lines[line-1]) {
		return fmt.Sprintf("<nothing at %d:%d>", line, col)
	}
	return lines[line-1][col-1:]
}

func TestParseRefusesHostileInputWithOneProblemAtItsCause(t *testing.T) {
	for _, tc := range hostileCases {
		t.Run(tc.name, func(t *testing.T) {
			var c *Config
			var err error
			mustFinish(t, "Parse", func() { c, err = Parse([]byte(tc.src), "hostile.yaml") })
			var es Errors
			if c != nil || !errors.As(err, &es) || len(es) != 1 {
				t.Fatalf("Parse = %v, %v; want one problem", c != nil, clip(fmt.Sprint(err), 2000))
			}
			e := es[0]
			if e.Msg != tc.msg {
				t.Errorf("problem %q, want %q", clip(e.Msg, 2000), tc.msg)
			}
			if got := textAt(tc.src, e.Line, e.Col); !strings.HasPrefix(got, tc.at) {
				t.Errorf("problem at %d:%d, which holds %q; want it at %q", e.Line, e.Col, clip(got, 20), tc.at)
			}
		})
	}
}

func TestParseStillFollowsAliasesAndMergesWithinTheLimits(t *testing.T) {
	// Ten levels of merge lists: 2^10 merged mappings, well inside MaxValues.
	c := mustParse(t, exponentialMerge(10)+"    backends: [{name: b1, address: 198.18.1.1}]\n")
	if s := c.Services[0]; s.Name != "web" || s.Port != 443 {
		t.Errorf("merged service = %+v, want name web from the merge, port 443", s)
	}
}

func TestParseTurnsAPanicIntoAnErrorNamingTheFile(t *testing.T) {
	// No input is known to panic any more; this checks the guard itself.
	c, err := func() (c *Config, err error) {
		defer recoverParse("spooky.yaml", &c, &err)
		c = &Config{}
		panic("boom")
	}()
	if c != nil || err == nil || !strings.HasPrefix(err.Error(), "parse spooky.yaml: internal error") || !strings.HasSuffix(err.Error(), ": boom") {
		t.Errorf("after a panic: config %v, error %v; want no config and an internal error naming spooky.yaml", c != nil, err)
	}
}
