package forwarder

import (
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"strings"
)

// Weighted Maglev lookup tables (Eisenbud et al., "Maglev: A Fast and Reliable
// Software Network Load Balancer", NSDI'16, §3.4 "Backend Selection",
// Pseudocode 1), with weights handled the way Katran's MaglevHashV2 does.
//
// Permutation. Each backend's preference list over the M table entries is
// permutation[j] = (offset + j·skip) mod M with
//
//	offset = h_o(key) mod M
//	skip   = h_s(key) mod (M−1) + 1
//
// (§3.4). Because M is prime and 1 ≤ skip < M, the list visits every entry
// exactly once, so the fill below always terminates. The hashes are fixed so
// that every spooky instance on every machine builds the same table from the
// same configuration (DESIGN.md, "Scale-out"):
//
//	h      = FNV-1a-64(key)  (offset basis 0xcbf29ce484222325, prime 0x100000001b3)
//	h_o    = fmix64(h XOR 0x9e3779b97f4a7c15)
//	h_s    = fmix64(h XOR 0xc2b2ae3d27d4eb4f)
//
// where fmix64 is MurmurHash3's 64-bit finalizer. FNV-1a alone mixes poorly:
// keys such as "198.18.0.1:443" and "198.18.0.2:443" differ in one byte and
// FNV-1a's low-order state bits depend only on low-order bits of the input,
// so its outputs for such keys are correlated. fmix64 is a bijection with full
// avalanche, so h_o and h_s behave as two independent hashes of the key
// (unless two keys collide in all 64 bits of FNV-1a). The weight is not hashed:
// changing a backend's weight changes how many entries it takes, not where it
// prefers them, which keeps a weight change as disruptive as the paper's
// add/remove and no more.
//
// Weights. Katran's first version (katran/lib/MaglevHash.cpp) gives backend
// i weight_i turns in the first round and one turn per round after that, so
// weights only shape the start of the fill and are lost in a 65537-entry
// table. Giving weight_i turns in every round instead distorts shares by up
// to a round of turns and, when Σweight exceeds M, leaves backends late in the
// order with nothing. Katran's MaglevHashV2 keeps a credit per backend, adds
// weight_i every round and lets the backend take one turn whenever the credit
// reaches max(weight): a Bresenham-style "fill to weight share". After r
// rounds backend i has taken ⌊r·weight_i/max⌋ turns, so shares track the
// weights to within an entry or two whatever the weights' magnitude. We use
// that scheme with one change: credits start at max−weight_i, so every
// backend with weight > 0 takes a turn in the first round and a configured
// backend always appears in the table (weight 1 next to weight 10⁶ still takes
// some traffic). Backend i then ends with c_i entries, where, with
// ideal_i = M·weight_i/Σweight,
//
//	ideal_i − 2·weight_i/mean(weight) < c_i < ideal_i + 2
//
// (after r full rounds it has 1+⌊(r−1)·weight_i/max⌋ turns, plus at most one
// in the last, partial round). With equal weights every backend takes a turn
// every round, which is exactly Pseudocode 1, and multiplying every weight by
// the same factor yields the same table.
//
// Order. Backends are visited in order of their keys (bytewise), not as given,
// so the table does not depend on the order of the configuration; entries hold
// indices into the slice as given.

// DefaultMaglevSize is the table size the paper uses (§5.3) and the default
// for a VIP's table: the prime 65537, about 65 entries per backend for 1000
// backends, enough for shares within a few hundredths of a percent.
const DefaultMaglevSize uint32 = 65537

// MaxMaglevSize bounds the table size BuildMaglev accepts: 2²⁴ entries
// (64 MiB as uint32). Larger tables buy nothing measurable and cost memory in
// every BPF map slot that holds one.
const MaxMaglevSize uint32 = 1 << 24

