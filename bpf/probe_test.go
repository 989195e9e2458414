package bpf

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// tc verdicts as tcx reads them (include/uapi/linux/bpf.h, tcx_action_base).
const (
	tcxNext = 0xffffffff // TC_ACT_UNSPEC, -1
	tcxPass = 0          // TC_ACT_OK
	tcxDrop = 2          // TC_ACT_SHOT
)

// skbContext is the head of struct __sk_buff up to mark: the part of the
// context BPF_PROG_TEST_RUN lets a test set for a tc program (len and
// pkt_type must stay zero).
type skbContext struct {
	Len, PktType, Mark uint32
}

// Backends of the probe world beside testBackends: 7 has no MAC yet (its
// next hop did not resolve), 9 stays empty.
const probeNoMAC = 7

func mustProbeWorld(tb testing.TB) (*LBObjects, *ProbeObjects) {
	tb.Helper()
	lb := mustWorld(tb)
	be, err := NewBackend(netip.MustParseAddr("198.18.1.7"), nil, nil, 0)
	if err != nil {
		tb.Fatal(err)
	}
	mustPut(tb, lb.Backends, uint32(probeNoMAC), be)
	probe, err := LoadProbe(lb)
	if err != nil {
		tb.Fatalf("load probe: %v", err)
	}
	tb.Cleanup(func() { probe.Close() })
	return lb, probe
}

// probeFrame is a packet the load balancer host sends to a VIP: from its
// own MAC to the placeholder next hop (its own MAC too, see
// forwarder/probe_route.go), from its own address.
func probeFrame(vip netip.AddrPort, proto uint8, payload []byte) []byte {
	src := netip.AddrPortFrom(lbAddr4, 40000)
	if vip.Addr().Is6() {
		src = netip.AddrPortFrom(lbAddr6, 40000)
	}
	b := frame{src: src, dst: vip, proto: proto, tos: 0x88, payload: payload}.bytes()
	copy(b[6:12], lbMAC)
	return b
}

// tcpSYN is a bare TCP header with SYN set (ports 40000 -> 443).
func tcpSYN() []byte {
	h := binary.BigEndian.AppendUint16(nil, 40000)
	h = binary.BigEndian.AppendUint16(h, 443)
	h = append(h, 0, 0, 0, 1, 0, 0, 0, 0, 5<<4, 0x02, 0xff, 0xff, 0, 0, 0, 0)
	return h
}

// probeL2DSROut is in addressed to backend be's own MAC.
func probeL2DSROut(be uint32) func([]byte) []byte {
	return func(in []byte) []byte {
		out := bytes.Clone(in)
		copy(out[0:6], backendMAC(be))
		return out
	}
}

func mustRunMarked(tb testing.TB, prog *ebpf.Program, in []byte, mark uint32) (uint32, []byte) {
	tb.Helper()
	opts := &ebpf.RunOptions{
		Data:    bytes.Clone(in),
		DataOut: make([]byte, len(in)+256),
		Context: skbContext{Mark: mark},
	}
	ret, err := prog.Run(opts)
	if err != nil {
		tb.Fatalf("run %s with mark %#x: %v", prog, mark, err)
	}
	return ret, opts.DataOut
}

