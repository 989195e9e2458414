package config

import (
	"os"
	"testing"
)

// FuzzParse checks that no input makes Parse panic, and that whatever it
// accepts is a configuration that differs from nothing in itself.
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
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data, "../examples/fuzz.yaml")
		if (c == nil) == (err == nil) {
			t.Fatalf("Parse returned config %v and error %v", c != nil, err)
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