// Errors returned by BuildMaglev, wrapped with the offending value.
var (
	// ErrNoBackends means no backend has a weight above zero, so there is
	// nothing to fill the table with.
	ErrNoBackends = errors.New("no backend with weight above zero")
	// ErrMaglevSize means the table size is not prime, is smaller than the
	// number of backends, or exceeds MaxMaglevSize.
	ErrMaglevSize = errors.New("invalid maglev table size")
	// ErrBackendKey means a backend key is empty or appears twice.
	ErrBackendKey = errors.New("invalid maglev backend key")
)

// MaglevBackend is one backend as the Maglev table sees it.
type MaglevBackend struct {
	// Key identifies the backend stably across restarts and hosts, such as
	// its name or "address:port". It alone decides where in the table the
	// backend prefers its entries. Keys must be non-empty and unique.
	Key string
	// Weight is the backend's relative share of the table. A backend with
	// weight 0 gets no entries (it is configured but takes no new flows).
	Weight uint32
}

// BuildMaglev returns a Maglev lookup table of m entries. Each entry is an
// index into backends, as given; a packet whose flow hashes to h goes to
// backends[table[h mod m]]. The table depends only on the set of (Key,
// Weight) pairs and m, not on the order of backends, the process or the
// machine.
//
// m must be prime (see IsPrime), at least len(backends) and at most
// MaxMaglevSize; use DefaultMaglevSize unless there is a reason not to.
// Every backend with weight > 0 gets at least one entry, and its share of
// the table is its share of the total weight to within a few entries.
func BuildMaglev(backends []MaglevBackend, m uint32) ([]uint32, error) {
	return buildMaglev(backends, m, fillAuto)
}

// maglevStrategy chooses how buildMaglev schedules turns; tests force each.
type maglevStrategy int

const (
	fillAuto maglevStrategy = iota
	fillScan
	fillHeap
)

func buildMaglev(backends []MaglevBackend, m uint32, strategy maglevStrategy) ([]uint32, error) {
	if len(backends) == 0 {
		return nil, fmt.Errorf("build maglev table: %w", ErrNoBackends)
	}
	switch {
	case m > MaxMaglevSize:
		return nil, fmt.Errorf("build maglev table: size %d exceeds %d: %w", m, MaxMaglevSize, ErrMaglevSize)
	case uint64(m) < uint64(len(backends)):
		return nil, fmt.Errorf("build maglev table: size %d is smaller than the %d backends: %w", m, len(backends), ErrMaglevSize)
	case !IsPrime(m):
		return nil, fmt.Errorf("build maglev table: size %d is not prime: %w", m, ErrMaglevSize)
	}

	order := make([]uint32, len(backends))
	for i := range order {
		order[i] = uint32(i)
	}
	slices.SortFunc(order, func(a, b uint32) int {
		return strings.Compare(backends[a].Key, backends[b].Key)
	})
	slots := make([]maglevSlot, 0, len(backends))
	var maxWeight uint64
	for n, i := range order {
		b := &backends[i]
		if b.Key == "" {
			return nil, fmt.Errorf("build maglev table: backend %d: empty key: %w", i, ErrBackendKey)
		}
		if n > 0 && backends[order[n-1]].Key == b.Key {
			return nil, fmt.Errorf("build maglev table: key %q appears twice (backends %d and %d): %w",
				b.Key, min(i, order[n-1]), max(i, order[n-1]), ErrBackendKey)
		}
		if b.Weight == 0 {
			continue
		}
		offset, skip := maglevPermutation(b.Key, m)
		slots = append(slots, maglevSlot{index: i, pos: offset, skip: skip, weight: uint64(b.Weight)})
		maxWeight = max(maxWeight, uint64(b.Weight))
	}
	if len(slots) == 0 {
		return nil, fmt.Errorf("build maglev table: all %d backends have weight 0: %w", len(backends), ErrNoBackends)
	}
	f := maglevFill{m: m, table: make([]uint32, m), taken: make([]uint64, (m+63)/64)}
	// The round-robin scan costs len(slots) steps per round, and there are
	// about m·maxWeight/Σweight rounds: m·(max/mean) steps. When one weight
	// towers over the mean that dwarfs the m·ln m probes of the fill itself
	// (1000 backends, one of them with half the weight: 33 million steps,
	// 21 ms), so such sets go through a heap of next turns instead, which
	// costs O(m·log n) whatever the weights. Both take the same turns in the
	// same order and build the same table.
	var sum uint64
	for i := range slots {
		sum += slots[i].weight
	}
	if strategy == fillHeap || strategy == fillAuto && maxWeight*uint64(len(slots)) > maglevHeapSkew*sum {
		f.fillByHeap(slots, maxWeight)
	} else {
		f.fillByScan(slots, maxWeight)
	}
	return f.table, nil
}

