package forwarder

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"math/big"
	"math/rand/v2"
	"testing"
)

// mustBuildMaglev builds a table or fails the test.
func mustBuildMaglev(tb testing.TB, backends []MaglevBackend, m uint32) []uint32 {
	tb.Helper()
	table, err := BuildMaglev(backends, m)
	if err != nil {
		tb.Fatalf("BuildMaglev(%d backends, %d): %v", len(backends), m, err)
	}
	if uint32(len(table)) != m {
		tb.Fatalf("BuildMaglev returned %d entries, want %d", len(table), m)
	}
	return table
}

// testBackends returns n backends keyed like real ones ("198.18.x.y:443"),
// the i-th with weight weight(i).
func testBackends(n int, weight func(i int) uint32) []MaglevBackend {
	bs := make([]MaglevBackend, n)
	for i := range bs {
		bs[i] = MaglevBackend{
			Key:    fmt.Sprintf("198.18.%d.%d:443", i/250, 1+i%250),
			Weight: weight(i),
		}
	}
	return bs
}

func equalWeight(int) uint32      { return 1 }
func risingWeight(i int) uint32   { return uint32(i + 1) }
func twoHeavyWeight(i int) uint32 { return uint32(1 + 999*(i%2)) } // 1, 1000, 1, 1000, …

// ownerKeys maps a table of indices to the keys of the owners, so tables
// built from differently ordered slices can be compared.
func ownerKeys(backends []MaglevBackend, table []uint32) []string {
	keys := make([]string, len(table))
	for i, b := range table {
		keys[i] = backends[b].Key
	}
	return keys
}

// referenceMaglev is a literal transcription of Katran's MaglevHashV2 fill (modulo
// arithmetic, a -1 sentinel, a next[] counter per backend) with spooky's two
// changes: keys are sorted, and credits start at max−weight. It checks the
// optimised BuildMaglev against the plain algorithm.
func referenceMaglev(backends []MaglevBackend, m uint32) []int64 {
	type ep struct {
		idx            int
		offset, skip   uint64
		weight, credit uint64
		next           uint64
	}
	var eps []ep
	var maxW uint64
	for i, b := range backends {
		if b.Weight == 0 {
			continue
		}
		o, s := maglevPermutation(b.Key, m)
		eps = append(eps, ep{idx: i, offset: uint64(o), skip: uint64(s), weight: uint64(b.Weight)})
		maxW = max(maxW, uint64(b.Weight))
	}
	// Insertion sort by key: slow and obviously right.
	for i := 1; i < len(eps); i++ {
		for j := i; j > 0 && backends[eps[j].idx].Key < backends[eps[j-1].idx].Key; j-- {
			eps[j], eps[j-1] = eps[j-1], eps[j]
		}
	}
	for i := range eps {
		eps[i].credit = maxW - eps[i].weight
	}
	result := make([]int64, m)
	for i := range result {
		result[i] = -1
	}
	runs := uint32(0)
	for {
		for i := range eps {
			e := &eps[i]
			e.credit += e.weight
			if e.credit < maxW {
				continue
			}
			e.credit -= maxW
			cur := (e.offset + e.next*e.skip) % uint64(m)
			for result[cur] >= 0 {
				e.next++
				cur = (e.offset + e.next*e.skip) % uint64(m)
			}
			result[cur] = int64(e.idx)
			e.next++
			if runs++; runs == m {
				return result
			}
		}
	}
}

// paperMaglev is Pseudocode 1 of the Maglev paper (§3.4), unweighted, with
// backends taken in key order.
func paperMaglev(backends []MaglevBackend, m uint32) []int64 {
	order := make([]int, len(backends))
	for i := range order {
		order[i] = i
	}
	for i := 1; i < len(order); i++ {
		for j := i; j > 0 && backends[order[j]].Key < backends[order[j-1]].Key; j-- {
			order[j], order[j-1] = order[j-1], order[j]
		}
	}
	n := len(backends)
	offset := make([]uint64, n)
	skip := make([]uint64, n)
	for _, i := range order {
		o, s := maglevPermutation(backends[i].Key, m)
		offset[i], skip[i] = uint64(o), uint64(s)
	}
	next := make([]uint64, n)
	entry := make([]int64, m)
	for j := range entry {
		entry[j] = -1
	}
	filled := uint32(0)
	for {
		for _, i := range order {
			c := (offset[i] + next[i]*skip[i]) % uint64(m)
			for entry[c] >= 0 {
				next[i]++
				c = (offset[i] + next[i]*skip[i]) % uint64(m)
			}
			entry[c] = int64(i)
			next[i]++
			if filled++; filled == m {
				return entry
			}
		}
	}
}