func mustProbeStats(tb testing.TB, objs *ProbeObjects) [NumProbeReasons]uint64 {
	tb.Helper()
	s, err := ReadProbeStats(objs.ProbeStats)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func TestProbeSteersMarkedPackets(t *testing.T) {
	udp4 := probeFrame(vipL2, protoUDP, shortHeader(randomCID))
	udp6 := probeFrame(vipV6L2, protoUDP, shortHeader(randomCID))
	tcp4 := probeFrame(vipIPIP, protoTCP, tcpSYN())
	tcp6 := probeFrame(vipV6IPIP, protoTCP, tcpSYN())
	arp := append(append(append([]byte{}, lbMAC...), lbMAC...), 0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1)
	l2dsr := func(i uint32) uint32 { return ProbeMarkBase | i }
	ipip := func(i uint32) uint32 { return ProbeMarkBase | ProbeMarkIPIP | i }

	cases := []struct {
		name    string
		in      []byte
		mark    uint32
		verdict uint32
		want    func([]byte) []byte // nil: unchanged
		reason  ProbeReason         // must grow by one; ignored if counted is false
		counted bool
	}{
		{"an unmarked IPv4 packet passes untouched to the next program", udp4, 0, tcxNext, nil, 0, false},
		{"an unmarked IPv6 packet passes untouched to the next program", udp6, 0, tcxNext, nil, 0, false},
		{"a packet with another mark passes untouched", udp4, 0x4000 | 1, tcxNext, nil, 0, false},
		{"a mark with the probe index but another top octet passes untouched", udp4, 0x5a000000 | 1, tcxNext, nil, 0, false},
		{"l2dsr IPv4 UDP goes to the backend's MAC", udp4, l2dsr(1), tcxPass, probeL2DSROut(1), ProbeL2DSR, true},
		{"l2dsr IPv6 UDP goes to the backend's MAC", udp6, l2dsr(5), tcxPass, probeL2DSROut(5), ProbeL2DSR, true},
		{"l2dsr IPv4 TCP goes to the backend's MAC", tcp4, l2dsr(2), tcxPass, probeL2DSROut(2), ProbeL2DSR, true},
		{"an unhealthy backend is probed all the same", udp4, l2dsr(4), tcxPass, probeL2DSROut(4), ProbeL2DSR, true},
		{"a draining backend is probed all the same", udp4, l2dsr(3), tcxPass, probeL2DSROut(3), ProbeL2DSR, true},
		{"ipip IPv4 in IPv4 gets an outer header toward the backend", udp4, ipip(1), tcxPass, ipipOut(1), ProbeIPIP, true},
		{"ipip IPv6 in IPv6 gets an outer header toward the backend", udp6, ipip(5), tcxPass, ipipOut(5), ProbeIPIP, true},
		{"ipip IPv6 in IPv4 follows the backend's family", udp6, ipip(2), tcxPass, ipipOut(2), ProbeIPIP, true},
		{"ipip IPv4 in IPv6 follows the backend's family", udp4, ipip(6), tcxPass, ipipOut(6), ProbeIPIP, true},
		{"ipip IPv4 TCP is encapsulated", tcp4, ipip(1), tcxPass, ipipOut(1), ProbeIPIP, true},
		{"ipip IPv6 TCP is encapsulated", tcp6, ipip(5), tcxPass, ipipOut(5), ProbeIPIP, true},
		{"ipip to an unhealthy backend is encapsulated all the same", udp4, ipip(4), tcxPass, ipipOut(4), ProbeIPIP, true},
		{"an empty slot is dropped", udp4, l2dsr(9), tcxDrop, nil, ProbeDropEmptySlot, true},
		{"slot 0, never filled, is dropped", udp4, ipip(0), tcxDrop, nil, ProbeDropEmptySlot, true},
		{"an index past the backends map is dropped", udp4, l2dsr(MaxBackends), tcxDrop, nil, ProbeDropBadIndex, true},
		{"a backend whose MAC is unknown is dropped for l2dsr", udp4, l2dsr(probeNoMAC), tcxDrop, nil, ProbeDropNoMAC, true},
		{"a backend whose next hop is unknown is dropped for ipip", udp4, ipip(probeNoMAC), tcxDrop, nil, ProbeDropNoMAC, true},
		{"a marked frame that is not IP passes untouched", arp, l2dsr(1), tcxNext, nil, ProbePassNotIP, true},
	}
	_, probe := mustProbeWorld(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := mustProbeStats(t, probe)
			verdict, out := mustRunMarked(t, probe.TcProbe, tc.in, tc.mark)
			if verdict != tc.verdict {
				t.Fatalf("verdict %#x, want %#x", verdict, tc.verdict)
			}
			want := tc.in
			if tc.want != nil {
				want = tc.want(tc.in)
			}
			if tc.verdict != tcxDrop && !bytes.Equal(out, want) {
				t.Errorf("output\n got %x\nwant %x", out, want)
			}
			after := mustProbeStats(t, probe)
			for r := range after {
				grew := after[r] - before[r]
				wantGrew := uint64(0)
				if tc.counted && ProbeReason(r) == tc.reason {
					wantGrew = 1
				}
				if grew != wantGrew {
					t.Errorf("probe_stats[%s] grew by %d, want %d", ProbeReason(r), grew, wantGrew)
				}
			}
		})
	}
}