// maglevHeapSkew is the ratio of the largest weight to the mean weight above
// which BuildMaglev schedules turns with a heap instead of scanning every
// backend every round. BenchmarkMaglevFillStrategy (1000 backends, m = 65537)
// put the crossing there: the heap costs about 4 ms at any skew, the scan
// 1.5 ms at skew 2, 2.8 ms at 32 and 4.1 ms at 64, and grows linearly past it.
const maglevHeapSkew = 64

// maglevSlot is a backend's fill state while a table is built.
type maglevSlot struct {
	index  uint32 // index into the caller's backends
	pos    uint32 // next entry of this backend's permutation to try
	skip   uint32
	weight uint64
	turns  uint64 // turns taken so far
}

// maglevFill is a table being filled.
type maglevFill struct {
	m      uint32
	filled uint32
	table  []uint32
	// taken marks filled entries, one bit each: 8 KiB for m = 65537, so the
	// probe loop, which runs about m·ln m times in all (§3.4), stays in L1
	// cache instead of reading the 256 KiB table.
	taken []uint64
}

// turn gives s the next free entry of its permutation (the inner loop of
// Pseudocode 1) and reports whether the table is now full.
func (f *maglevFill) turn(s *maglevSlot) (full bool) {
	p, m, skip, taken := s.pos, f.m, s.skip, f.taken
	for taken[p>>6]&(1<<(p&63)) != 0 {
		p = addMod(p, skip, m)
	}
	taken[p>>6] |= 1 << (p & 63)
	f.table[p] = s.index
	s.pos = addMod(p, skip, m)
	s.turns++
	f.filled++
	return f.filled == m
}

// addMod returns (p+skip) mod m for p, skip < m ≤ 2²⁴ (so the sum fits).
// A branch-free form (adding m back by the sign of p+skip−m) measured slower:
// it lengthens the dependency chain of the probe loop, which the branch lets
// the CPU speculate past.
func addMod(p, skip, m uint32) uint32 {
	if p += skip; p >= m {
		p -= m
	}
	return p
}

// fillByScan visits the backends in key order, round after round, as
// Pseudocode 1 does. A backend's credit starts at maxWeight−weight and grows by
// its weight each round; when it reaches maxWeight the backend takes a turn and
// pays maxWeight. Its k-th turn (from 0) thus falls in round
// 1 + ⌈k·maxWeight/weight⌉.
func (f *maglevFill) fillByScan(slots []maglevSlot, maxWeight uint64) {
	credit := make([]uint64, len(slots))
	for i := range slots {
		credit[i] = maxWeight - slots[i].weight
	}
	for {
		for i := range slots {
			// credit < maxWeight before the add and weight ≤ maxWeight <
			// 2³², so this never overflows.
			credit[i] += slots[i].weight
			if credit[i] < maxWeight {
				continue
			}
			credit[i] -= maxWeight
			if f.turn(&slots[i]) {
				return
			}
		}
	}
}

