package forwarder

import (
	"fmt"
	"testing"
)

// BenchmarkBuildMaglev measures building one table of DefaultMaglevSize
// entries, the work done for each VIP whenever its backend set or a weight
// changes.
func BenchmarkBuildMaglev(b *testing.B) {
	oneHeavy := func(i int) uint32 { // one backend carries half the weight
		if i == 0 {
			return 999
		}
		return 1
	}
	cases := []struct {
		name   string
		n      int
		weight func(int) uint32
	}{
		{"equal", 10, equalWeight},
		{"equal", 100, equalWeight},
		{"equal", 1000, equalWeight},
		{"rising", 1000, risingWeight},
		{"one-heavy", 1000, oneHeavy},
	}
	for _, c := range cases {
		bs := testBackends(c.n, c.weight)
		b.Run(fmt.Sprintf("weights=%s/backends=%d", c.name, c.n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := BuildMaglev(bs, DefaultMaglevSize); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkMaglevFillStrategy compares the two ways of scheduling turns over
// 1000 backends, one of which has skew times the mean weight. It is how
// maglevHeapSkew was chosen: the scan's cost grows with the skew, the heap's
// does not.
func BenchmarkMaglevFillStrategy(b *testing.B) {
	const n = 1000
	for _, skew := range []uint32{2, 8, 16, 32, 64} {
		// Backend 0 has weight w0, the others 1: w0 = skew·(w0+n−1)/n.
		w0 := skew * (n - 1) / (n - skew)
		bs := testBackends(n, func(i int) uint32 { return max(1, w0*uint32(1-min(i, 1))) })
		for _, s := range []struct {
			name string
			s    maglevStrategy
		}{{"scan", fillScan}, {"heap", fillHeap}} {
			b.Run(fmt.Sprintf("skew=%d/%s", skew, s.name), func(b *testing.B) {
				for b.Loop() {
					if _, err := buildMaglev(bs, DefaultMaglevSize, s.s); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
