package bpf

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
)

var (
	client4  = netip.MustParseAddrPort("198.18.5.5:50000")
	client4b = netip.MustParseAddrPort("198.18.5.6:40001")
	client6  = netip.MustParseAddrPort("[2001:db8:5::5]:50000")
)

// maglevPick is the backend XDP must choose on the Maglev path.
func maglevPick(vip netip.AddrPort, src netip.AddrPort) uint32 {
	for _, v := range testVIPs {
		if v.addr == vip.String() {
			return v.table[FlowHash(v.info.Hash, src, vip)%uint32(len(v.table))]
		}
	}
	panic("no such vip " + vip.String())
}

func l2Len(in []byte) int {
	if binary.BigEndian.Uint16(in[12:]) == etherVLAN {
		return 18
	}
	return 14
}

// l2dsrOut and ipipOut are the frames lb.c must send to backend be, built
// by the Go twin of its send and encap (frame.go), which the slow path
// transmits: the two implementations are held byte for byte equal here.
func l2dsrOut(be uint32) func([]byte) []byte {
	return func(in []byte) []byte {
		b, lb := testBackendValue(be)
		out := bytes.Clone(in)
		if err := RewriteL2DSR(out, &b, &lb); err != nil {
			panic(err)
		}
		return out
	}
}

func ipipOut(be uint32) func([]byte) []byte {
	return func(in []byte) []byte {
		b, lb := testBackendValue(be)
		out := append(make([]byte, EncapLen(&b)), in...)
		if err := Encap(out, &b, &lb); err != nil {
			panic(err)
		}
		return out
	}
}

// testBackendValue is backend be's map value and the load balancer's
// config, as fillWorld writes them.
func testBackendValue(be uint32) (Backend, LBConfig) {
	b, err := NewBackend(netip.MustParseAddr(testBackends[be].addr), backendMAC(be), nextHopMAC(be), testBackends[be].flags)
	if err != nil {
		panic(err)
	}
	lb, err := NewLBConfig(lbMAC, lbAddr4, lbAddr6)
	if err != nil {
		panic(err)
	}
	return b, lb
}

func cut(b []byte, n int) []byte { return b[:n] }

type lbCase struct {
	name    string
	in      []byte
	setup   func(testing.TB, *LBObjects)
	verdict uint32
	want    func(in []byte) []byte // expected output; nil: unchanged
	reasons []Reason               // each must grow by one
	backend uint32                 // forwarded to; 0: not forwarded
	vip     uint32                 // VIP id whose path counter grows
	path    string                 // cid, cid_cache, flow, maglev
	after   func(*testing.T, *LBObjects)
}

const (
	rTX            = lbReasonREASON_TX
	rNotIP         = lbReasonREASON_PASS_NOT_IP
	rNonUDP        = lbReasonREASON_PASS_NON_UDP
	rFragment      = lbReasonREASON_PASS_FRAGMENT
	rNotVIP        = lbReasonREASON_PASS_NOT_VIP
	rL7            = lbReasonREASON_PASS_L7
	rBackendInv    = lbReasonREASON_PASS_BACKEND_INVALID
	rPassCIDMiss   = lbReasonREASON_PASS_CID_CACHE_MISS
	rNoEncapSrc    = lbReasonREASON_PASS_NO_ENCAP_SOURCE
	rTruncated     = lbReasonREASON_DROP_TRUNCATED
	rBadIP         = lbReasonREASON_DROP_BAD_IP
	rStrict        = lbReasonREASON_DROP_NOT_QUIC_STRICT
	rIPOptions     = lbReasonREASON_IP_OPTIONS
	rNotQUIC       = lbReasonREASON_NOT_QUIC
	rNoConfig      = lbReasonREASON_CID_NO_CONFIG
	rCIDShort      = lbReasonREASON_CID_TOO_SHORT
	rCIDLong       = lbReasonREASON_CID_TOO_LONG
	rUnknownServer = lbReasonREASON_CID_UNKNOWN_SERVER
	rCIDUnusable   = lbReasonREASON_CID_BACKEND_UNUSABLE
	rCacheMiss     = lbReasonREASON_CID_CACHE_MISS
	rFlowUnusable  = lbReasonREASON_FLOW_BACKEND_UNUSABLE
)

