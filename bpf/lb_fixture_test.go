package bpf

import (
	"bytes"
	"net"
	"net/netip"
	"os"
	"testing"

	"github.com/cilium/ebpf"
)

// XDP verdicts (enum xdp_action).
const (
	xdpDrop = 1
	xdpPass = 2
	xdpTX   = 3
)

func skipUnlessRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("loading XDP programs and BPF_PROG_TEST_RUN need root (CAP_BPF, CAP_NET_ADMIN); run as root")
	}
}

func mustLoadLB(tb testing.TB) *LBObjects {
	tb.Helper()
	skipUnlessRoot(tb)
	objs, err := LoadLB(nil)
	if err != nil {
		tb.Fatalf("load lb: %v", err)
	}
	tb.Cleanup(func() { objs.Close() })
	return objs
}

func mustPut(tb testing.TB, m *ebpf.Map, k, v any) {
	tb.Helper()
	if err := m.Put(k, v); err != nil {
		tb.Fatalf("put %s: %v", m, err)
	}
}

// Test world: addresses from 198.18.0.0/15 and 2001:db8::/32.
var (
	lbAddr4 = netip.MustParseAddr("198.18.0.1")
	lbAddr6 = netip.MustParseAddr("2001:db8::1")
)

func backendMAC(i uint32) net.HardwareAddr {
	return net.HardwareAddr{2, 0, 0, 0, byte(i >> 8), byte(i)}
}
func nextHopMAC(i uint32) net.HardwareAddr {
	return net.HardwareAddr{2, 0, 0, 0xf, byte(i >> 8), byte(i)}
}

type testBackend struct {
	addr  string
	flags BackendFlags
}

// testBackends: index -> backend; index 0 and 9 stay empty.
var testBackends = map[uint32]testBackend{
	1: {"198.18.1.1", BackendHealthy},
	2: {"198.18.1.2", BackendHealthy},
	3: {"198.18.1.3", BackendDraining},
	4: {"198.18.1.4", 0}, // unhealthy: kept, not usable
	5: {"2001:db8:1::5", BackendHealthy},
	6: {"2001:db8:1::6", BackendHealthy},
}

type testVIP struct {
	id    uint32
	addr  string
	info  VIPInfo
	table []uint32 // Maglev table; nil: none
	sids  map[uint16]uint32
}

const testMaglevSize = 13

func repeatTable(backends ...uint32) []uint32 {
	t := make([]uint32, testMaglevSize)
	for i := range t {
		t[i] = backends[i%len(backends)]
	}
	return t
}

// Codepoint 1: plaintext, 2-octet server ID, 6-octet nonce (CID of 9).
// Codepoint 2: encrypted, 3 + 8 (CID of 12).
var testCIDConfigs = [CIDConfigs]CIDConfig{
	1: {ServerIdLen: 2, NonceLen: 6, Flags: CIDConfigPresent},
	2: {ServerIdLen: 3, NonceLen: 8, Flags: CIDConfigPresent | CIDConfigEncrypted},
}

var (
	vipL2      = netip.MustParseAddrPort("198.18.10.1:443")
	vipV6IPIP  = netip.MustParseAddrPort("[2001:db8:10::1]:443")
	vipStrict  = netip.MustParseAddrPort("198.18.10.2:443")
	vipL7      = netip.MustParseAddrPort("198.18.10.3:443")
	vipIPIP    = netip.MustParseAddrPort("198.18.10.4:443")
	vipMiss    = netip.MustParseAddrPort("198.18.10.5:443")
	vipV6L2    = netip.MustParseAddrPort("[2001:db8:10::2]:443")
	vipV6inV4  = netip.MustParseAddrPort("[2001:db8:10::3]:443")
	vipNoTable = netip.MustParseAddrPort("198.18.10.8:443")
	vipBadTab  = netip.MustParseAddrPort("198.18.10.9:443")
)

