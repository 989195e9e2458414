package forwarder

import (
	"encoding/binary"
	"net/netip"
)

// A frame builder for router tests: Ethernet (optional VLAN tag), IPv4 or
// IPv6, UDP (or another protocol), payload. The checksums are left zero:
// neither lb.c nor the Router reads them.

// testFrame describes a frame; the zero value of each field is the common
// case.
type testFrame struct {
	src, dst  netip.AddrPort
	vlan      uint16 // tag ethertype: 0x8100 or 0x88a8; 0: untagged
	proto     uint8  // IP protocol (IPv6: next header); 0: UDP
	ipOptions []byte // IPv4 options, a multiple of 4 octets
	fragment  uint16 // IPv4 flags and fragment offset, host order
	ihl       uint8  // IPv4 IHL override (bad headers); 0: computed
	version   uint8  // IP version override; 0: from the address
	payload   []byte // UDP payload (or the whole L4 for other protocols)
}

var (
	testClientMAC = []byte{0x02, 0, 0, 0, 0, 0xc1}
	testLBMAC     = []byte{0x02, 0, 0, 0, 0, 0x1b}
)

func (f testFrame) bytes() []byte {
	b := append(append([]byte{}, testLBMAC...), testClientMAC...)
	if f.vlan != 0 {
		b = binary.BigEndian.AppendUint16(b, f.vlan)
		b = binary.BigEndian.AppendUint16(b, 42)
	}
	proto := f.proto
	if proto == 0 {
		proto = protoUDP
	}
	l4 := f.payload
	if proto == protoUDP {
		l4 = binary.BigEndian.AppendUint16(nil, f.src.Port())
		l4 = binary.BigEndian.AppendUint16(l4, f.dst.Port())
		l4 = binary.BigEndian.AppendUint16(l4, uint16(udpHdrLen+len(f.payload)))
		l4 = append(l4, 0, 0)
		l4 = append(l4, f.payload...)
	}
	if f.src.Addr().Is4() {
		b = binary.BigEndian.AppendUint16(b, etherIPv4)
		hl := ipv4HdrLen + len(f.ipOptions)
		ihl, version := uint8(hl/4), uint8(4)
		if f.ihl != 0 {
			ihl = f.ihl
		}
		if f.version != 0 {
			version = f.version
		}
		b = append(b, version<<4|ihl&0x0f, 0)
		b = binary.BigEndian.AppendUint16(b, uint16(hl+len(l4)))
		b = binary.BigEndian.AppendUint16(b, 0x1234)
		b = binary.BigEndian.AppendUint16(b, f.fragment)
		b = append(b, 64, proto, 0, 0)
		s, d := f.src.Addr().As4(), f.dst.Addr().As4()
		b = append(append(b, s[:]...), d[:]...)
		b = append(b, f.ipOptions...)
	} else {
		b = binary.BigEndian.AppendUint16(b, etherIPv6)
		version := uint32(6)
		if f.version != 0 {
			version = uint32(f.version)
		}
		b = binary.BigEndian.AppendUint32(b, version<<28|0x12345)
		b = binary.BigEndian.AppendUint16(b, uint16(len(l4)))
		b = append(b, proto, 64)
		s, d := f.src.Addr().As16(), f.dst.Addr().As16()
		b = append(append(b, s[:]...), d[:]...)
	}
	return append(b, l4...)
}

// quicShort is a 1-RTT packet (RFC 9000 §17.3): first octet with the fixed
// bit, DCID, then rest octets of packet number and payload.
func quicShort(dcid []byte, rest int) []byte {
	b := append([]byte{0x40 | 0x01}, dcid...)
	return append(b, make([]byte, rest)...)
}

// Long header packet types of QUIC v1 (RFC 9000 §17.2), in the first
// octet's 0x30 bits.
const (
	longInitial   = 0x00
	long0RTT      = 0x10
	longHandshake = 0x20
)

// quicLong is a long header packet of version with dcid, an 8-octet SCID
// and rest octets after it.
func quicLong(typ byte, version uint32, dcid []byte, rest int) []byte {
	b := []byte{0xc0 | typ}
	b = binary.BigEndian.AppendUint32(b, version)
	b = append(b, byte(len(dcid)))
	b = append(b, dcid...)
	b = append(b, 8, 1, 2, 3, 4, 5, 6, 7, 8)
	return append(b, make([]byte, rest)...)
}
