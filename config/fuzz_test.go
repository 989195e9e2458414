package config

import (
	"errors"
	"os"
	"strings"
	"testing"
)

// FuzzParse checks that Parse, which Load and every reload run, returns for
// any input: a configuration or errors, never a panic (which its guard
// would turn into an "internal error", failing here), and errors that
// echo only a bounded part of the input. A configuration it accepts must
// differ from nothing in itself.
func FuzzParse(f *testing.F) {
	example, err := os.ReadFile("../examples/spooky.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(example)
	f.Add([]byte(minimalL4))
	f.Add([]byte(diffBase))
	for _, tc := range problemCases {
		f.Add([]byte(tc.src))
	}
	for _, tc := range hostileCases {
		if len(tc.src) <= 4096 { // the large ones have small versions below
			f.Add([]byte(tc.src))
		}
	}
	f.Add([]byte(exponentialMerge(20)))
	f.Add([]byte(schemaLaughs(20)))
	f.Add([]byte("services: " + strings.Repeat("[", 100) + strings.Repeat("]", 100) + "\n"))
	f.Add([]byte("services:\n" + strings.Repeat("- ", 100) + "x\n"))
	f.Add([]byte("services:\n" + strings.Repeat("  ", 70) + "a: 1\n"))
	f.Add([]byte(strings.Replace(string(example), "certs/example.test.key", "/dev/zero", 1)))
	f.Add([]byte(strings.Replace(string(example), "certs/example.test.crt", "/proc/self/mem", 1)))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data, "../examples/fuzz.yaml")
		if (c == nil) == (err == nil) {
			t.Fatalf("Parse returned config %v and error %v", c != nil, err)
		}
		var es Errors
		if err != nil && !errors.As(err, &es) {
			t.Fatalf("Parse error is %T, not Errors: %v", err, err)
		}
		for _, e := range es {
			if len(e.Msg) > 3*maxPath { // two paths and some text at most
				t.Errorf("a %d-byte message echoes too much of the input: %s", len(e.Msg), clip(e.Msg, 200))
			}
		}
		if c != nil && !Diff(c, c).Empty() {
			t.Errorf("Diff(c, c) = %v", Diff(c, c))
		}
	})
}

func BenchmarkParseExample(b *testing.B) {
	data, err := os.ReadFile("../examples/spooky.yaml")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(data, "../examples/spooky.yaml"); err != nil {
			b.Fatal(err)
		}
	}
}