func lbCases() []lbCase {
	short := func(src, vip netip.AddrPort, dcid []byte) frame {
		return frame{src: src, dst: vip, payload: shortHeader(dcid)}
	}
	long := func(src, vip netip.AddrPort, dcid []byte) frame {
		return frame{src: src, dst: vip, payload: longHeader(dcid)}
	}
	full := short(client4, vipL2, plainCID(1)).bytes()
	pick4 := maglevPick(vipL2, client4)
	other4 := 3 - pick4 // the backend Maglev does not choose (1 <-> 2)
	setFlow := func(be uint32) func(testing.TB, *LBObjects) {
		return func(tb testing.TB, objs *LBObjects) {
			mustPutFlow(tb, objs, 0, client4, FlowState{Backend: be, LastSeenNs: 1})
		}
	}
	hopByHop := short(client6, vipV6L2, plainCID(5)).bytes()
	hopByHop[14+6] = 0 // next header: hop-by-hop options
	badIHL := bytes.Clone(full)
	badIHL[14] = 0x44
	withOpts := frame{src: client4, dst: vipL2, ipOptions: []byte{1, 1, 1, 0}, payload: shortHeader(plainCID(1))}
	noFixed := shortHeader(plainCID(1))
	noFixed[0] &^= 0x40
	longCut := longHeader(randomCID)
	tooLong := longHeader(bytes.Repeat([]byte{1<<5 | 1}, 21))
	tooLong[1], tooLong[4] = 0x6b, 0x33 // some other version: 21 is legal there

	return []lbCase{
		// Not ours: passed untouched.
		{name: "an ARP frame is passed untouched",
			in: append(append(append([]byte{}, lbMAC...), clientMAC...), 0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1), verdict: xdpPass, reasons: []Reason{rNotIP}},
		{name: "TCP to a VIP address is passed untouched",
			in: frame{src: client4, dst: vipL2, proto: protoTCP, payload: make([]byte, 20)}.bytes(), verdict: xdpPass, reasons: []Reason{rNonUDP}},
		{name: "IPv6 with an extension header is passed untouched",
			in: hopByHop, verdict: xdpPass, reasons: []Reason{rNonUDP}},
		{name: "UDP to another port of a VIP address is passed untouched",
			in: short(client4, netip.AddrPortFrom(vipL2.Addr(), 4433), plainCID(1)).bytes(), verdict: xdpPass, reasons: []Reason{rNotVIP}},
		{name: "UDP to a non-VIP address is passed untouched",
			in: short(client4, netip.MustParseAddrPort("198.18.0.1:443"), plainCID(1)).bytes(), verdict: xdpPass, reasons: []Reason{rNotVIP}},
		{name: "an IPv6 datagram to a non-VIP address is passed untouched",
			in: short(client6, netip.MustParseAddrPort("[2001:db8::1]:443"), plainCID(5)).bytes(), verdict: xdpPass, reasons: []Reason{rNotVIP}},
		{name: "a VIP in mode l7 is passed untouched even with a routable CID",
			in: short(client4, vipL7, plainCID(1)).bytes(), verdict: xdpPass, reasons: []Reason{rL7}},
		{name: "a first fragment (MF set) is passed untouched",
			in: frame{src: client4, dst: vipL2, fragment: 0x2000, payload: shortHeader(plainCID(1))}.bytes(), verdict: xdpPass, reasons: []Reason{rFragment}},
		{name: "a later fragment (offset set) is passed untouched",
			in: frame{src: client4, dst: vipL2, fragment: 0x00b9, payload: shortHeader(plainCID(1))}.bytes(), verdict: xdpPass, reasons: []Reason{rFragment}},

		// Malformed or cut headers.
		{name: "a VLAN tag cut short is dropped",
			in: cut(frame{src: client4, dst: vipL2, vlan: 7, payload: shortHeader(plainCID(1))}.bytes(), 16), verdict: xdpDrop, reasons: []Reason{rTruncated}},
		{name: "an IPv4 header cut short is dropped",
			in: cut(full, 14+19), verdict: xdpDrop, reasons: []Reason{rTruncated}},
		{name: "an IPv6 header cut short is dropped",
			in: cut(short(client6, vipV6L2, plainCID(5)).bytes(), 14+39), verdict: xdpDrop, reasons: []Reason{rTruncated}},
		{name: "a UDP header cut short is dropped",
			in: cut(full, 14+20+7), verdict: xdpDrop, reasons: []Reason{rTruncated}},
		{name: "IPv4 options cut short are dropped",
			in: cut(withOpts.bytes(), 14+22), verdict: xdpDrop, reasons: []Reason{rTruncated}},
		{name: "an IPv4 header with IHL below 5 is dropped",
			in: badIHL, verdict: xdpDrop, reasons: []Reason{rBadIP}},

		// Routable CIDs.
		{name: "a short header with a known server ID goes to its backend",
			in: full, verdict: xdpTX, want: l2dsrOut(1), reasons: []Reason{rTX}, backend: 1, vip: 0, path: "cid"},
		{name: "a long header with a known server ID goes to its backend",
			in: long(client4, vipL2, plainCID(2)).bytes(), verdict: xdpTX, want: l2dsrOut(2), reasons: []Reason{rTX}, backend: 2, vip: 0, path: "cid"},
		{name: "a VLAN-tagged short header is routed and keeps its tag",
			in: frame{src: client4, dst: vipL2, vlan: 42, payload: shortHeader(plainCID(2))}.bytes(), verdict: xdpTX, want: l2dsrOut(2), reasons: []Reason{rTX}, backend: 2, vip: 0, path: "cid"},
		{name: "IPv4 with options is parsed past them and routed",
			in: withOpts.bytes(), verdict: xdpTX, want: l2dsrOut(1), reasons: []Reason{rTX, rIPOptions}, backend: 1, vip: 0, path: "cid"},
		{name: "an IPv6 short header with a known server ID goes to its backend",
			in: short(client6, vipV6L2, plainCID(5)).bytes(), verdict: xdpTX, want: l2dsrOut(5), reasons: []Reason{rTX}, backend: 5, vip: 6, path: "cid"},
		{name: "a draining backend still receives its connections by CID",
			in: short(client4, vipL2, plainCID(3)).bytes(), verdict: xdpTX, want: l2dsrOut(3), reasons: []Reason{rTX}, backend: 3, vip: 0, path: "cid"},
		{name: "an unhealthy backend's CID falls through to Maglev",
			in: short(client4, vipL2, plainCID(4)).bytes(), verdict: xdpTX, want: l2dsrOut(pick4), reasons: []Reason{rTX, rCIDUnusable}, backend: pick4, vip: 0, path: "maglev"},
		{name: "a server ID naming an empty backend slot falls through to Maglev",
			in: short(client4, vipL2, plainCID(9)).bytes(), verdict: xdpTX, want: l2dsrOut(pick4), reasons: []Reason{rTX, rCIDUnusable}, backend: pick4, vip: 0, path: "maglev"},
		{name: "an unknown server ID falls through to Maglev",
			in: short(client4, vipL2, plainCID(77)).bytes(), verdict: xdpTX, want: l2dsrOut(pick4), reasons: []Reason{rTX, rUnknownServer}, backend: pick4, vip: 0, path: "maglev"},
		{name: "a codepoint without a config falls through to Maglev",
			in: long(client4, vipL2, randomCID).bytes(), verdict: xdpTX, want: l2dsrOut(pick4), reasons: []Reason{rTX, rNoConfig}, backend: pick4, vip: 0, path: "maglev"},
		{name: "the unroutable codepoint 0b111 falls through to Maglev",
			in: short(client4, vipL2, append([]byte{0xff}, plainCID(1)[1:]...)).bytes(), verdict: xdpTX, want: l2dsrOut(pick4), reasons: []Reason{rTX, rNoConfig}, backend: pick4, vip: 0, path: "maglev"},
		{name: "a short header shorter than its config's CID falls through to Maglev",
			in: frame{src: client4, dst: vipL2, payload: append([]byte{0x41}, plainCID(1)[:5]...)}.bytes(), verdict: xdpTX, want: l2dsrOut(pick4), reasons: []Reason{rTX, rCIDShort}, backend: pick4, vip: 0, path: "maglev"},
		{name: "a long header DCID too short for the server ID falls through to Maglev",
			in: long(client4, vipL2, plainCID(1)[:2]).bytes(), verdict: xdpTX, want: l2dsrOut(pick4), reasons: []Reason{rTX, rCIDShort}, backend: pick4, vip: 0, path: "maglev"},
		{name: "a long header with an empty DCID falls through to Maglev",
			in: long(client4, vipL2, nil).bytes(), verdict: xdpTX, want: l2dsrOut(pick4), reasons: []Reason{rTX, rCIDShort}, backend: pick4, vip: 0, path: "maglev"},
		{name: "a long header DCID over 20 octets is not routed by CID",
			in: frame{src: client4, dst: vipL2, payload: tooLong}.bytes(), verdict: xdpTX, want: l2dsrOut(pick4), reasons: []Reason{rTX, rCIDLong}, backend: pick4, vip: 0, path: "maglev"},

		// Encrypted configs: cid_cache.
		{name: "an encrypted CID in cid_cache goes to its backend",
			in: short(client4, vipL2, encryptedCID).bytes(), verdict: xdpTX, want: l2dsrOut(2), reasons: []Reason{rTX}, backend: 2, vip: 0, path: "cid_cache"},
		{name: "an encrypted CID missing from cid_cache falls through to Maglev",
			in: short(client4, vipL2, append([]byte{2 << 5}, encryptedCID[1:]...)).bytes(), verdict: xdpTX, want: l2dsrOut(pick4), reasons: []Reason{rTX, rCacheMiss}, backend: pick4, vip: 0, path: "maglev"},
		{name: "an encrypted CID miss is passed up when the VIP asks for it",
			in: short(client4, vipMiss, encryptedCID).bytes(), verdict: xdpPass, reasons: []Reason{rCacheMiss, rPassCIDMiss}},

		// Flow table.
		{name: "an Initial of a known flow follows the flow table",
			in: long(client4, vipL2, randomCID).bytes(), setup: setFlow(other4), verdict: xdpTX, want: l2dsrOut(other4), reasons: []Reason{rTX, rNoConfig}, backend: other4, vip: 0, path: "flow"},
		{name: "a flow to a draining backend is kept",
			in: long(client4, vipL2, randomCID).bytes(), setup: setFlow(3), verdict: xdpTX, want: l2dsrOut(3), reasons: []Reason{rTX, rNoConfig}, backend: 3, vip: 0, path: "flow"},
		{name: "a flow to an unhealthy backend is rehashed and replaced",
			in: long(client4, vipL2, randomCID).bytes(), setup: setFlow(4), verdict: xdpTX, want: l2dsrOut(pick4), reasons: []Reason{rTX, rNoConfig, rFlowUnusable}, backend: pick4, vip: 0, path: "maglev",
			after: wantFlow(0, client4, pick4)},

		// Maglev.
		{name: "an Initial of a new flow is hashed by 4-tuple and recorded",
			in: long(client4b, vipL2, randomCID).bytes(), verdict: xdpTX, want: l2dsrOut(maglevPick(vipL2, client4b)), reasons: []Reason{rTX, rNoConfig}, backend: maglevPick(vipL2, client4b), vip: 0, path: "maglev",
			after: wantFlow(0, client4b, maglevPick(vipL2, client4b))},
		{name: "a VIP without a Maglev table passes what it cannot route",
			in: long(client4, vipNoTable, randomCID).bytes(), verdict: xdpPass, reasons: []Reason{rNoConfig, rBackendInv}},
		{name: "a Maglev entry naming an empty backend slot is passed",
			in: long(client4, vipBadTab, randomCID).bytes(), verdict: xdpPass, reasons: []Reason{rNoConfig, rBackendInv}},
		{name: "the active Maglev slot is the one the VIP names",
			in: long(client4, vipBadTab, randomCID).bytes(),
			setup: func(tb testing.TB, objs *LBObjects) {
				mustMaglevTable(tb, objs, 9, 1, repeatTable(2))
				info := VIPInfo{Id: 9, MaglevSize: testMaglevSize, MaglevSlot: 1}
				mustPut(tb, objs.Vips, NewVIPKey(vipBadTab), info)
			}, verdict: xdpTX, want: l2dsrOut(2), reasons: []Reason{rTX, rNoConfig}, backend: 2, vip: 9, path: "maglev"},

		// Not QUIC.
		{name: "an empty UDP payload to a non-strict VIP is hashed",
			in: frame{src: client4, dst: vipL2}.bytes(), verdict: xdpTX, want: l2dsrOut(pick4), reasons: []Reason{rTX, rNotQUIC}, backend: pick4, vip: 0, path: "maglev"},
		{name: "a datagram without the fixed bit to a non-strict VIP is hashed",
			in: frame{src: client4, dst: vipL2, payload: noFixed}.bytes(), verdict: xdpTX, want: l2dsrOut(pick4), reasons: []Reason{rTX, rNotQUIC}, backend: pick4, vip: 0, path: "maglev"},
		{name: "a datagram without the fixed bit to a strict VIP is dropped",
			in: frame{src: client4, dst: vipStrict, payload: noFixed}.bytes(), verdict: xdpDrop, reasons: []Reason{rStrict}},
		{name: "an empty UDP payload to a strict VIP is dropped",
			in: frame{src: client4, dst: vipStrict}.bytes(), verdict: xdpDrop, reasons: []Reason{rStrict}},
		{name: "a long header cut inside its version to a strict VIP is dropped",
			in: frame{src: client4, dst: vipStrict, payload: longCut[:4]}.bytes(), verdict: xdpDrop, reasons: []Reason{rStrict}},
		{name: "a long header cut inside its DCID to a strict VIP is dropped",
			in: frame{src: client4, dst: vipStrict, payload: longCut[:9]}.bytes(), verdict: xdpDrop, reasons: []Reason{rStrict}},
		{name: "a QUIC Initial to a strict VIP is hashed",
			in: long(client4, vipStrict, randomCID).bytes(), verdict: xdpTX, want: l2dsrOut(maglevPick(vipStrict, client4)), reasons: []Reason{rTX, rNoConfig}, backend: maglevPick(vipStrict, client4), vip: 2, path: "maglev"},

		// ipip forwarding.
		{name: "ipip wraps IPv4 in IPv4 with a valid checksum and DF copied",
			in: frame{src: client4, dst: vipIPIP, tos: 0xb8, fragment: 0x4000, payload: shortHeader(plainCID(1))}.bytes(), verdict: xdpTX, want: ipipOut(1), reasons: []Reason{rTX}, backend: 1, vip: 4, path: "cid"},
		{name: "ipip wraps IPv4 without DF and keeps a VLAN tag",
			in: frame{src: client4, dst: vipIPIP, vlan: 42, payload: shortHeader(plainCID(1))}.bytes(), verdict: xdpTX, want: ipipOut(1), reasons: []Reason{rTX}, backend: 1, vip: 4, path: "cid"},
		{name: "ipip wraps IPv4 in IPv6 for an IPv6 backend",
			in: short(client4, vipIPIP, plainCID(5)).bytes(), verdict: xdpTX, want: ipipOut(5), reasons: []Reason{rTX}, backend: 5, vip: 4, path: "cid"},
		{name: "ipip wraps IPv6 in IPv6 chosen by source-IP hash",
			in: frame{src: client6, dst: vipV6IPIP, tos: 0x28, payload: longHeader(randomCID)}.bytes(), verdict: xdpTX, want: ipipOut(maglevPick(vipV6IPIP, client6)), reasons: []Reason{rTX, rNoConfig}, backend: maglevPick(vipV6IPIP, client6), vip: 1, path: "maglev"},
		{name: "ipip wraps IPv6 in IPv4 for an IPv4 backend",
			in: short(client6, vipV6inV4, plainCID(1)).bytes(), verdict: xdpTX, want: ipipOut(1), reasons: []Reason{rTX}, backend: 1, vip: 7, path: "cid"},
		{name: "ipip without an outer source address of the backend's family is passed",
			in: short(client4, vipIPIP, plainCID(1)).bytes(),
			setup: func(tb testing.TB, objs *LBObjects) {
				cfg, _ := NewLBConfig(lbMAC, netip.Addr{}, lbAddr6)
				mustPut(tb, objs.Config, uint32(0), cfg)
			}, verdict: xdpPass, reasons: []Reason{rNoEncapSrc}},
	}
}

