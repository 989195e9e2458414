package config

// Defaults of the slow path (SlowPathConfig).
const (
	// DefaultCIDCacheSize is the number of DCIDs cid_cache holds: at a
	// few entries per connection (each CID a server issues), tens of
	// thousands of connections. 65536 entries of 32 octets are 4 MB.
	DefaultCIDCacheSize = 65536
	// DefaultSlowPathRate is how many cid_cache misses per second one CPU
	// hands to the slow path for one VIP. The slow path decrypts, caches
	// and sends about 800k datagrams per CPU-second on the build machines
	// (single pass, with its TX ring: BenchmarkSlowPathTX in `make
	// bench`, docs/benchmarks.md); under a fifth of that leaves the core
	// room for the other VIPs and queues, and is far above the rate at
	// which new connections' first datagrams arrive.
	DefaultSlowPathRate = 150_000
	// DefaultSlowPathBurst is how many misses above the rate one CPU may
	// hand up at once: below the AF_XDP RX ring (2048 entries), which
	// must never overflow (a redirected frame that finds it full is lost).
	DefaultSlowPathBurst = 512
)

// Bounds of the slow path settings.
const (
	// MinCIDCacheSize and MaxCIDCacheSize bound cid_cache_size.
	MinCIDCacheSize = 1024
	MaxCIDCacheSize = 1 << 24
	// MaxSlowPathBurst is the AF_XDP RX ring's size: a larger burst could
	// overflow it.
	MaxSlowPathBurst = 2048
)

// SlowPathConfig is the `slow_path` section: how the load balancer routes
// encrypted QUIC-LB connection IDs, which XDP cannot decrypt (DESIGN.md
// "Encrypted CIDs"). A datagram whose DCID misses cid_cache goes to Go over
// AF_XDP, which decrypts it, forwards it and caches DCID → backend.
type SlowPathConfig struct {
	// CIDCacheSize is the number of entries of cid_cache (an LRU hash).
	// Only DCIDs that decrypt to a server ID in use are inserted, and
	// every hit refreshes an entry, so made-up DCIDs cannot push out
	// those of live connections. A change takes effect at the next
	// attach after `spooky detach` (the map is pinned). If zero, 65536.
	CIDCacheSize int `yaml:"cid_cache_size"`
	// Rate is how many cid_cache misses per second each CPU may hand to
	// the slow path, per VIP; the rest are routed by the flow table and
	// Maglev, and counted (cid_slow_path_limited). If zero, 150000.
	Rate int `yaml:"rate"`
	// Burst is how many misses over Rate each CPU may hand up at once,
	// at most 2048. If zero, 512.
	Burst int `yaml:"burst"`
}

func (c *SlowPathConfig) setDefaults(d defaulter) {
	def(d, "slow_path.cid_cache_size", &c.CIDCacheSize, DefaultCIDCacheSize)
	def(d, "slow_path.rate", &c.Rate, DefaultSlowPathRate)
	def(d, "slow_path.burst", &c.Burst, DefaultSlowPathBurst)
}

func (v *validator) slowPath(c SlowPathConfig) {
	if c.CIDCacheSize < MinCIDCacheSize || c.CIDCacheSize > MaxCIDCacheSize {
		v.errorf("slow_path.cid_cache_size", "cid_cache_size: %d is out of range %d..%d", c.CIDCacheSize, MinCIDCacheSize, MaxCIDCacheSize)
	}
	v.positive("slow_path.rate", c.Rate)
	if c.Rate > 1_000_000_000 {
		v.errorf("slow_path.rate", "rate: %d is more than one datagram per nanosecond", c.Rate)
	}
	v.positive("slow_path.burst", c.Burst)
	if c.Burst > MaxSlowPathBurst {
		v.errorf("slow_path.burst", "burst: %d is more than the AF_XDP RX ring holds (%d)", c.Burst, MaxSlowPathBurst)
	}
}