func TestIsPrime(t *testing.T) {
	tests := []struct {
		name string
		n    uint32
		want bool
	}{
		{"zero is not prime", 0, false},
		{"one is not prime", 1, false},
		{"two is prime", 2, true},
		{"four is not prime", 4, false},
		{"the default table size 65537 is prime", 65537, true},
		{"65535 is not prime", 65535, false},
		{"the paper's larger size 655373 is prime", 655373, true},
		{"a Carmichael number is not prime", 561, false},
		{"the smallest strong pseudoprime to base 2 is not prime", 2047, false},
		{"a strong pseudoprime to bases 2, 3, 5 and 7 is not prime", 3215031751, false},
		{"a square of a prime is not prime", 65521 * 65521 % (1 << 32), false},
		{"the largest uint32 prime is prime", 4294967291, true},
		{"the largest uint32 is not prime", 4294967295, false},
		{"61 is prime", 61, true},
		{"61 squared is not prime", 3721, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := IsPrime(tt.n); got != tt.want {
				t.Errorf("IsPrime(%d) = %v, want %v", tt.n, got, tt.want)
			}
		})
	}

	t.Run("it agrees with a sieve below 200000", func(t *testing.T) {
		const limit = 200000
		composite := make([]bool, limit)
		composite[0], composite[1] = true, true
		for i := 2; i*i < limit; i++ {
			if !composite[i] {
				for j := i * i; j < limit; j += i {
					composite[j] = true
				}
			}
		}
		for n := range uint32(limit) {
			if got := IsPrime(n); got != !composite[n] {
				t.Fatalf("IsPrime(%d) = %v, sieve says %v", n, got, !composite[n])
			}
		}
	})

	t.Run("it agrees with math/big on random large numbers", func(t *testing.T) {
		r := rand.New(rand.NewPCG(1, 2))
		primes := 0
		for range 20000 {
			n := r.Uint32() | 1<<31
			want := big.NewInt(int64(n)).ProbablyPrime(0) // exact below 2⁶⁴
			if got := IsPrime(n); got != want {
				t.Fatalf("IsPrime(%d) = %v, math/big says %v", n, got, want)
			}
			if want {
				primes++
			}
		}
		if primes == 0 {
			t.Fatal("no primes among the samples; the comparison tested nothing")
		}
	})
}

func TestMaglevHash(t *testing.T) {
	// FNV-1a-64 test vectors from draft-eastlake-fnv, and the standard
	// library's implementation as a second opinion.
	vectors := []struct {
		name string
		in   string
		want uint64
	}{
		{"the empty string hashes to the offset basis", "", 0xcbf29ce484222325},
		{"a hashes to the published vector", "a", 0xaf63dc4c8601ec8c},
		{"foobar hashes to the published vector", "foobar", 0x85944171f73967e8},
	}
	for _, tt := range vectors {
		t.Run(tt.name, func(t *testing.T) {
			if got := fnv1a64(tt.in); got != tt.want {
				t.Errorf("fnv1a64(%q) = %#x, want %#x", tt.in, got, tt.want)
			}
		})
	}
	t.Run("fnv1a64 agrees with hash/fnv", func(t *testing.T) {
		for _, s := range []string{"198.18.0.1:443", "[2001:db8::1]:443", "backend-a", "\x00\xff"} {
			h := fnv.New64a()
			h.Write([]byte(s))
			if got, want := fnv1a64(s), h.Sum64(); got != want {
				t.Errorf("fnv1a64(%q) = %#x, hash/fnv says %#x", s, got, want)
			}
		}
	})
	t.Run("offsets and skips lie in range for every size", func(t *testing.T) {
		for _, m := range []uint32{2, 3, 7, 65537, 16777213} {
			for i := range 1000 {
				o, s := maglevPermutation(fmt.Sprint("k", i), m)
				if o >= m || s < 1 || s >= m {
					t.Fatalf("m=%d key k%d: offset %d skip %d out of range", m, i, o, s)
				}
			}
		}
	})
}