// wantFlow checks that XDP recorded the flow of src to backend be in
// flow_cache, on the CPU the test ran on, whichever that was (the other
// CPUs may hold what a setup put there).
func wantFlow(vipID uint32, src netip.AddrPort, be uint32) func(*testing.T, *LBObjects) {
	return func(t *testing.T, objs *LBObjects) {
		if n := mustCPUsHolding(t, objs, NewFlowKey(vipID, src), be); n == 0 {
			t.Errorf("no CPU holds a flow of %v to backend %d", src, be)
		}
	}
}

func TestLBRoutesPackets(t *testing.T) {
	skipUnlessRoot(t)
	cases := lbCases()
	if len(cases) < 40 {
		t.Fatalf("only %d cases", len(cases))
	}
	// The caches must not change any decision: every case runs with them
	// off (Go never called InvalidateCaches) and on.
	for _, cached := range []bool{false, true} {
		mode := map[bool]string{false: "with the caches off", true: "with the caches on"}[cached]
		t.Run(mode, func(t *testing.T) { runLBCases(t, cases, cached) })
	}
}

func runLBCases(t *testing.T, cases []lbCase, cached bool) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			objs := mustWorld(t)
			if tc.setup != nil {
				tc.setup(t, objs)
			}
			if cached {
				mustInvalidateCaches(t, objs)
			}
			before := mustCounters(t, objs)
			verdict, out := mustRun(t, objs.XdpLb, tc.in)
			after := mustCounters(t, objs)

			if verdict != tc.verdict {
				t.Errorf("verdict = %d, want %d", verdict, tc.verdict)
			}
			want := tc.in
			if tc.want != nil {
				want = tc.want(tc.in)
			}
			if !bytes.Equal(out, want) {
				t.Errorf("output differs\n got %x\nwant %x", out, want)
			}
			if l2 := l2Len(out); verdict == xdpTX && binary.BigEndian.Uint16(out[l2-2:]) == etherIPv4 {
				if c := IPv4Checksum(out[l2 : l2+int(out[l2]&0xf)*4]); c != 0 {
					t.Errorf("IPv4 header checksum of the output does not verify (%#x)", c)
				}
			}

			wantReasons := map[Reason]uint64{}
			for _, r := range tc.reasons {
				wantReasons[r]++
			}
			for r := range NumReasons {
				got := after.reasons[r] - before.reasons[r]
				if got != wantReasons[Reason(r)] {
					t.Errorf("counter %s grew by %d, want %d", Reason(r), got, wantReasons[Reason(r)])
				}
			}
			for i, b := range after.backends {
				d := b.Packets - before.backends[i].Packets
				switch {
				case i == tc.backend && tc.backend != 0:
					if d != 1 || b.Bytes-before.backends[i].Bytes != uint64(len(tc.in)) {
						t.Errorf("backend %d counters grew by %d packets, %d bytes; want 1, %d", i, d, b.Bytes-before.backends[i].Bytes, len(tc.in))
					}
				case d != 0:
					t.Errorf("backend %d counted %d packets, want none", i, d)
				}
			}
			if tc.path != "" {
				v, w := after.vips[tc.vip], before.vips[tc.vip]
				got := map[string]uint64{"cid": v.Cid - w.Cid, "cid_cache": v.CidCache - w.CidCache, "flow": v.Flow - w.Flow, "maglev": v.Maglev - w.Maglev}
				for p, n := range got {
					if want := map[bool]uint64{true: 1}[p == tc.path]; n != want {
						t.Errorf("vip %d path %s grew by %d, want %d", tc.vip, p, n, want)
					}
				}
				if v.Packets-w.Packets != 1 {
					t.Errorf("vip %d packets grew by %d, want 1", tc.vip, v.Packets-w.Packets)
				}
			}
			if tc.after != nil {
				tc.after(t, objs)
			}
		})
	}
}
