package config

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestClipShortensOnARuneBoundary(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		n        int
		want     string
	}{
		{"a short string is kept", "abc", 3, "abc"},
		{"a long string is cut and marked", "abcdef", 3, "abc…"},
		{"a cut inside a rune backs off to its start", "aé", 2, "a…"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := clip(tc.in, tc.n); got != tc.want {
				t.Errorf("clip(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
			}
		})
	}
}

func TestSizeTextNamesSizesInBinaryUnits(t *testing.T) {
	for _, tc := range []struct {
		name              string
		size, limit       int64
		wantSize, wantLim string
	}{
		{"whole units drop the decimal", 50 << 20, 1 << 20, "50 MiB", "1 MiB"},
		{"fractions keep one decimal", 3 << 19, 1 << 20, "1.5 MiB", "1 MiB"},
		{"sizes that would round to the limit are exact", 1<<20 + 1, 1 << 20, "1048577 bytes", "1048576 bytes"},
		{"small sizes are in bytes", 700, 512, "700 bytes", "512 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, l := sizeText(tc.size, tc.limit)
			if s != tc.wantSize || l != tc.wantLim {
				t.Errorf("sizeText(%d, %d) = %q, %q; want %q, %q", tc.size, tc.limit, s, l, tc.wantSize, tc.wantLim)
			}
		})
	}
}

func TestProblemsPastTheLimitAreCounted(t *testing.T) {
	var b strings.Builder
	b.WriteString("services:\n  - name: web\n    address: 198.18.0.10\n    port: 443\n    backends:\n")
	const n = MaxProblems + 50
	for i := range n {
		fmt.Fprintf(&b, "      - {name: b%d, address: 198.18.1.%d, weight: 0}\n", i, i%250+1)
	}
	_, err := Parse([]byte(b.String()), "big.yaml")
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("Parse: %v, want Errors", err)
	}
	if len(es) != MaxProblems+1 {
		t.Fatalf("%d problems listed, want %d and a count of the rest", len(es), MaxProblems+1)
	}
	if last := es[len(es)-1].Error(); !strings.Contains(last, "and 50 more problems") {
		t.Errorf("last entry %q does not count the 50 left out", last)
	}
	if es[0].Line == 0 {
		t.Errorf("first problem %v lost its line", es[0])
	}
}