func TestBuildMaglevRejectsBadInput(t *testing.T) {
	two := []MaglevBackend{{Key: "a", Weight: 1}, {Key: "b", Weight: 1}}
	tests := []struct {
		name     string
		backends []MaglevBackend
		m        uint32
		want     error
	}{
		{"no backends is an error", nil, 65537, ErrNoBackends},
		{"only zero weights is an error", []MaglevBackend{{Key: "a"}, {Key: "b"}}, 65537, ErrNoBackends},
		{"a size that is not prime is an error", two, 65536, ErrMaglevSize},
		{"size zero is an error", two, 0, ErrMaglevSize},
		{"size one is an error", []MaglevBackend{{Key: "a", Weight: 1}}, 1, ErrMaglevSize},
		{"a size smaller than the backends is an error", testBackends(11, equalWeight), 7, ErrMaglevSize},
		{"a size above the maximum is an error", two, 4294967291, ErrMaglevSize},
		{"an empty key is an error", []MaglevBackend{{Key: "a", Weight: 1}, {Key: "", Weight: 1}}, 7, ErrBackendKey},
		{"a duplicate key is an error", []MaglevBackend{{Key: "a", Weight: 1}, {Key: "b", Weight: 1}, {Key: "a", Weight: 2}}, 7, ErrBackendKey},
		{"a duplicate key with weight zero is still an error", []MaglevBackend{{Key: "a", Weight: 1}, {Key: "a"}}, 7, ErrBackendKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			table, err := BuildMaglev(tt.backends, tt.m)
			if !errors.Is(err, tt.want) {
				t.Fatalf("BuildMaglev error = %v, want %v", err, tt.want)
			}
			if table != nil {
				t.Errorf("BuildMaglev returned a table of %d entries with an error", len(table))
			}
			t.Logf("error reads: %v", err)
		})
	}
}

func TestBuildMaglevMatchesPlainAlgorithms(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	randomWeight := func(maxW uint32) func(int) uint32 {
		return func(int) uint32 { return r.Uint32N(maxW + 1) } // zero included
	}
	tests := []struct {
		name     string
		backends []MaglevBackend
		m        uint32
	}{
		{"one backend fills the whole table", testBackends(1, equalWeight), 7},
		{"as many backends as entries", testBackends(13, equalWeight), 13},
		{"three unequal backends in a tiny table", testBackends(3, risingWeight), 7},
		{"random small weights with zeros", testBackends(50, randomWeight(5)), 1009},
		{"random large weights", testBackends(200, randomWeight(1<<31)), 65537},
		{"weights near the uint32 limit", testBackends(20, func(i int) uint32 { return 1<<32 - 1 - uint32(i) }), 65537},
		{"one huge weight among small ones", testBackends(40, func(i int) uint32 { return max(1, uint32(i/39)*(1<<32-1)) }), 10007},
		{"rising weights at the default size", testBackends(300, risingWeight), DefaultMaglevSize},
		{"one backend with most of the weight", testBackends(200, func(i int) uint32 { return max(1, uint32(1-min(i, 1))*1000000) }), DefaultMaglevSize},
	}
	for _, tt := range tests {
		want := referenceMaglev(tt.backends, tt.m)
		for _, strategy := range []struct {
			name string
			s    maglevStrategy
		}{{"", fillAuto}, {" when scanning", fillScan}, {" when scheduling by heap", fillHeap}} {
			t.Run(tt.name+" as the reference does"+strategy.name, func(t *testing.T) {
				got, err := buildMaglev(tt.backends, tt.m, strategy.s)
				if err != nil {
					t.Fatal(err)
				}
				for j := range got {
					if int64(got[j]) != want[j] {
						t.Fatalf("entry %d = %d, reference says %d", j, got[j], want[j])
					}
				}
			})
		}
	}

	t.Run("equal weights give the paper's unweighted table", func(t *testing.T) {
		for _, w := range []uint32{1, 7, 1<<32 - 1} {
			bs := testBackends(100, func(int) uint32 { return w })
			got := mustBuildMaglev(t, bs, DefaultMaglevSize)
			want := paperMaglev(bs, DefaultMaglevSize)
			for j := range got {
				if int64(got[j]) != want[j] {
					t.Fatalf("weight %d: entry %d = %d, Pseudocode 1 says %d", w, j, got[j], want[j])
				}
			}
		}
	})

	t.Run("scaling every weight by the same factor changes nothing", func(t *testing.T) {
		bs := testBackends(100, risingWeight)
		scaled := testBackends(100, func(i int) uint32 { return 1000 * risingWeight(i) })
		a, b := mustBuildMaglev(t, bs, DefaultMaglevSize), mustBuildMaglev(t, scaled, DefaultMaglevSize)
		for j := range a {
			if a[j] != b[j] {
				t.Fatalf("entry %d: %d with weights 1..100, %d with weights 1000..100000", j, a[j], b[j])
			}
		}
	})
}

