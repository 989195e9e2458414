package forwarder

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/spooky-lb/spooky/bpf"
	"github.com/spooky-lb/spooky/cid"
)

// The unit-test world: a hand-made Desired (the parity test builds one
// from a configuration with the Planner).
var (
	rtClient4  = netip.MustParseAddrPort("198.18.200.7:40000")
	rtClient6  = netip.MustParseAddrPort("[2001:db8:200::7]:40000")
	rtVIP      = netip.MustParseAddrPort("198.18.10.1:443")
	rtVIP6     = netip.MustParseAddrPort("[2001:db8:10::1]:443")
	rtStrict   = netip.MustParseAddrPort("198.18.10.2:443")
	rtL7       = netip.MustParseAddrPort("198.18.10.3:443")
	rtMissPass = netip.MustParseAddrPort("198.18.10.4:443")
	rtNoTable  = netip.MustParseAddrPort("198.18.10.5:443")
	rtBadTable = netip.MustParseAddrPort("198.18.10.6:443")
	rtNotVIP   = netip.MustParseAddrPort("198.18.10.99:443")
)

// Codepoint 1: plaintext, 2-octet server ID, 6-octet nonce (CID of 9).
// Codepoint 2: encrypted, 2 + 8 (CID of 11).
var rtEncrypted = cid.Config{ID: 2, ServerIDLen: 2, NonceLen: 8,
	Key: []byte{0x8f, 0x95, 0xf0, 0x92, 0x45, 0x76, 0x5f, 0x80, 0x25, 0x69, 0x34, 0xe5, 0x0c, 0x66, 0x20, 0x7f}}

var rtCIDConfigs = [bpf.CIDConfigs]bpf.CIDConfig{
	1: {ServerIdLen: 2, NonceLen: 6, Flags: bpf.CIDConfigPresent},
	2: {ServerIdLen: 2, NonceLen: 8, Flags: bpf.CIDConfigPresent | bpf.CIDConfigEncrypted},
}

// rtTable is a Maglev table of 13 entries, all b.
func rtTable(b uint32) []uint32 {
	t := make([]uint32, 13)
	for i := range t {
		t[i] = b
	}
	return t
}

