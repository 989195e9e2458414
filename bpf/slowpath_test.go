package bpf

import (
	"net/netip"
	"testing"
	"time"

	"github.com/spooky-lb/spooky/xsk"
)

const xdpRedirect = 4

// mustSlowPathSocket registers an AF_XDP socket for RX queue 0 in xsks.
// It is bound to the loopback device, which has no XDP program, so nothing
// is ever redirected to it for real: BPF_PROG_TEST_RUN only returns the
// verdict (no live frames) and the socket makes the XSKMAP entry exist.
func mustSlowPathSocket(tb testing.TB, objs *LBObjects) {
	tb.Helper()
	s, err := xsk.Open(1, 0, &xsk.Options{Mode: xsk.ModeCopy, Frames: 64, RingSize: 32})
	if err != nil {
		tb.Fatalf("open af_xdp socket on lo: %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	if err := s.Register(objs.Xsks); err != nil {
		tb.Fatal(err)
	}
}

func mustSetVIPFlags(tb testing.TB, objs *LBObjects, vip netip.AddrPort, flags VIPFlags) {
	tb.Helper()
	var info VIPInfo
	k := NewVIPKey(vip)
	if err := objs.Vips.Lookup(k, &info); err != nil {
		tb.Fatal(err)
	}
	info.Flags |= flags
	mustPut(tb, objs.Vips, k, info)
}

func TestSlowPathRedirectsCIDCacheMissesWithinTheLimit(t *testing.T) {
	skipUnlessRoot(t)
	pinToOneCPU(t)
	objs := mustWorld(t)
	mustSetVIPFlags(t, objs, vipL2, VIPSlowPath)
	miss := frame{src: client4, dst: vipL2, payload: shortHeader(append([]byte{2 << 5}, encryptedCID[1:]...))}.bytes()
	hit := frame{src: client4, dst: vipL2, payload: shortHeader(encryptedCID)}.bytes()
	plain := frame{src: client4, dst: vipL2, payload: shortHeader(plainCID(1))}.bytes()

	t.Run("without a socket on the queue a miss is hashed", func(t *testing.T) {
		before := mustCounters(t, objs)
		if v, _ := mustRun(t, objs.XdpLb, miss); v != xdpTX {
			t.Fatalf("verdict %d, want XDP_TX", v)
		}
		after := mustCounters(t, objs)
		if d := after.reasons[lbReasonREASON_SLOW_PATH_NO_SOCKET] - before.reasons[lbReasonREASON_SLOW_PATH_NO_SOCKET]; d != 1 {
			t.Errorf("slow_path_no_socket counted %d times, want 1", d)
		}
	})

	mustSlowPathSocket(t, objs)
	// One miss per hour, and a burst of four more: five pass, the rest are
	// limited whatever the clock does during the test.
	hour := uint64(time.Hour)
	mustPut(t, objs.SlowPathLimits, uint32(0), SlowPathLimit{IntervalNs: hour, BurstNs: 4 * hour})

	t.Run("misses go to the socket until the limit, then are hashed", func(t *testing.T) {
		before := mustCounters(t, objs)
		var redirected, hashed int
		for range 12 {
			switch v, _ := mustRun(t, objs.XdpLb, miss); v {
			case xdpRedirect:
				redirected++
			case xdpTX:
				hashed++
			default:
				t.Fatalf("verdict %d", v)
			}
		}
		if redirected != 5 || hashed != 7 {
			t.Errorf("%d redirected and %d hashed, want 5 and 7", redirected, hashed)
		}
		after := mustCounters(t, objs)
		vb, va := before.vips[0], after.vips[0]
		if va.SlowPath-vb.SlowPath != 5 || va.SlowPathLimited-vb.SlowPathLimited != 7 ||
			va.Maglev+va.Flow-vb.Maglev-vb.Flow != 7 {
			t.Errorf("vip counters moved by slow_path %d, limited %d, flow and maglev %d; want 5, 7, 7",
				va.SlowPath-vb.SlowPath, va.SlowPathLimited-vb.SlowPathLimited, va.Maglev+va.Flow-vb.Maglev-vb.Flow)
		}
		for r, want := range map[Reason]uint64{lbReasonREASON_REDIRECT_SLOW_PATH: 5, lbReasonREASON_SLOW_PATH_LIMITED: 7, lbReasonREASON_CID_CACHE_MISS: 12} {
			if d := after.reasons[r] - before.reasons[r]; d != want {
				t.Errorf("reason %v counted %d times, want %d", r, d, want)
			}
		}
	})

	t.Run("cache hits and plaintext CIDs stay in XDP", func(t *testing.T) {
		for _, f := range [][]byte{hit, plain} {
			if v, _ := mustRun(t, objs.XdpLb, f); v != xdpTX {
				t.Errorf("verdict %d, want XDP_TX", v)
			}
		}
	})

	t.Run("with no limit every miss goes to the socket", func(t *testing.T) {
		mustPut(t, objs.SlowPathLimits, uint32(0), SlowPathLimit{})
		for range 100 {
			if v, _ := mustRun(t, objs.XdpLb, miss); v != xdpRedirect {
				t.Fatalf("verdict %d, want XDP_REDIRECT", v)
			}
		}
	})

	t.Run("a userspace VIP sends every datagram to the socket", func(t *testing.T) {
		mustSetVIPFlags(t, objs, vipIPIP, VIPUserspace)
		before := mustCounters(t, objs)
		for _, f := range [][]byte{
			frame{src: client4, dst: vipIPIP, payload: shortHeader(plainCID(1))}.bytes(),
			frame{src: client4, dst: vipIPIP, payload: longHeader(randomCID)}.bytes(),
			frame{src: client4, dst: vipIPIP, payload: []byte("not quic")}.bytes(),
		} {
			if v, _ := mustRun(t, objs.XdpLb, f); v != xdpRedirect {
				t.Errorf("verdict %d, want XDP_REDIRECT", v)
			}
		}
		after := mustCounters(t, objs)
		if d := after.reasons[lbReasonREASON_REDIRECT_USERSPACE] - before.reasons[lbReasonREASON_REDIRECT_USERSPACE]; d != 3 {
			t.Errorf("redirect_userspace counted %d times, want 3", d)
		}
	})
}

func TestLoadLBSizesCIDCache(t *testing.T) {
	skipUnlessRoot(t)
	objs, err := LoadLB(&LoadOptions{CIDCacheSize: 1024})
	if err != nil {
		t.Fatal(err)
	}
	defer objs.Close()
	if got := objs.CidCache.MaxEntries(); got != 1024 {
		t.Errorf("cid_cache has %d entries, want 1024", got)
	}
}

// BenchmarkEncryptedCIDCacheHit compares, in one run, a short header
// whose encrypted DCID is in cid_cache with one whose plaintext server ID
// XDP reads itself: the cost of routing encrypted CIDs once the slow path
// has cached them (reported as x-plaintext).
func BenchmarkEncryptedCIDCacheHit(b *testing.B) {
	skipUnlessRoot(b)
	objs, err := LoadLB(nil)
	if err != nil {
		b.Fatal(err)
	}
	defer objs.Close()
	fillWorld(b, objs)
	mustSetVIPFlags(b, objs, vipL2, VIPSlowPath)
	if err := InvalidateCaches(objs); err != nil {
		b.Fatal(err)
	}
	pinToOneCPU(b)
	plain := frame{src: client4, dst: vipL2, payload: shortHeader(plainCID(1))}.bytes()
	enc := frame{src: client4, dst: vipL2, payload: shortHeader(encryptedCID)}.bytes()
	var base time.Duration
	b.Run("plaintext-cid", func(b *testing.B) {
		base = benchRepeat(b, objs.XdpLb, plain, xdpTX)
		b.ReportMetric(float64(base.Nanoseconds()), "ns/pkt")
	})
	b.Run("encrypted-cid-cache-hit", func(b *testing.B) {
		before := mustCounters(b, objs).vips[0].CidCache
		d := benchRepeat(b, objs.XdpLb, enc, xdpTX)
		if got := mustCounters(b, objs).vips[0].CidCache - before; got < uint64(b.N) {
			b.Fatalf("%d of %d runs hit cid_cache", got, b.N)
		}
		b.ReportMetric(float64(d.Nanoseconds()), "ns/pkt")
		if base > 0 {
			b.ReportMetric(float64(d)/float64(base), "x-plaintext")
		}
	})
}

func TestCIDCPUCacheFollowsCIDCacheOnceInvalidated(t *testing.T) {
	skipUnlessRoot(t)
	pinToOneCPU(t)
	objs := mustWorld(t)
	mustInvalidateCaches(t, objs)
	enc := frame{src: client4, dst: vipL2, payload: shortHeader(encryptedCID)}.bytes()
	cidCacheHits := func() uint64 { return mustCounters(t, objs).vips[0].CidCache }

	before := cidCacheHits()
	for range 3 {
		mustRoute(t, objs, enc, xdpTX, 2)
	}
	if got := cidCacheHits() - before; got != 3 {
		t.Fatalf("%d of 3 datagrams routed by cid_cache", got)
	}
	k, err := NewCIDKey(0, encryptedCID)
	if err != nil {
		t.Fatal(err)
	}
	if err := objs.CidCache.Delete(k); err != nil {
		t.Fatal(err)
	}
	// Go bumps the generation after deleting entries (Syncer.Apply); from
	// then on no CPU uses its copy.
	mustInvalidateCaches(t, objs)
	before = cidCacheHits()
	if v, _ := mustRun(t, objs.XdpLb, enc); v != xdpTX {
		t.Fatalf("verdict %d, want XDP_TX by Maglev", v)
	}
	if got := cidCacheHits() - before; got != 0 {
		t.Errorf("a deleted DCID was routed by cid_cache after the caches were invalidated")
	}
}
