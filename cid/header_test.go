package cid

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

// longHeader builds a long header packet: first octet, version, DCID, SCID,
// then rest (token, length, payload: whatever follows the invariant part).
func longHeader(first byte, version uint32, dcid, scid, rest []byte) []byte {
	b := []byte{first}
	b = binary.BigEndian.AppendUint32(b, version)
	b = append(b, byte(len(dcid)))
	b = append(b, dcid...)
	b = append(b, byte(len(scid)))
	b = append(b, scid...)
	return append(b, rest...)
}

func seq(n int, start byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = start + byte(i)
	}
	return b
}

func TestParseHeader(t *testing.T) {
	dcid, scid := seq(8, 0x10), seq(5, 0x50)
	cid20, cid21, cid255 := seq(20, 0x20), seq(21, 0x40), seq(255, 0)
	payload := seq(30, 0xa0)
	tests := []struct {
		name     string
		datagram []byte
		shortLen int
		want     Header
		// headerLen is where the invariant header ends: every shorter
		// prefix must be ErrTruncated.
		headerLen int
	}{
		{"a v1 Initial is parsed", longHeader(0xc3, Version1, dcid, scid, payload), 0,
			Header{Long: true, FixedBit: true, Version: Version1, Type: TypeInitial, DCID: dcid, SCID: scid}, 20},
		{"a v1 0-RTT is parsed", longHeader(0xd1, Version1, dcid, scid, payload), 0,
			Header{Long: true, FixedBit: true, Version: Version1, Type: Type0RTT, DCID: dcid, SCID: scid}, 20},
		{"a v1 Handshake is parsed", longHeader(0xe0, Version1, dcid, scid, payload), 0,
			Header{Long: true, FixedBit: true, Version: Version1, Type: TypeHandshake, DCID: dcid, SCID: scid}, 20},
		{"a v1 Retry is parsed", longHeader(0xf5, Version1, dcid, scid, payload), 0,
			Header{Long: true, FixedBit: true, Version: Version1, Type: TypeRetry, DCID: dcid, SCID: scid}, 20},
		{"a v2 Initial has type bits 01", longHeader(0xd0, Version2, dcid, scid, payload), 0,
			Header{Long: true, FixedBit: true, Version: Version2, Type: TypeInitial, DCID: dcid, SCID: scid}, 20},
		{"a v2 0-RTT has type bits 10", longHeader(0xe0, Version2, dcid, scid, payload), 0,
			Header{Long: true, FixedBit: true, Version: Version2, Type: Type0RTT, DCID: dcid, SCID: scid}, 20},
		{"a v2 Handshake has type bits 11", longHeader(0xf0, Version2, dcid, scid, payload), 0,
			Header{Long: true, FixedBit: true, Version: Version2, Type: TypeHandshake, DCID: dcid, SCID: scid}, 20},
		{"a v2 Retry has type bits 00", longHeader(0xc0, Version2, dcid, scid, payload), 0,
			Header{Long: true, FixedBit: true, Version: Version2, Type: TypeRetry, DCID: dcid, SCID: scid}, 20},
		{"a v1 Initial with 20-octet CIDs is parsed", longHeader(0xc0, Version1, cid20, cid20, payload), 0,
			Header{Long: true, FixedBit: true, Version: Version1, Type: TypeInitial, DCID: cid20, SCID: cid20}, 47},
		{"a v1 Initial with empty CIDs is parsed", longHeader(0xc0, Version1, nil, nil, payload), 0,
			Header{Long: true, FixedBit: true, Version: Version1, Type: TypeInitial, DCID: []byte{}, SCID: []byte{}}, 7},
		{"a long header without the fixed bit is reported, not rejected", longHeader(0x80, Version1, dcid, scid, payload), 0,
			Header{Long: true, FixedBit: false, Version: Version1, Type: TypeInitial, DCID: dcid, SCID: scid}, 20},
		{"Version Negotiation is version 0 whatever the type bits", longHeader(0xa5, 0, dcid, scid, []byte{0, 0, 0, 1}), 0,
			Header{Long: true, FixedBit: false, Version: 0, Type: TypeVersionNegotiation, DCID: dcid, SCID: scid}, 20},
		{"Version Negotiation may carry 255-octet CIDs", longHeader(0x80, 0, cid255, cid21, nil), 0,
			Header{Long: true, Version: 0, Type: TypeVersionNegotiation, DCID: cid255, SCID: cid21}, 283},
		{"an unknown version may carry 255-octet CIDs", longHeader(0xc0, 0x1a2a3a4a, cid21, cid255, payload), 0,
			Header{Long: true, FixedBit: true, Version: 0x1a2a3a4a, Type: TypeUnknown, DCID: cid21, SCID: cid255}, 283},
		{"a short header takes the DCID length it is given", append([]byte{0x41}, payload...), 8,
			Header{FixedBit: true, Type: TypeShort, DCID: payload[:8]}, 9},
		{"a short header with a zero-length DCID is parsed", []byte{0x40}, 0,
			Header{FixedBit: true, Type: TypeShort, DCID: []byte{}}, 1},
		{"a short header without the fixed bit is reported, not rejected", append([]byte{0x01}, payload...), 20,
			Header{FixedBit: false, Type: TypeShort, DCID: payload[:20]}, 21},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseHeader(tt.datagram, tt.shortLen)
			if err != nil {
				t.Fatalf("ParseHeader: %v", err)
			}
			assertHeader(t, got, tt.want)
			for n := range tt.headerLen {
				if h, err := ParseHeader(tt.datagram[:n], tt.shortLen); !errors.Is(err, ErrTruncated) || !errors.Is(err, ErrNotQUIC) {
					t.Fatalf("ParseHeader(first %d octets) = %+v, %v; want ErrTruncated", n, h, err)
				}
			}
			h, err := ParseHeader(tt.datagram[:tt.headerLen], tt.shortLen)
			if err != nil {
				t.Fatalf("ParseHeader(the header alone, %d octets): %v", tt.headerLen, err)
			}
			assertHeader(t, h, tt.want)
		})
	}
}

