package forwarder

import (
	"encoding/binary"
	"testing"

	"github.com/spooky-lb/spooky/cid"
)

// routeCase is a frame for one routing path and how to make each
// iteration's frame distinct where the path needs it (Maglev: a new
// client every time, so that no flow entry catches it).
type routeCase struct {
	name  string
	path  Path
	frame func(tb testing.TB) []byte
	vary  bool
}

func routeCases() []routeCase {
	return []routeCase{
		{name: "short header CID hit", path: PathCID, frame: func(tb testing.TB) []byte {
			return udp4(rtVIP, quicShort(plainCID(2), 1200)).bytes()
		}},
		{name: "encrypted CID cache hit", path: PathCIDCache, frame: func(tb testing.TB) []byte {
			return udp4(rtVIP, quicShort(mustEncryptedCID(tb, 2), 1200)).bytes()
		}},
		{name: "flow hit", path: PathFlow, frame: func(tb testing.TB) []byte {
			return udp4(rtVIP, quicLong(long0RTT, cid.Version1, []byte{0x7f, 1, 2, 3, 4, 5, 6, 7}, 1200)).bytes()
		}},
		{name: "Maglev", path: PathMaglev, vary: true, frame: func(tb testing.TB) []byte {
			return testFrame{src: rtClient6, dst: rtVIP6,
				payload: quicLong(longInitial, cid.Version1, []byte{0x7f, 1, 2, 3, 4, 5, 6, 7}, 1200)}.bytes()
		}},
	}
}

// varyClient gives frame (IPv6, untagged) client i: the source address's
// last four octets and the port come from i.
func varyClient(frame []byte, i uint32) {
	binary.BigEndian.PutUint32(frame[ethHdrLen+8+12:], i)
	binary.BigEndian.PutUint16(frame[ethHdrLen+ipv6HdrLen:], uint16(i>>7))
}

func mustRouteSetup(tb testing.TB, tc routeCase) (*Router, []byte) {
	tb.Helper()
	r := mustRouter(tb, nil)
	if err := r.CacheCID(0, mustEncryptedCID(tb, 2), 2); err != nil {
		tb.Fatal(err)
	}
	f := tc.frame(tb)
	if d := r.Route(f); tc.path == PathFlow && d.Path != PathMaglev {
		tb.Fatalf("first packet: %v, want maglev", d)
	}
	if tc.vary {
		varyClient(f, 1)
	}
	if d := r.Route(f); d.Path != tc.path || d.Verdict != VerdictTX {
		tb.Fatalf("Route = %v, want tx by %v", d, tc.path)
	}
	return r, f
}

func TestRouterRouteDoesNotAllocate(t *testing.T) {
	for _, tc := range routeCases() {
		t.Run(tc.name, func(t *testing.T) {
			r, f := mustRouteSetup(t, tc)
			i := uint32(2)
			allocs := testing.AllocsPerRun(1000, func() {
				if tc.vary {
					varyClient(f, i)
					i++
				}
				r.Route(f)
			})
			if allocs != 0 {
				t.Errorf("Route allocates %.1f times per packet", allocs)
			}
		})
	}
}

func BenchmarkRoute(b *testing.B) {
	for _, tc := range routeCases() {
		b.Run(tc.name, func(b *testing.B) {
			r, f := mustRouteSetup(b, tc)
			b.ReportAllocs()
			i := uint32(2)
			for b.Loop() {
				if tc.vary {
					varyClient(f, i)
					i++
				}
				r.Route(f)
			}
		})
	}
	b.Run("RouteDatagram short header CID hit", func(b *testing.B) {
		r := mustRouter(b, nil)
		payload := quicShort(plainCID(2), 1200)
		b.ReportAllocs()
		for b.Loop() {
			r.RouteDatagram(rtClient4, rtVIP, payload)
		}
	})
}