var testVIPs = []testVIP{
	{id: 0, addr: vipL2.String(), table: repeatTable(1, 2),
		sids: map[uint16]uint32{1: 1, 2: 2, 3: 3, 4: 4, 9: 9}},
	{id: 1, addr: vipV6IPIP.String(), info: VIPInfo{Forwarding: ForwardingIPIP, Hash: HashSrcIP},
		table: repeatTable(5, 6), sids: map[uint16]uint32{5: 5}},
	{id: 2, addr: vipStrict.String(), info: VIPInfo{Flags: VIPStrict}, table: repeatTable(1, 2)},
	{id: 3, addr: vipL7.String(), info: VIPInfo{Mode: ModeL7}, table: repeatTable(1, 2),
		sids: map[uint16]uint32{1: 1}},
	{id: 4, addr: vipIPIP.String(), info: VIPInfo{Forwarding: ForwardingIPIP}, table: repeatTable(1, 2),
		sids: map[uint16]uint32{1: 1, 5: 5}},
	{id: 5, addr: vipMiss.String(), info: VIPInfo{Flags: VIPCIDMissPass}, table: repeatTable(1, 2)},
	{id: 6, addr: vipV6L2.String(), table: repeatTable(5, 6), sids: map[uint16]uint32{5: 5}},
	{id: 7, addr: vipV6inV4.String(), info: VIPInfo{Forwarding: ForwardingIPIP}, table: repeatTable(1),
		sids: map[uint16]uint32{1: 1}},
	{id: 8, addr: vipNoTable.String()},
	{id: 9, addr: vipBadTab.String(), table: repeatTable(9)},
}

// encryptedCID is in vip 0's cid_cache, routed to backend 2.
var encryptedCID = []byte{2<<5 | 0x0b, 0xe1, 0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8, 0xe9, 0xea, 0xeb}

// plainCID returns a codepoint-1 CID carrying server ID sid.
func plainCID(sid uint16) []byte {
	return []byte{1<<5 | 0x08, byte(sid >> 8), byte(sid), 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6}
}

// randomCID is a client-chosen DCID whose codepoint (3) has no config.
var randomCID = []byte{3<<5 | 0x11, 0x9a, 0x9b, 0x9c, 0x9d, 0x9e, 0x9f, 0x90}

// mustWorld loads lb and fills its maps with the test world.
func mustWorld(tb testing.TB) *LBObjects {
	tb.Helper()
	objs := mustLoadLB(tb)
	fillWorld(tb, objs)
	return objs
}

// fillWorld fills the maps of objs with the test world.
func fillWorld(tb testing.TB, objs *LBObjects) {
	tb.Helper()
	cfg, err := NewLBConfig(lbMAC, lbAddr4, lbAddr6)
	if err != nil {
		tb.Fatal(err)
	}
	mustPut(tb, objs.Config, uint32(0), cfg)
	for i, b := range testBackends {
		be, err := NewBackend(netip.MustParseAddr(b.addr), backendMAC(i), nextHopMAC(i), b.flags)
		if err != nil {
			tb.Fatal(err)
		}
		mustPut(tb, objs.Backends, i, be)
	}
	for _, v := range testVIPs {
		info := v.info
		info.Id = v.id
		info.Cid = testCIDConfigs
		if v.table != nil {
			mustMaglevTable(tb, objs, v.id, 0, v.table)
			info.MaglevSize = uint32(len(v.table))
		}
		mustPut(tb, objs.Vips, NewVIPKey(netip.MustParseAddrPort(v.addr)), info)
		for sid, be := range v.sids {
			k, err := NewServerIDKey(v.id, []byte{byte(sid >> 8), byte(sid)})
			if err != nil {
				tb.Fatal(err)
			}
			mustPut(tb, objs.ServerIds, k, be)
		}
	}
	k, err := NewCIDKey(0, encryptedCID)
	if err != nil {
		tb.Fatal(err)
	}
	mustPut(tb, objs.CidCache, k, uint32(2))
}