func assertHeader(t *testing.T, got, want Header) {
	t.Helper()
	if got.Long != want.Long || got.FixedBit != want.FixedBit || got.Version != want.Version || got.Type != want.Type ||
		!bytes.Equal(got.DCID, want.DCID) || !bytes.Equal(got.SCID, want.SCID) {
		t.Errorf("header = %+v\nwant     %+v", got, want)
	}
	if want.SCID == nil && got.SCID != nil {
		t.Errorf("SCID = %x, want nil for a short header", got.SCID)
	}
}

func TestParseHeaderRejectsOverlongCIDsInV1AndV2(t *testing.T) {
	cid20, cid21 := seq(20, 0), seq(21, 0)
	tests := []struct {
		name     string
		datagram []byte
	}{
		{"a v1 DCID of 21 octets is rejected", longHeader(0xc0, Version1, cid21, cid20, nil)},
		{"a v1 SCID of 21 octets is rejected", longHeader(0xc0, Version1, cid20, cid21, nil)},
		{"a v2 DCID of 21 octets is rejected", longHeader(0xd0, Version2, cid21, cid20, nil)},
		{"a v2 DCID length of 255 is rejected before reading it", []byte{0xc0, 0x6b, 0x33, 0x43, 0xcf, 255}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := ParseHeader(tt.datagram, 0)
			if !errors.Is(err, ErrCIDTooLong) || !errors.Is(err, ErrNotQUIC) {
				t.Errorf("ParseHeader = %+v, %v; want ErrCIDTooLong", h, err)
			}
		})
	}
}

func TestParseHeaderRejectsImpossibleShortDCIDLengths(t *testing.T) {
	for _, n := range []int{-1, 256, 1 << 20} {
		if _, err := ParseHeader(make([]byte, 300), n); !errors.Is(err, ErrBadShortDCIDLen) {
			t.Errorf("ParseHeader(short, %d) error = %v, want ErrBadShortDCIDLen", n, err)
		}
	}
}