// fillByHeap takes the same turns as fillByScan, in the same order, by keeping
// the backends in a min-heap keyed by (round of next turn, key rank).
func (f *maglevFill) fillByHeap(slots []maglevSlot, maxWeight uint64) {
	// A key is round<<24 | rank; rank < m ≤ 2²⁴. The heaviest backend takes a
	// turn every round, so the fill ends by round m ≤ 2²⁴; rounds past that
	// are clamped to 2³², which fits and is never reached.
	const rankBits = 24
	nextRound := func(s *maglevSlot) uint64 {
		// s.turns < 2²⁴ and maxWeight < 2³², so the product fits.
		r := 1 + (s.turns*maxWeight+s.weight-1)/s.weight
		return min(r, 1<<32)
	}
	heap := make([]uint64, len(slots)) // every backend's first turn is in round 1
	for i := range heap {
		heap[i] = 1<<rankBits | uint64(i)
	}
	for {
		i := heap[0] & (1<<rankBits - 1)
		s := &slots[i]
		if f.turn(s) {
			return
		}
		heap[0] = nextRound(s)<<rankBits | i
		siftDown(heap)
	}
}

// siftDown restores the min-heap property of h after h[0] grew.
func siftDown(h []uint64) {
	n := len(h)
	i, x := 0, h[0]
	for {
		c := 2*i + 1
		if c >= n {
			break
		}
		if c+1 < n && h[c+1] < h[c] {
			c++
		}
		if x <= h[c] {
			break
		}
		h[i] = h[c]
		i = c
	}
	h[i] = x
}

// maglevPermutation returns the offset and skip of key's preference list in a
// table of m entries (§3.4), with the hashes described at the top of this file.
func maglevPermutation(key string, m uint32) (offset, skip uint32) {
	h := fnv1a64(key)
	offset = uint32(fmix64(h^0x9e3779b97f4a7c15) % uint64(m))
	skip = uint32(fmix64(h^0xc2b2ae3d27d4eb4f)%uint64(m-1)) + 1
	return offset, skip
}

// fnv1a64 is the 64-bit FNV-1a hash of s (draft-eastlake-fnv, §2).
func fnv1a64(s string) uint64 {
	h := uint64(0xcbf29ce484222325)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 0x100000001b3
	}
	return h
}

// fmix64 is the 64-bit finalizer of MurmurHash3 (Appleby): a bijection on
// uint64 in which every input bit affects every output bit.
func fmix64(k uint64) uint64 {
	k ^= k >> 33
	k *= 0xff51afd7ed558ccd
	k ^= k >> 33
	k *= 0xc4ceb9fe1a85ec53
	k ^= k >> 33
	return k
}

// IsPrime reports whether n is prime. It is exact for every uint32: a
// Miller–Rabin test with the bases 2, 7 and 61 has no strong pseudoprime
// below 4 759 123 141 (Jaeschke, Math. Comp. 61, 1993).
func IsPrime(n uint32) bool {
	if n < 2 {
		return false
	}
	for _, p := range [...]uint32{2, 3, 5, 7, 11, 13, 61} {
		if n%p == 0 {
			return n == p
		}
	}
	// n−1 = d·2^s with d odd.
	d := n - 1
	s := bits.TrailingZeros32(d)
	d >>= s
	for _, a := range [...]uint64{2, 7, 61} {
		x := powMod(a, uint64(d), uint64(n))
		if x == 1 || x == uint64(n-1) {
			continue
		}
		composite := true
		for range s - 1 {
			x = x * x % uint64(n)
			if x == uint64(n-1) {
				composite = false
				break
			}
		}
		if composite {
			return false
		}
	}
	return true
}

// powMod returns a^e mod n for n < 2³², where products fit in uint64.
func powMod(a, e, n uint64) uint64 {
	r := uint64(1)
	a %= n
	for ; e > 0; e >>= 1 {
		if e&1 == 1 {
			r = r * a % n
		}
		a = a * a % n
	}
	return r
}