func TestBuildMaglevIsDeterministic(t *testing.T) {
	t.Run("shuffled input gives the same owner for every entry", func(t *testing.T) {
		for _, n := range []int{2, 10, 100, 1000} {
			bs := testBackends(n, risingWeight)
			want := ownerKeys(bs, mustBuildMaglev(t, bs, DefaultMaglevSize))
			r := rand.New(rand.NewPCG(uint64(n), 5))
			for range 3 {
				shuffled := append([]MaglevBackend(nil), bs...)
				r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
				got := ownerKeys(shuffled, mustBuildMaglev(t, shuffled, DefaultMaglevSize))
				for j := range got {
					if got[j] != want[j] {
						t.Fatalf("n=%d: entry %d owned by %s after a shuffle, %s before", n, j, got[j], want[j])
					}
				}
			}
		}
	})

	// The digests pin the hash (FNV-1a-64 + fmix64 with fixed seeds) and the
	// fill: a change of either, or a platform on which they differ, fails
	// here. Every spooky instance behind one ECMP group must build these exact
	// tables. The table is serialised as little-endian uint32 indices into
	// the input, which is given in key order.
	golden := []struct {
		name     string
		backends []MaglevBackend
		m        uint32
		sha256   string
	}{
		{"ten backends with weights one to ten hash to the pinned digest",
			testBackends(10, risingWeight), DefaultMaglevSize,
			"7251ab5677fb7b6cea7b689af805e62485aa2bb1d6d73b672f7c1dafa4e8d504"},
		{"a thousand equal backends hash to the pinned digest",
			testBackends(1000, equalWeight), DefaultMaglevSize,
			"f32c6d5e374f60a600761901cf2c06d7d0de65675973585e00a84392a44307fe"},
		{"three named backends in a small table hash to the pinned digest",
			[]MaglevBackend{{"alpha", 3}, {"bravo", 1}, {"charlie", 2}}, 251,
			"c32e3cd1a5711dc10ee6d83c03f0babe40950fa7428752c353d7c9da544cbf97"},
	}
	for _, tt := range golden {
		t.Run(tt.name, func(t *testing.T) {
			table := mustBuildMaglev(t, tt.backends, tt.m)
			buf := make([]byte, 4*len(table))
			for j, v := range table {
				binary.LittleEndian.PutUint32(buf[4*j:], v)
			}
			sum := sha256.Sum256(buf)
			if got := hex.EncodeToString(sum[:]); got != tt.sha256 {
				t.Errorf("sha256 of table = %s, want %s", got, tt.sha256)
			}
		})
	}
}

// maglevCounts returns how many entries each backend owns.
func maglevCounts(n int, table []uint32) []int {
	counts := make([]int, n)
	for _, b := range table {
		counts[b]++
	}
	return counts
}

