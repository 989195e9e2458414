package bpf

import (
	"encoding/binary"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"
)

// The C flow_hash and the Go FlowHash must agree bit for bit. The test
// observes the C hash through the Maglev table: with M = 4093 entries,
// entry i naming backend i+1 and backend i's MAC encoding i, the frame's
// new destination MAC reveals flow_hash % M.
func TestFlowHashMatchesXDP(t *testing.T) {
	objs := mustLoadLB(t)
	const m = 4093 // prime, < MaxBackends
	cfg, err := NewLBConfig(lbMAC, lbAddr4, lbAddr6)
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, objs.Config, uint32(0), cfg)
	keys := make([]uint32, m)
	bes := make([]Backend, m)
	entries := make([]uint32, m)
	for i := range entries {
		idx := uint32(i + 1)
		entries[i] = idx
		keys[i] = idx
		bes[i], err = NewBackend(netip.MustParseAddr("198.18.1.1"), backendMAC(idx), nil, BackendHealthy)
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := objs.Backends.BatchUpdate(keys, bes, nil); err != nil {
		t.Fatal(err)
	}

	vips := []struct {
		addr netip.AddrPort
		hash HashKind
	}{
		{netip.MustParseAddrPort("198.18.10.1:443"), Hash4Tuple},
		{netip.MustParseAddrPort("198.18.10.2:8443"), HashSrcIP},
		{netip.MustParseAddrPort("[2001:db8:10::1]:443"), Hash4Tuple},
		{netip.MustParseAddrPort("[2001:db8:10::2]:4433"), HashSrcIP},
	}
	for id, v := range vips {
		mustMaglevTable(t, objs, uint32(id), 0, entries)
		mustPut(t, objs.Vips, NewVIPKey(v.addr), VIPInfo{Id: uint32(id), Hash: v.hash, MaglevSize: m})
	}

	rng := rand.New(rand.NewPCG(1, 2))
	for _, v := range vips {
		t.Run(v.addr.String()+" "+map[HashKind]string{Hash4Tuple: "4-tuple", HashSrcIP: "src-ip"}[v.hash], func(t *testing.T) {
			for range 150 {
				var src netip.Addr
				if v.addr.Addr().Is4() {
					src = netip.AddrFrom4([4]byte{198, 18, byte(rng.IntN(256)), byte(rng.IntN(256))})
				} else {
					b := netip.MustParseAddr("2001:db8:5::").As16()
					binary.BigEndian.PutUint64(b[8:], rng.Uint64())
					src = netip.AddrFrom16(b)
				}
				client := netip.AddrPortFrom(src, uint16(1024+rng.IntN(64000)))
				in := frame{src: client, dst: v.addr, payload: longHeader(randomCID)}.bytes()
				verdict, out := mustRun(t, objs.XdpLb, in)
				if verdict != xdpTX {
					t.Fatalf("%v: verdict %d, want XDP_TX", client, verdict)
				}
				got := uint32(binary.BigEndian.Uint16(out[4:6])) - 1
				want := FlowHash(v.hash, client, v.addr) % m
				if got != want {
					t.Fatalf("%v -> %v: XDP chose entry %d, FlowHash gives %d (mac %v)", client, v.addr, got, want, net.HardwareAddr(out[:6]))
				}
			}
		})
	}
}

// FlowHash must spread flows (lab-facts: a naive hash sent 94% to one
// backend): 100k client ports over 13 entries stay within 5% of even.
func TestFlowHashSpreadsFlows(t *testing.T) {
	vip := netip.MustParseAddrPort("198.18.10.1:443")
	const m, n = 13, 100000
	var hits [m]int
	for i := range n {
		src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, 5, byte(i % 7)}), uint16(1024+i/7))
		hits[FlowHash(Hash4Tuple, src, vip)%m]++
	}
	for i, h := range hits {
		if h < n/m*95/100 || h > n/m*105/100 {
			t.Errorf("entry %d got %d of %d flows, want about %d", i, h, n, n/m)
		}
	}
}

// A fixed vector pins the definition, so a change to either side that
// happens to keep them equal still shows.
func TestFlowHashKnownValue(t *testing.T) {
	src := netip.MustParseAddrPort("198.18.5.5:50000")
	dst := netip.MustParseAddrPort("198.18.10.1:443")
	words := []uint32{0xc6120505, 0xc6120a01, 50000<<16 | 443}
	if got, want := FlowHash(Hash4Tuple, src, dst), murmurWords(words); got != want {
		t.Errorf("FlowHash = %#x, want %#x", got, want)
	}
	if got, want := FlowHash(HashSrcIP, src, dst), murmurWords(words[:1]); got != want {
		t.Errorf("FlowHash(src-ip) = %#x, want %#x", got, want)
	}
}

// murmurWords is MurmurHash3_x86_32 of the words as little-endian octets:
// the reference implementation the definition in hash.h is built on.
func murmurWords(words []uint32) uint32 {
	data := make([]byte, 0, 4*len(words))
	for _, w := range words {
		data = binary.LittleEndian.AppendUint32(data, w)
	}
	h := uint32(FlowHashSeed)
	for i := 0; i+4 <= len(data); i += 4 {
		k := binary.LittleEndian.Uint32(data[i:])
		k *= 0xcc9e2d51
		k = k<<15 | k>>17
		k *= 0x1b873593
		h ^= k
		h = h<<13 | h>>19
		h = h*5 + 0xe6546b64
	}
	h ^= uint32(len(data))
	h ^= h >> 16
	h *= 0x85ebca6b
	h ^= h >> 13
	h *= 0xc2b2ae35
	h ^= h >> 16
	return h
}
