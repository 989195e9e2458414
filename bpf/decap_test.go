package bpf

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
)

func mustLoadDecap(tb testing.TB, local ...string) *DecapObjects {
	tb.Helper()
	skipUnlessRoot(tb)
	objs, err := LoadDecap(nil)
	if err != nil {
		tb.Fatalf("load decap: %v", err)
	}
	tb.Cleanup(func() { objs.Close() })
	for _, a := range local {
		mustPut(tb, objs.DecapAddrs, NewDecapKey(netip.MustParseAddr(a)), uint8(1))
	}
	return objs
}

// decapped is what the backend's stack must see: the inner frame under
// the tunnel frame's MACs.
func decapped(inner []byte, be uint32) []byte {
	out := bytes.Clone(inner)
	copy(out[0:6], nextHopMAC(be))
	copy(out[6:12], lbMAC)
	return out
}

func TestDecapStripsTunnels(t *testing.T) {
	in4 := frame{src: client4, dst: vipIPIP, payload: shortHeader(plainCID(1))}.bytes()
	in6 := frame{src: client6, dst: vipV6IPIP, payload: shortHeader(plainCID(5))}.bytes()
	in4vlan := frame{src: client4, dst: vipIPIP, vlan: 42, payload: shortHeader(plainCID(1))}.bytes()
	frag := ipipOut(1)(in4)
	binary.BigEndian.PutUint16(frag[14+6:], 0x2000)

	cases := []struct {
		name   string
		in     []byte
		want   []byte // nil: unchanged
		reason DecapReason
	}{
		{"IPv4 in IPv4 to a local address is stripped", ipipOut(1)(in4), decapped(in4, 1), decapDecapReasonDECAP_OK},
		{"IPv6 in IPv6 to a local address is stripped", ipipOut(5)(in6), decapped(in6, 5), decapDecapReasonDECAP_OK},
		{"IPv6 in IPv4 is stripped and the ethertype becomes IPv6", ipipOut(1)(in6), decapped(in6, 1), decapDecapReasonDECAP_OK},
		{"IPv4 in IPv6 is stripped and the ethertype becomes IPv4", ipipOut(5)(in4), decapped(in4, 5), decapDecapReasonDECAP_OK},
		{"a VLAN-tagged tunnel keeps its tag", ipipOut(1)(in4vlan), decapped(in4vlan, 1), decapDecapReasonDECAP_OK},
		{"a tunnel to another host is passed untouched", ipipOut(2)(in4), nil, decapDecapReasonDECAP_PASS_NOT_LOCAL},
		{"plain UDP is passed untouched", in4, nil, decapDecapReasonDECAP_PASS_NOT_TUNNEL},
		{"plain IPv6 UDP is passed untouched", in6, nil, decapDecapReasonDECAP_PASS_NOT_TUNNEL},
		{"an ARP frame is passed untouched", append(append(append([]byte{}, lbMAC...), clientMAC...), 0x08, 0x06, 0, 1), nil, decapDecapReasonDECAP_PASS_NOT_IP},
		{"a fragmented outer packet is passed untouched", frag, nil, decapDecapReasonDECAP_PASS_FRAGMENT},
		{"a tunnel with a cut inner header is passed untouched", ipipOut(1)(in4)[:14+20+10], nil, decapDecapReasonDECAP_PASS_TRUNCATED},
		{"a cut outer header is passed untouched", ipipOut(1)(in4)[:14+12], nil, decapDecapReasonDECAP_PASS_TRUNCATED},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			objs := mustLoadDecap(t, "198.18.1.1", "2001:db8:1::5")
			before := sumPerCPU(t, objs.DecapStats, uint32(tc.reason))
			verdict, out := mustRun(t, objs.XdpDecap, tc.in)
			if verdict != xdpPass {
				t.Errorf("verdict = %d, want XDP_PASS", verdict)
			}
			want := tc.want
			if want == nil {
				want = tc.in
			}
			if !bytes.Equal(out, want) {
				t.Errorf("output differs\n got %x\nwant %x", out, want)
			}
			if d := sumPerCPU(t, objs.DecapStats, uint32(tc.reason)) - before; d != 1 {
				t.Errorf("counter %s grew by %d, want 1", tc.reason, d)
			}
		})
	}
}

// What lb.c encapsulates, decap.c restores: a round trip through both
// programs gives back the client's IP packet.
func TestDecapUndoesLBEncapsulation(t *testing.T) {
	lb := mustWorld(t)
	decap := mustLoadDecap(t, "198.18.1.1", "2001:db8:1::5")
	for _, in := range [][]byte{
		frame{src: client4, dst: vipIPIP, payload: shortHeader(plainCID(1))}.bytes(),
		frame{src: client4, dst: vipIPIP, vlan: 9, payload: shortHeader(plainCID(5))}.bytes(),
		frame{src: client6, dst: vipV6inV4, payload: shortHeader(plainCID(1))}.bytes(),
		frame{src: client6, dst: vipV6IPIP, payload: shortHeader(plainCID(5))}.bytes(),
	} {
		verdict, tunneled := mustRun(t, lb.XdpLb, in)
		if verdict != xdpTX {
			t.Fatalf("lb verdict %d, want XDP_TX", verdict)
		}
		verdict, out := mustRun(t, decap.XdpDecap, tunneled)
		if verdict != xdpPass {
			t.Fatalf("decap verdict %d, want XDP_PASS", verdict)
		}
		if !bytes.Equal(out[12:], in[12:]) {
			t.Errorf("round trip changed the packet\n got %x\nwant %x", out[12:], in[12:])
		}
	}
}