func TestBuildMaglevSharesFollowWeights(t *testing.T) {
	weightings := []struct {
		name   string
		weight func(int) uint32
	}{
		{"equal weights", equalWeight},
		{"weights one to n", risingWeight},
		{"alternating weights 1 and 1000", twoHeavyWeight},
	}
	sizes := []struct {
		n int
		m uint32
	}{
		{2, DefaultMaglevSize},
		{3, 1009},
		{10, 1009},
		{100, 10007},
		{100, DefaultMaglevSize},
		{655, DefaultMaglevSize},
		{1000, 100003},
	}
	for _, w := range weightings {
		for _, sz := range sizes {
			name := fmt.Sprintf("%s over %d backends in %d entries", w.name, sz.n, sz.m)
			t.Run(name+" stay within 1% of the table of their share", func(t *testing.T) {
				bs := testBackends(sz.n, w.weight)
				counts := maglevCounts(sz.n, mustBuildMaglev(t, bs, sz.m))
				var total float64
				for _, b := range bs {
					total += float64(b.Weight)
				}
				mean := total / float64(sz.n)
				worst := 0.0
				for i, b := range bs {
					ideal := float64(sz.m) * float64(b.Weight) / total
					dev := float64(counts[i]) - ideal
					if abs := max(dev, -dev) / float64(sz.m); abs > 0.01 {
						t.Errorf("backend %s (weight %d) owns %d entries, ideal %.1f: off by %.3f%% of the table",
							b.Key, b.Weight, counts[i], ideal, 100*abs)
					}
					// The bound derived in maglev.go: at most 2 entries over
					// the ideal, and under it by less than 2·weight/mean.
					if dev >= 2 || -dev >= 2*float64(b.Weight)/mean {
						t.Errorf("backend %s (weight %d) owns %d entries, ideal %.2f: outside (−2·w/mean, +2)",
							b.Key, b.Weight, counts[i], ideal)
					}
					worst = max(worst, max(dev, -dev))
				}
				t.Logf("largest deviation from the ideal share: %.2f entries", worst)
			})
		}
	}
}

func TestBuildMaglevCoversEveryBackend(t *testing.T) {
	tests := []struct {
		name     string
		backends []MaglevBackend
		m        uint32
	}{
		{"equal weights", testBackends(1000, equalWeight), DefaultMaglevSize},
		{"rising weights", testBackends(1000, risingWeight), DefaultMaglevSize},
		{"a weight of 1 beside weights near 2³²", testBackends(100, func(i int) uint32 {
			if i == 50 {
				return 1
			}
			return 1<<32 - 1
		}), 1009},
		{"as many backends as entries", testBackends(251, equalWeight), 251},
		{"zero weights mixed in", testBackends(300, func(i int) uint32 { return uint32(i % 3) }), DefaultMaglevSize},
	}
	for _, tt := range tests {
		t.Run(tt.name+" gives every entry a valid backend and every weighted backend an entry", func(t *testing.T) {
			table := mustBuildMaglev(t, tt.backends, tt.m)
			for j, b := range table {
				if int(b) >= len(tt.backends) {
					t.Fatalf("entry %d = %d, out of range for %d backends", j, b, len(tt.backends))
				}
			}
			counts := maglevCounts(len(tt.backends), table)
			for i, b := range tt.backends {
				switch {
				case b.Weight > 0 && counts[i] == 0:
					t.Errorf("backend %s with weight %d owns no entry", b.Key, b.Weight)
				case b.Weight == 0 && counts[i] != 0:
					t.Errorf("backend %s with weight 0 owns %d entries", b.Key, counts[i])
				}
			}
		})
	}
}

// disruption compares two tables by owner key. It returns the fraction of the
// entries owned in before by a backend that is in both sets that have a
// different owner in after ("survivor churn"), and the number of entries.
func disruption(before, after []string, survives func(key string) bool) (frac float64, moved, total int) {
	for j := range before {
		if !survives(before[j]) {
			continue
		}
		total++
		if after[j] != before[j] {
			moved++
		}
	}
	return float64(moved) / float64(total), moved, total
}

