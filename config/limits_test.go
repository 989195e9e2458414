package config

import "testing"

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