func TestParseHeaderSlicesAliasTheDatagram(t *testing.T) {
	d := longHeader(0xc0, Version1, seq(4, 1), seq(4, 9), []byte{0xff})
	h, err := ParseHeader(d, 0)
	if err != nil {
		t.Fatal(err)
	}
	if &h.DCID[0] != &d[6] || &h.SCID[0] != &d[11] {
		t.Error("DCID/SCID are copies, want slices of the datagram")
	}
	if cap(h.DCID) != 4 || cap(h.SCID) != 4 {
		t.Errorf("cap(DCID), cap(SCID) = %d, %d; want 4, 4 so appends cannot overwrite the datagram", cap(h.DCID), cap(h.SCID))
	}
}

func TestParseHeaderDoesNotAllocate(t *testing.T) {
	long := longHeader(0xc0, Version1, seq(8, 1), seq(8, 9), seq(100, 0))
	short := append([]byte{0x40}, seq(100, 0)...)
	allocs := testing.AllocsPerRun(100, func() {
		_, _ = ParseHeader(long, 8)
		_, _ = ParseHeader(short, 8)
		_, _ = ParseHeader(long[:10], 8)
	})
	if allocs != 0 {
		t.Errorf("ParseHeader allocated %.1f times per call, want 0", allocs)
	}
}

func TestPacketTypeNames(t *testing.T) {
	if TypeInitial.String() != "initial" || TypeShort.String() != "short" || PacketType(99).String() != "packet-type(99)" {
		t.Errorf("names: %v %v %v", TypeInitial, TypeShort, PacketType(99))
	}
}

// FuzzParseHeader parses arbitrary datagrams: ParseHeader must never panic,
// must fail only with its sentinel errors, and when it succeeds DCID and SCID
// must be the octets an independent reading of RFC 8999 finds, inside the
// datagram.
func FuzzParseHeader(f *testing.F) {
	f.Add(longHeader(0xc3, Version1, seq(8, 0x10), seq(5, 0x50), seq(10, 0)), 8)
	f.Add(longHeader(0xd0, Version2, seq(20, 0), nil, nil), 0)
	f.Add(longHeader(0x80, 0, seq(255, 0), seq(30, 0), nil), 0)
	f.Add(longHeader(0xc0, 0xfaceb00c, seq(40, 0), seq(3, 0), nil), 0)
	f.Add(append([]byte{0x40}, seq(20, 0)...), 20)
	f.Add([]byte{0xc0, 0, 0, 0, 1, 21}, 0)
	f.Add([]byte{}, -1)
	f.Fuzz(func(t *testing.T, d []byte, shortLen int) {
		h, err := ParseHeader(d, shortLen)
		if err != nil {
			if !errors.Is(err, ErrNotQUIC) && !errors.Is(err, ErrBadShortDCIDLen) {
				t.Fatalf("ParseHeader(%x, %d) error %v is not one of ours", d, shortLen, err)
			}
			return
		}
		if h.Long != (d[0]&0x80 != 0) || h.FixedBit != (d[0]&0x40 != 0) {
			t.Fatalf("form/fixed bits %v/%v disagree with first octet %#x", h.Long, h.FixedBit, d[0])
		}
		if !h.Long {
			if !bytes.Equal(h.DCID, d[1:1+shortLen]) || h.SCID != nil || h.Type != TypeShort {
				t.Fatalf("short header %+v, want DCID %x", h, d[1:1+shortLen])
			}
			return
		}
		dl := int(d[5])
		sl := int(d[6+dl])
		if !bytes.Equal(h.DCID, d[6:6+dl]) || !bytes.Equal(h.SCID, d[7+dl:7+dl+sl]) {
			t.Fatalf("long header %+v, want DCID %x SCID %x", h, d[6:6+dl], d[7+dl:7+dl+sl])
		}
		if (h.Version == Version1 || h.Version == Version2) && (dl > MaxCIDLen || sl > MaxCIDLen) {
			t.Fatalf("v1/v2 header accepted with CID lengths %d/%d", dl, sl)
		}
		if len(h.DCID) > 0 && &h.DCID[0] != &d[6] {
			t.Fatal("DCID is not a slice of the datagram")
		}
	})
}

func BenchmarkParseHeader(b *testing.B) {
	for _, bc := range []struct {
		name string
		d    []byte
	}{
		{"short", append([]byte{0x40}, seq(1200, 0)...)},
		{"long", longHeader(0xc0, Version1, seq(8, 1), seq(8, 9), seq(1200, 0))},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ParseHeader(bc.d, 8); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