// Maglev favours balance over minimal disruption (§3.4): when a backend
// leaves, its own entries must move, and some entries of survivors move too,
// because once one turn of the fill lands elsewhere the later turns of other
// backends can find their preferred entries taken. Measured here (see the
// logs): for one of 100 backends removed or added at M=65537, 0.6% of
// survivors' entries move on average and 0.8% at worst, below the 1% (1/N)
// the leaving backend itself held; doubling one weight moves about as much.
// We assert 3%, about four times the worst measured, so the test fails on a
// real regression (a permutation that depends on the set or order moves tens
// of percent; modulo-N hashing moves 99%) but not on a different key set.
func TestBuildMaglevDisruptsLittle(t *testing.T) {
	const n = 100
	const bound = 0.03
	weightings := []struct {
		name   string
		weight func(int) uint32
	}{
		{"equal weights", equalWeight},
		{"weights one to n", risingWeight},
	}
	for _, w := range weightings {
		bs := testBackends(n, w.weight)
		before := ownerKeys(bs, mustBuildMaglev(t, bs, DefaultMaglevSize))

		t.Run("removing one of 100 backends with "+w.name+" moves few survivor entries", func(t *testing.T) {
			worst, sum := 0.0, 0.0
			for gone := range n {
				rest := append(append([]MaglevBackend(nil), bs[:gone]...), bs[gone+1:]...)
				after := ownerKeys(rest, mustBuildMaglev(t, rest, DefaultMaglevSize))
				frac, moved, total := disruption(before, after, func(k string) bool { return k != bs[gone].Key })
				if frac > bound {
					t.Errorf("removing %s moved %d of %d survivor entries (%.2f%%), want at most %.0f%%",
						bs[gone].Key, moved, total, 100*frac, 100*bound)
				}
				worst, sum = max(worst, frac), sum+frac
			}
			t.Logf("survivor entries moved when one backend leaves: mean %.3f%%, worst %.3f%% (over all %d removals)",
				100*sum/n, 100*worst, n)
		})

		t.Run("adding a 101st backend with "+w.name+" moves few entries between the others", func(t *testing.T) {
			worst, sum := 0.0, 0.0
			const adds = 20
			for k := range adds {
				added := MaglevBackend{Key: fmt.Sprintf("198.19.0.%d:443", k+1), Weight: w.weight(n)}
				grown := append(append([]MaglevBackend(nil), bs...), added)
				after := ownerKeys(grown, mustBuildMaglev(t, grown, DefaultMaglevSize))
				// Entries the new backend takes must move; count those that
				// went from one old backend to another.
				between := 0
				for j := range before {
					if after[j] != before[j] && after[j] != added.Key {
						between++
					}
				}
				frac := float64(between) / float64(len(before))
				if frac > bound {
					t.Errorf("adding %s moved %d of %d entries between old backends (%.2f%%), want at most %.0f%%",
						added.Key, between, len(before), 100*frac, 100*bound)
				}
				worst, sum = max(worst, frac), sum+frac
			}
			t.Logf("entries moved between old backends when one joins: mean %.3f%%, worst %.3f%% (over %d additions)",
				100*sum/adds, 100*worst, adds)
		})
	}

	t.Run("doubling one backend's weight moves few entries it did not gain", func(t *testing.T) {
		bs := testBackends(n, equalWeight)
		before := ownerKeys(bs, mustBuildMaglev(t, bs, DefaultMaglevSize))
		worst := 0.0
		for k := 0; k < n; k += 10 {
			heavier := append([]MaglevBackend(nil), bs...)
			heavier[k].Weight = 2
			after := ownerKeys(heavier, mustBuildMaglev(t, heavier, DefaultMaglevSize))
			between := 0
			for j := range before {
				if after[j] != before[j] && after[j] != heavier[k].Key {
					between++
				}
			}
			frac := float64(between) / float64(len(before))
			if frac > bound {
				t.Errorf("doubling %s moved %.2f%% of entries between other backends, want at most %.0f%%",
					heavier[k].Key, 100*frac, 100*bound)
			}
			worst = max(worst, frac)
		}
		t.Logf("entries moved between other backends when one doubles its weight: worst %.3f%%", 100*worst)
	})
}
