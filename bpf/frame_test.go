package bpf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"
)

// FuzzFrameBuilders feeds any octets to Encap and RewriteL2DSR as the
// frame, for a backend of either family: they must never panic or touch
// the inner packet, and what they build must be well formed.
func FuzzFrameBuilders(f *testing.F) {
	f.Add(frame{src: client4, dst: vipL2, payload: shortHeader(plainCID(1))}.bytes(), true)
	f.Add(frame{src: client6, dst: vipV6L2, vlan: 7, payload: longHeader(randomCID)}.bytes(), false)
	f.Add(frame{src: client4, dst: vipL2, tos: 0xb8, ipOptions: []byte{1, 1, 1, 0}, payload: []byte("x")}.bytes(), false)
	f.Add([]byte{}, true)
	lb, err := NewLBConfig(lbMAC, lbAddr4, lbAddr6)
	if err != nil {
		f.Fatal(err)
	}
	b4, _ := NewBackend(netip.MustParseAddr("198.18.1.1"), backendMAC(1), nextHopMAC(1), BackendHealthy)
	b6, _ := NewBackend(netip.MustParseAddr("2001:db8:1::5"), backendMAC(5), nextHopMAC(5), BackendHealthy)
	f.Fuzz(func(t *testing.T, in []byte, v4 bool) {
		be := &b6
		if v4 {
			be = &b4
		}
		l2 := bytes.Clone(in)
		if err := RewriteL2DSR(l2, be, &lb); err == nil {
			if !bytes.Equal(l2[12:], in[12:]) || !bytes.Equal(l2[:6], be.Mac[:]) {
				t.Fatalf("l2dsr changed more than the MACs")
			}
		} else if len(in) >= ethLen {
			t.Fatalf("l2dsr refused a frame of %d octets: %v", len(in), err)
		}

		n := EncapLen(be)
		buf := append(make([]byte, n), in...)
		err := Encap(buf, be, &lb)
		if err != nil {
			if !errors.Is(err, ErrFrameTruncated) && !errors.Is(err, ErrFrameNotIP) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		hdr := ethLen
		if p := binary.BigEndian.Uint16(in[12:]); p == etherQ || p == etherQinQ {
			hdr += vlanLen
		}
		if !bytes.Equal(buf[hdr+n:], in[hdr:]) {
			t.Fatal("encap changed the inner packet")
		}
		if !bytes.Equal(buf[:6], be.NexthopMac[:]) || !bytes.Equal(buf[6:12], lbMAC) {
			t.Fatal("encap did not address the next hop from the load balancer")
		}
		o := buf[hdr : hdr+n]
		if v4 && (o[0] != 0x45 || IPv4Checksum(o) != 0 || o[9] != protoIPIP && o[9] != protoIPv6) {
			t.Fatalf("bad outer ipv4 header % x", o)
		}
		if !v4 && (o[0]>>4 != 6 || o[6] != protoIPIP && o[6] != protoIPv6) {
			t.Fatalf("bad outer ipv6 header % x", o)
		}
	})
}

func TestEncapWithoutSourceOrRoom(t *testing.T) {
	in := frame{src: client4, dst: vipL2, payload: shortHeader(plainCID(1))}.bytes()
	b4, _ := NewBackend(netip.MustParseAddr("198.18.1.1"), nil, nextHopMAC(1), BackendHealthy)
	lb, _ := NewLBConfig(lbMAC, netip.Addr{}, lbAddr6)
	if err := Encap(append(make([]byte, 20), in...), &b4, &lb); !errors.Is(err, ErrNoEncapSource) {
		t.Errorf("no ipv4 source: %v, want ErrNoEncapSource", err)
	}
	if err := Encap(make([]byte, 10), &b4, &lb); !errors.Is(err, ErrNoHeadroom) {
		t.Errorf("short buffer: %v, want ErrNoHeadroom", err)
	}
	if n := testing.AllocsPerRun(100, func() { _ = Encap(append(make([]byte, 20), in...), &b4, &lb) }); n > 1 {
		t.Errorf("Encap allocates %v times", n)
	}
}