func mustMaglevTable(tb testing.TB, objs *LBObjects, vipID, slot uint32, entries []uint32) {
	tb.Helper()
	table, err := NewMaglevTable(entries)
	if err != nil {
		tb.Fatal(err)
	}
	defer table.Close()
	mustPut(tb, objs.Maglev, MaglevSlot(vipID, slot), table)
}

// mustRun runs prog once on a copy of in and returns verdict and output.
func mustRun(tb testing.TB, prog *ebpf.Program, in []byte) (uint32, []byte) {
	tb.Helper()
	opts := &ebpf.RunOptions{Data: bytes.Clone(in), DataOut: make([]byte, len(in)+256)}
	ret, err := prog.Run(opts)
	if err != nil {
		tb.Fatalf("run %s: %v", prog, err)
	}
	return ret, opts.DataOut
}

func sumPerCPU(tb testing.TB, m *ebpf.Map, key uint32) uint64 {
	tb.Helper()
	var vals []uint64
	if err := m.Lookup(key, &vals); err != nil {
		tb.Fatalf("lookup %s[%d]: %v", m, key, err)
	}
	var sum uint64
	for _, v := range vals {
		sum += v
	}
	return sum
}

// counters is a snapshot of every lb counter, summed over CPUs.
type counters struct {
	reasons  [NumReasons]uint64
	vips     map[uint32]VIPCounters
	backends map[uint32]BackendCounters
}

func mustCounters(tb testing.TB, objs *LBObjects) counters {
	tb.Helper()
	c := counters{vips: map[uint32]VIPCounters{}, backends: map[uint32]BackendCounters{}}
	for r := range c.reasons {
		c.reasons[r] = sumPerCPU(tb, objs.ReasonStats, uint32(r))
	}
	for _, v := range testVIPs {
		var per []VIPCounters
		if err := objs.VipStats.Lookup(v.id, &per); err != nil {
			tb.Fatal(err)
		}
		var s VIPCounters
		for _, p := range per {
			s.Packets += p.Packets
			s.Bytes += p.Bytes
			s.Cid += p.Cid
			s.CidCache += p.CidCache
			s.Flow += p.Flow
			s.Maglev += p.Maglev
			s.SlowPath += p.SlowPath
			s.SlowPathLimited += p.SlowPathLimited
		}
		c.vips[v.id] = s
	}
	for i := uint32(0); i < 10; i++ {
		var per []BackendCounters
		if err := objs.BackendStats.Lookup(i, &per); err != nil {
			tb.Fatal(err)
		}
		var s BackendCounters
		for _, p := range per {
			s.Packets += p.Packets
			s.Bytes += p.Bytes
		}
		c.backends[i] = s
	}
	return c
}

// mustPutFlow records the flow of src to VIP vipID on every CPU.
func mustPutFlow(tb testing.TB, objs *LBObjects, vipID uint32, src netip.AddrPort, s FlowState) {
	tb.Helper()
	if err := PutFlow(objs, NewFlowKey(vipID, src), s); err != nil {
		tb.Fatal(err)
	}
}

func mustInvalidateCaches(tb testing.TB, objs *LBObjects) {
	tb.Helper()
	if err := InvalidateCaches(objs); err != nil {
		tb.Fatal(err)
	}
}

// mustLookupCachedFlow finds key in flow_cache on any CPU.
func mustLookupCachedFlow(tb testing.TB, objs *LBObjects, key FlowKey) (FlowState, bool) {
	tb.Helper()
	var (
		found FlowState
		ok    bool
	)
	err := ForEachCachedFlow(objs.FlowCache, func(_ int, _ uint32, e FlowCacheEntry) {
		if e.Key == key && !ok {
			found, ok = e.State, true
		}
	})
	if err != nil {
		tb.Fatal(err)
	}
	return found, ok
}