func TestProbeEncapNeedsASourceOfTheBackendsFamily(t *testing.T) {
	lb, probe := mustProbeWorld(t)
	cfg, err := NewLBConfig(lbMAC, lbAddr4, netip.Addr{}) // no IPv6 source
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, lb.Config, uint32(0), cfg)
	in := probeFrame(vipL2, protoUDP, shortHeader(randomCID))

	verdict, _ := mustRunMarked(t, probe.TcProbe, in, ProbeMarkBase|ProbeMarkIPIP|5)
	if verdict != tcxDrop {
		t.Errorf("ipip to an IPv6 backend without an IPv6 source: verdict %#x, want drop", verdict)
	}
	if got := mustProbeStats(t, probe)[ProbeDropNoEncapSource]; got != 1 {
		t.Errorf("drop_no_encap_source = %d, want 1", got)
	}
	verdict, out := mustRunMarked(t, probe.TcProbe, in, ProbeMarkBase|ProbeMarkIPIP|1)
	if verdict != tcxPass || !bytes.Equal(out, ipipOut(1)(in)) {
		t.Errorf("ipip to an IPv4 backend: verdict %#x, output %x; want pass with %x", verdict, out, ipipOut(1)(in))
	}
}

// TestProbeSharesTheXDPBackends checks that the probe program reads the
// XDP program's backends map, not a copy: a change made through lb's map
// steers the next probe.
func TestProbeSharesTheXDPBackends(t *testing.T) {
	lb, probe := mustProbeWorld(t)
	in := probeFrame(vipL2, protoUDP, shortHeader(randomCID))
	mark := ProbeMarkBase | 9

	if v, _ := mustRunMarked(t, probe.TcProbe, in, mark); v != tcxDrop {
		t.Fatalf("empty slot 9: verdict %#x, want drop", v)
	}
	be, err := NewBackend(netip.MustParseAddr("198.18.1.9"), backendMAC(9), nil, BackendHealthy)
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, lb.Backends, uint32(9), be)
	v, out := mustRunMarked(t, probe.TcProbe, in, mark)
	if v != tcxPass || !bytes.Equal(out, probeL2DSROut(9)(in)) {
		t.Errorf("after filling slot 9 through the XDP program's map: verdict %#x, output %x", v, out)
	}
}

func TestProbeReasonNames(t *testing.T) {
	for r := range NumProbeReasons {
		if n := ProbeReason(r).String(); strings.HasPrefix(n, "probe_reason_") {
			t.Errorf("reason %d has no name from BTF: %q", r, n)
		}
	}
	if got := ProbeDropEmptySlot.String(); got != "drop_empty_slot" {
		t.Errorf("ProbeDropEmptySlot = %q, want drop_empty_slot", got)
	}
}

// BenchmarkProbe measures, under BPF_PROG_TEST_RUN, what tc_probe costs
// every packet the host sends (unmarked: it must stay close to a program
// that does nothing) and what a probe costs (l2dsr: its output is the same
// kind of packet, so Repeat is honest). ns/pkt is the kernel's timing.
func BenchmarkProbe(b *testing.B) {
	_, probe := mustProbeWorld(b)
	noop, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:    "tc_noop",
		Type:    ebpf.SchedCLS,
		License: "Dual BSD/GPL",
		Instructions: asm.Instructions{
			asm.Mov.Imm(asm.R0, -1), // TC_ACT_UNSPEC: next program
			asm.Return(),
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { noop.Close() })
	in := probeFrame(vipL2, protoUDP, shortHeader(randomCID))

	b.Run("noop", func(b *testing.B) {
		d := benchRepeat(b, noop, in, tcxNext)
		b.ReportMetric(float64(d.Nanoseconds()), "ns/pkt")
	})
	b.Run("unmarked", func(b *testing.B) {
		d := benchRepeat(b, probe.TcProbe, in, tcxNext)
		b.ReportMetric(float64(d.Nanoseconds()), "ns/pkt")
	})
	b.Run("l2dsr", func(b *testing.B) {
		opts := &ebpf.RunOptions{Data: in, Repeat: uint32(b.N), Context: skbContext{Mark: ProbeMarkBase | 1}}
		b.ResetTimer()
		ret, err := probe.TcProbe.Run(opts)
		if err != nil {
			b.Fatal(err)
		}
		if ret != tcxPass {
			b.Fatalf("verdict %#x, want pass", ret)
		}
	})
}