func mustBackend(tb testing.TB, addr string, flags bpf.BackendFlags) bpf.Backend {
	tb.Helper()
	b, err := bpf.NewBackend(netip.MustParseAddr(addr), []byte{2, 0, 0, 0, 0, 1}, []byte{2, 0, 0, 0, 0, 2}, flags)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func mustSID(tb testing.TB, vip uint32, sid uint16) bpf.ServerIDKey {
	tb.Helper()
	k, err := bpf.NewServerIDKey(vip, []byte{byte(sid >> 8), byte(sid)})
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

func rtDesired(tb testing.TB) *Desired {
	tb.Helper()
	d := &Desired{
		VIPs: map[bpf.VIPKey]DesiredVIP{},
		Backends: map[uint32]bpf.Backend{
			1: mustBackend(tb, "198.18.1.1", bpf.BackendHealthy),
			2: mustBackend(tb, "198.18.1.2", bpf.BackendHealthy),
			3: mustBackend(tb, "198.18.1.3", bpf.BackendDraining),
			4: mustBackend(tb, "198.18.1.4", 0),
			5: mustBackend(tb, "2001:db8:1::5", bpf.BackendHealthy),
			6: mustBackend(tb, "2001:db8:1::6", bpf.BackendHealthy),
		},
		ServerIDs: map[bpf.ServerIDKey]uint32{},
	}
	vip := func(ap netip.AddrPort, info bpf.VIPInfo, table []uint32) {
		info.Cid = rtCIDConfigs
		if table != nil {
			info.MaglevSize = uint32(len(table))
		}
		d.VIPs[bpf.NewVIPKey(ap)] = DesiredVIP{Service: ap.String(), Info: info, Table: table}
	}
	vip(rtVIP, bpf.VIPInfo{Id: 0, Hash: bpf.HashSrcIP}, rtTable(1))
	six := make([]uint32, 13)
	for i := range six {
		six[i] = 5 + uint32(i%2)
	}
	vip(rtVIP6, bpf.VIPInfo{Id: 1, Forwarding: bpf.ForwardingIPIP, Hash: bpf.Hash4Tuple}, six)
	vip(rtStrict, bpf.VIPInfo{Id: 2, Flags: bpf.VIPStrict}, rtTable(1))
	vip(rtL7, bpf.VIPInfo{Id: 3, Mode: bpf.ModeL7}, nil)
	vip(rtMissPass, bpf.VIPInfo{Id: 4, Flags: bpf.VIPCIDMissPass}, rtTable(1))
	vip(rtNoTable, bpf.VIPInfo{Id: 5}, nil)
	vip(rtBadTable, bpf.VIPInfo{Id: 6}, rtTable(4))
	for sid := uint16(1); sid <= 4; sid++ {
		d.ServerIDs[mustSID(tb, 0, sid)] = uint32(sid)
		d.ServerIDs[mustSID(tb, 4, sid)] = uint32(sid)
	}
	d.ServerIDs[mustSID(tb, 1, 5)] = 5
	return d
}

func rtLB(tb testing.TB, addr6 bool) bpf.LBConfig {
	tb.Helper()
	var a6 netip.Addr
	if addr6 {
		a6 = netip.MustParseAddr("2001:db8::1")
	}
	c, err := bpf.NewLBConfig(testLBMAC, netip.MustParseAddr("198.18.0.1"), a6)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

func mustRouter(tb testing.TB, decoders map[uint32]*cid.Decoder) *Router {
	tb.Helper()
	r := NewRouter(rtDesired(tb), decoders)
	r.SetLB(rtLB(tb, true))
	return r
}

// plainCID is a codepoint-1 CID carrying server ID sid.
func plainCID(sid uint16) []byte {
	return []byte{1<<5 | 0x08, byte(sid >> 8), byte(sid), 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6}
}

func mustEncryptedCID(tb testing.TB, sid uint16) []byte {
	tb.Helper()
	e, err := cid.NewEncoder(rtEncrypted, []byte{byte(sid >> 8), byte(sid)})
	if err != nil {
		tb.Fatal(err)
	}
	c, err := e.Encode(nil, []byte{1, 2, 3, 4, 5, 6, 7, byte(sid)})
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

func events(rs ...bpf.Reason) ReasonSet {
	var s ReasonSet
	for _, r := range rs {
		s.add(r)
	}
	return s
}

func udp4(dst netip.AddrPort, payload []byte) testFrame {
	return testFrame{src: rtClient4, dst: dst, payload: payload}
}

// patch returns b with the octet at off set to v.
func patch(b []byte, off int, v byte) []byte {
	b[off] = v
	return b
}

func TestRouterRoute(t *testing.T) {
	tx := func(be uint32, path Path, ev ...bpf.Reason) Decision {
		return Decision{Verdict: VerdictTX, Reason: reasonTX, Backend: be, Path: path, Events: events(ev...)}
	}
	pass := func(r bpf.Reason, ev ...bpf.Reason) Decision {
		return Decision{Verdict: VerdictPass, Reason: r, Events: events(ev...)}
	}
	drop := func(r bpf.Reason, ev ...bpf.Reason) Decision {
		return Decision{Verdict: VerdictDrop, Reason: r, Events: events(ev...)}
	}
	frame := func(f testFrame) []byte { return f.bytes() }
	cut := func(b []byte, n int) []byte { return b[:n] }
	short := func(dcid []byte) []byte { return quicShort(dcid, 30) }
	enc2 := mustEncryptedCID(t, 2)
	v6 := func(payload []byte) []byte { return frame(testFrame{src: rtClient6, dst: rtVIP6, payload: payload}) }

	for _, tc := range []struct {
		name  string
		frame []byte
		want  Decision
	}{
		{"a frame shorter than an Ethernet header is dropped as truncated",
			make([]byte, 13), drop(reasonDropTruncated)},
		{"a VLAN tag cut short is dropped as truncated",
			cut(frame(testFrame{src: rtClient4, dst: rtVIP, vlan: 0x8100}), 16), drop(reasonDropTruncated)},
		{"ARP is passed as not IP",
			append(make([]byte, 12), 0x08, 0x06, 0, 1), pass(reasonPassNotIP)},
		{"a second VLAN tag is passed as not IP",
			func() []byte {
				b := frame(testFrame{src: rtClient4, dst: rtVIP, vlan: 0x88a8, payload: short(plainCID(2))})
				return append(b[:16:16], append([]byte{0x81, 0x00, 0, 7}, b[16:]...)...)
			}(), pass(reasonPassNotIP)},
		{"an IPv4 header cut short is dropped as truncated",
			cut(frame(udp4(rtVIP, nil)), 14+19), drop(reasonDropTruncated)},
		{"an IPv4 IHL below 5 is a bad IP header",
			frame(testFrame{src: rtClient4, dst: rtVIP, ihl: 4}), drop(reasonDropBadIP)},
		{"an IPv4 header of version 6 is a bad IP header",
			frame(testFrame{src: rtClient4, dst: rtVIP, version: 6}), drop(reasonDropBadIP)},
		{"IPv4 TCP is passed as non-UDP",
			frame(testFrame{src: rtClient4, dst: rtVIP, proto: 6, payload: make([]byte, 40)}), pass(reasonPassNonUDP)},
		{"a first IPv4 fragment is passed to the kernel",
			frame(testFrame{src: rtClient4, dst: rtVIP, fragment: ipMF, payload: short(plainCID(2))}), pass(reasonPassFragment)},
		{"a later IPv4 fragment is passed to the kernel",
			frame(testFrame{src: rtClient4, dst: rtVIP, fragment: 0x00b9, payload: short(plainCID(2))}), pass(reasonPassFragment)},
		{"the DF flag alone is no fragment",
			frame(testFrame{src: rtClient4, dst: rtVIP, fragment: 0x4000, payload: short(plainCID(2))}), tx(2, PathCID)},
		{"IPv4 options move the UDP header and are counted",
			frame(testFrame{src: rtClient4, dst: rtVIP, ipOptions: []byte{1, 1, 1, 0}, payload: short(plainCID(2))}),
			tx(2, PathCID, reasonIPOptions)},
		{"IPv4 options that push the UDP header past the end are truncation",
			cut(frame(testFrame{src: rtClient4, dst: rtVIP, ipOptions: make([]byte, 40)}), 14+60+7), drop(reasonDropTruncated)},
		{"a UDP header cut short is dropped as truncated",
			cut(frame(udp4(rtVIP, nil)), 14+20+7), drop(reasonDropTruncated)},
		{"an IPv6 header cut short is dropped as truncated",
			cut(v6(nil), 14+39), drop(reasonDropTruncated)},
		{"an IPv6 header of version 4 is a bad IP header",
			frame(testFrame{src: rtClient6, dst: rtVIP6, version: 4}), drop(reasonDropBadIP)},
		{"IPv6 with a hop-by-hop options header is passed as non-UDP",
			patch(v6(short(plainCID(5))), 14+6, 0), pass(reasonPassNonUDP)},
		{"UDP to an address that is no VIP is passed",
			frame(udp4(rtNotVIP, short(plainCID(2)))), pass(reasonPassNotVIP)},
		{"UDP to a VIP address on another port is passed",
			frame(udp4(netip.AddrPortFrom(rtVIP.Addr(), 8443), short(plainCID(2)))), pass(reasonPassNotVIP)},
		{"a VIP in mode l7 is passed",
			frame(udp4(rtL7, short(plainCID(2)))), pass(reasonPassL7)},
		{"a plaintext CID in a short header goes to its server",
			frame(udp4(rtVIP, short(plainCID(2)))), tx(2, PathCID)},
		{"a plaintext CID in a long header goes to its server",
			frame(udp4(rtVIP, quicLong(longHandshake, cid.Version1, plainCID(2), 40))), tx(2, PathCID)},
		{"an 802.1Q tagged frame routes like an untagged one",
			frame(testFrame{src: rtClient4, dst: rtVIP, vlan: 0x8100, payload: short(plainCID(2))}), tx(2, PathCID)},
		{"an 802.1ad tagged frame routes like an untagged one",
			frame(testFrame{src: rtClient4, dst: rtVIP, vlan: 0x88a8, payload: short(plainCID(2))}), tx(2, PathCID)},
		{"a CID naming a draining backend still goes there",
			frame(udp4(rtVIP, short(plainCID(3)))), tx(3, PathCID)},
		{"a CID naming an unusable backend falls through to Maglev",
			frame(udp4(rtVIP, short(plainCID(4)))), tx(1, PathMaglev, reasonCIDBackendUnusable)},
		{"an unknown server ID falls through to Maglev",
			frame(udp4(rtVIP, short(plainCID(77)))), tx(1, PathMaglev, reasonCIDUnknownServer)},
		{"codepoint 0b111 has no config",
			frame(udp4(rtVIP, short([]byte{0xff, 1, 2, 3, 4, 5, 6, 7}))), tx(1, PathMaglev, reasonCIDNoConfig)},
		{"a codepoint without a config falls through",
			frame(udp4(rtVIP, short([]byte{3 << 5, 0, 2, 3, 4, 5, 6, 7}))), tx(1, PathMaglev, reasonCIDNoConfig)},
		{"a short header with fewer than 20 octets from the DCID start is too short",
			frame(udp4(rtVIP, quicShort(plainCID(2), 10))), tx(1, PathMaglev, reasonCIDTooShort)},
		{"a short header with exactly 20 octets from the DCID start routes",
			frame(udp4(rtVIP, quicShort(plainCID(2), 11))), tx(2, PathCID)},
		{"a long header DCID shorter than its config is too short",
			frame(udp4(rtVIP, quicLong(longInitial, cid.Version1, plainCID(2)[:2], 40))), tx(1, PathMaglev, reasonCIDTooShort)},
		{"a long header DCID of length 0 is too short",
			frame(udp4(rtVIP, quicLong(longInitial, cid.Version1, nil, 40))), tx(1, PathMaglev, reasonCIDTooShort)},
		{"a long header DCID over 20 octets is too long",
			frame(udp4(rtVIP, quicLong(longInitial, 0x1a2a3a4a, make([]byte, 21), 40))), tx(1, PathMaglev, reasonCIDTooLong)},
		{"a long header whose DCID runs past the end is not QUIC",
			frame(udp4(rtVIP, quicLong(longInitial, cid.Version1, plainCID(2), 0)[:10])), tx(1, PathMaglev, reasonNotQUIC)},
		{"a datagram without the fixed bit is hashed",
			frame(udp4(rtVIP, patch(short(plainCID(2)), 0, 0x01))), tx(1, PathMaglev, reasonNotQUIC)},
		{"an empty datagram is hashed",
			frame(udp4(rtVIP, nil)), tx(1, PathMaglev, reasonNotQUIC)},
		{"a datagram without the fixed bit to a strict VIP is dropped",
			frame(udp4(rtStrict, patch(short(plainCID(2)), 0, 0x01))), drop(reasonDropNotQUICStrict)},
		{"a one-octet short header to a strict VIP is dropped",
			frame(udp4(rtStrict, []byte{0x41})), drop(reasonDropNotQUICStrict)},
		{"an encrypted CID missing the cache falls through",
			frame(udp4(rtVIP, short(enc2))), tx(1, PathMaglev, reasonCIDCacheMiss)},
		{"an encrypted CID missing the cache is passed by a cid-miss-pass VIP",
			frame(udp4(rtMissPass, short(enc2))), pass(reasonPassCIDCacheMiss, reasonCIDCacheMiss)},
		{"a VIP without a Maglev table passes what no CID routes",
			frame(udp4(rtNoTable, short([]byte{0, 1}))), pass(reasonPassBackendInvalid, reasonCIDNoConfig)},
		{"a Maglev entry naming an unusable backend passes",
			frame(udp4(rtBadTable, nil)), pass(reasonPassBackendInvalid, reasonNotQUIC)},
		{"ipip sends a v6 CID packet to its server",
			v6(short(plainCID(5))), tx(5, PathCID)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := mustRouter(t, nil)
			if got := r.Route(tc.frame); got != tc.want {
				t.Errorf("Route = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestRouterEncryptedCIDs(t *testing.T) {
	enc2 := mustEncryptedCID(t, 2)
	frame := udp4(rtVIP, quicShort(enc2, 30)).bytes()

	t.Run("a cached encrypted CID goes to its backend", func(t *testing.T) {
		r := mustRouter(t, nil)
		if err := r.CacheCID(0, enc2, 2); err != nil {
			t.Fatal(err)
		}
		want := Decision{Verdict: VerdictTX, Reason: reasonTX, Backend: 2, Path: PathCIDCache}
		if got := r.Route(frame); got != want {
			t.Errorf("Route = %+v, want %+v", got, want)
		}
	})
	t.Run("a cached CID naming an unusable backend falls through", func(t *testing.T) {
		r := mustRouter(t, nil)
		if err := r.CacheCID(0, enc2, 4); err != nil {
			t.Fatal(err)
		}
		got := r.Route(frame)
		if got.Path != PathMaglev || !got.Events.Has(reasonCIDBackendUnusable) {
			t.Errorf("Route = %+v, want Maglev after cid_backend_unusable", got)
		}
	})
	t.Run("a decoder decrypts a missed CID and caches it", func(t *testing.T) {
		dec, err := cid.NewDecoder(rtEncrypted)
		if err != nil {
			t.Fatal(err)
		}
		r := mustRouter(t, map[uint32]*cid.Decoder{0: dec, 4: dec})
		for _, vip := range []netip.AddrPort{rtVIP, rtMissPass} {
			f := udp4(vip, quicShort(enc2, 30)).bytes()
			got := r.Route(f)
			if got.Verdict != VerdictTX || got.Backend != 2 || got.Path != PathCID || !got.Learned {
				t.Fatalf("first packet to %v: Route = %+v, want tx to 2 by cid, learned", vip, got)
			}
			want, _ := bpf.NewCIDKey(got.CIDKey.VipId, enc2)
			if got.CIDKey != want {
				t.Errorf("learned key %+v, want %+v", got.CIDKey, want)
			}
			got = r.Route(f)
			if got.Verdict != VerdictTX || got.Backend != 2 || got.Path != PathCIDCache || got.Learned {
				t.Errorf("second packet to %v: Route = %+v, want tx to 2 from the cache", vip, got)
			}
		}
	})
	t.Run("a decrypted CID of an unknown server falls through", func(t *testing.T) {
		dec, err := cid.NewDecoder(rtEncrypted)
		if err != nil {
			t.Fatal(err)
		}
		r := mustRouter(t, map[uint32]*cid.Decoder{0: dec})
		got := r.Route(udp4(rtVIP, quicShort(mustEncryptedCID(t, 99), 30)).bytes())
		if got.Path != PathMaglev || got.Learned || !got.Events.Has(reasonCIDUnknownServer) {
			t.Errorf("Route = %+v, want Maglev after cid_unknown_server", got)
		}
	})
}

func TestRouterFlows(t *testing.T) {
	initial := quicLong(longInitial, cid.Version1, []byte{0x7f, 1, 2, 3, 4, 5, 6, 7}, 1200)

	t.Run("a client's next packet follows its flow", func(t *testing.T) {
		r := mustRouter(t, nil)
		first := r.Route(udp4(rtVIP, initial).bytes())
		if first.Path != PathMaglev || first.Backend != 1 {
			t.Fatalf("first packet: %+v, want Maglev to 1", first)
		}
		next := r.Route(udp4(rtVIP, quicLong(long0RTT, cid.Version1, []byte{0x7f, 1, 2, 3, 4, 5, 6, 7}, 900)).bytes())
		if next.Path != PathFlow || next.Backend != 1 {
			t.Errorf("0-RTT packet: %+v, want flow to 1", next)
		}
		if r.Flows() != 1 {
			t.Errorf("flow table holds %d entries, want 1", r.Flows())
		}
	})
	t.Run("a flow outranks Maglev but not a routable CID", func(t *testing.T) {
		r := mustRouter(t, nil)
		r.Route(udp4(rtVIP, initial).bytes())
		got := r.Route(udp4(rtVIP, quicShort(plainCID(2), 30)).bytes())
		if got.Path != PathCID || got.Backend != 2 {
			t.Errorf("Route = %+v, want cid to 2", got)
		}
	})
	t.Run("a flow to a backend gone unusable is re-hashed", func(t *testing.T) {
		r := mustRouter(t, nil)
		r.Route(udp4(rtVIP, initial).bytes())
		d := rtDesired(t)
		b := d.Backends[1]
		b.Flags = 0
		d.Backends[1] = b
		vip := d.VIPs[bpf.NewVIPKey(rtVIP)]
		vip.Table = rtTable(2)
		d.VIPs[bpf.NewVIPKey(rtVIP)] = vip
		r.Update(d, nil)
		got := r.Route(udp4(rtVIP, initial).bytes())
		want := Decision{Verdict: VerdictTX, Reason: reasonTX, Backend: 2, Path: PathMaglev, Events: events(reasonCIDNoConfig, reasonFlowBackendUnusable)}
		if got != want {
			t.Errorf("Route = %+v, want %+v", got, want)
		}
		if got := r.Route(udp4(rtVIP, initial).bytes()); got.Path != PathFlow || got.Backend != 2 {
			t.Errorf("next packet: %+v, want the new flow to 2", got)
		}
	})
	t.Run("an update forgets the flows of freed backends", func(t *testing.T) {
		r := mustRouter(t, nil)
		r.Route(udp4(rtVIP, initial).bytes())
		d := rtDesired(t)
		d.Freed = []uint32{1}
		r.Update(d, nil)
		if r.Flows() != 0 {
			t.Errorf("flow table holds %d entries after backend 1 was freed, want 0", r.Flows())
		}
	})
	t.Run("4-tuple Maglev picks table[FlowHash mod M]", func(t *testing.T) {
		r := mustRouter(t, nil)
		for port := uint16(1000); port < 1064; port++ {
			src := netip.AddrPortFrom(rtClient6.Addr(), port)
			got := r.Route(testFrame{src: src, dst: rtVIP6, payload: initial}.bytes())
			want := 5 + bpf.FlowHash(bpf.Hash4Tuple, src, rtVIP6)%13%2
			if got.Path != PathMaglev || got.Backend != want {
				t.Fatalf("client %v: %+v, want Maglev to %d", src, got, want)
			}
		}
	})
}

func TestRouterIPIPNeedsAnOuterSource(t *testing.T) {
	r := mustRouter(t, nil)
	r.SetLB(rtLB(t, false))
	got := r.Route(testFrame{src: rtClient6, dst: rtVIP6, payload: quicShort(plainCID(5), 30)}.bytes())
	want := Decision{Verdict: VerdictPass, Reason: reasonPassNoEncapSource, Backend: 5, Path: PathCID}
	if got != want {
		t.Errorf("Route = %+v, want %+v", got, want)
	}
}

func TestRouterRouteDatagramAgreesWithRoute(t *testing.T) {
	mapped := netip.AddrPortFrom(netip.AddrFrom16(rtClient4.Addr().As16()), rtClient4.Port())
	vipMapped := netip.AddrPortFrom(netip.AddrFrom16(rtVIP.Addr().As16()), rtVIP.Port())
	initial := quicLong(longInitial, cid.Version1, []byte{0x7f, 9, 9, 9, 9, 9, 9, 9}, 1200)
	for _, tc := range []struct {
		name     string
		src, dst netip.AddrPort
		payload  []byte
	}{
		{"an IPv4 CID packet", rtClient4, rtVIP, quicShort(plainCID(3), 30)},
		{"an IPv4 Initial", rtClient4, rtVIP, initial},
		{"an IPv6 Initial", rtClient6, rtVIP6, initial},
		{"a non-QUIC datagram to a strict VIP", rtClient4, rtStrict, []byte{0}},
		{"a datagram to no VIP", rtClient4, rtNotVIP, initial},
		{"IPv4-mapped addresses", mapped, vipMapped, quicShort(plainCID(2), 30)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			byFrame, byDatagram := mustRouter(t, nil), mustRouter(t, nil)
			f := testFrame{src: netip.AddrPortFrom(tc.src.Addr().Unmap(), tc.src.Port()),
				dst: netip.AddrPortFrom(tc.dst.Addr().Unmap(), tc.dst.Port()), payload: tc.payload}
			for range 2 {
				want := byFrame.Route(f.bytes())
				got := byDatagram.RouteDatagram(tc.src, tc.dst, tc.payload)
				if got != want {
					t.Errorf("RouteDatagram = %+v, Route = %+v", got, want)
				}
			}
		})
	}
	t.Run("mixed families match no VIP", func(t *testing.T) {
		got := mustRouter(t, nil).RouteDatagram(rtClient6, rtVIP, initial)
		if got.Verdict != VerdictPass || got.Reason != reasonPassNotVIP {
			t.Errorf("RouteDatagram = %+v, want pass_not_vip", got)
		}
	})
}

func TestRouterCountsReasonsLikeReasonStats(t *testing.T) {
	r := mustRouter(t, nil)
	r.Route(testFrame{src: rtClient4, dst: rtVIP, ipOptions: []byte{1, 1, 1, 0}, payload: quicShort(plainCID(77), 30)}.bytes())
	r.Route(testFrame{src: rtClient4, dst: rtStrict, payload: nil}.bytes())
	r.Route(make([]byte, 10))
	got := r.ReasonCounts()
	var want [bpf.NumReasons]uint64
	want[reasonTX] = 1
	want[reasonIPOptions] = 1
	want[reasonCIDUnknownServer] = 1
	want[reasonDropNotQUICStrict] = 1
	want[reasonDropTruncated] = 1
	if got != want {
		t.Errorf("ReasonCounts = %v, want %v", got, want)
	}
}

func TestRouterCacheCIDRejectsBadLengths(t *testing.T) {
	r := mustRouter(t, nil)
	for _, n := range []int{0, 21} {
		if err := r.CacheCID(0, bytes.Repeat([]byte{1}, n), 1); err == nil {
			t.Errorf("CacheCID of %d octets: no error", n)
		}
	}
}

func TestRouterFlowTables(t *testing.T) {
	zeroRTT := quicLong(long0RTT, cid.Version1, []byte{0x7f, 1, 2, 3, 4, 5, 6, 7}, 900)

	t.Run("a colliding flow replaces the cached one, which is hashed again", func(t *testing.T) {
		r := mustRouter(t, nil)
		first := udp4(rtVIP, zeroRTT)
		k := bpf.NewFlowKey(0, first.src)
		var other netip.AddrPort
		for i := uint32(1); i < 1<<20 && !other.IsValid(); i++ {
			c := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 19, byte(i >> 8), byte(i)}), uint16(i>>4))
			if bpf.FlowCacheSlot(bpf.NewFlowKey(0, c)) == bpf.FlowCacheSlot(k) {
				other = c
			}
		}
		if !other.IsValid() {
			t.Fatal("no colliding client port found")
		}
		r.Route(first.bytes())
		r.Route(testFrame{src: other, dst: rtVIP, payload: zeroRTT}.bytes())
		if got := r.Route(first.bytes()); got.Path != PathMaglev {
			t.Errorf("Route = %v, want maglev after the collision", got)
		}
		if r.Flows() != 1 {
			t.Errorf("Flows = %d, want 1 (one slot)", r.Flows())
		}
	})
}
