package bpf

import (
	"encoding/binary"
	"net"
	"net/netip"
)

// A tiny frame builder for tests: Ethernet (optional 802.1Q tag), IPv4 or
// IPv6, UDP (or another protocol), payload. gopacket is not a dependency.

var (
	clientMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0xc1}
	lbMAC     = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x1b}
)

const (
	etherIPv4 = 0x0800
	etherIPv6 = 0x86dd
	etherVLAN = 0x8100
	protoUDP  = 17
	protoTCP  = 6
)

// frame describes a test frame; the zero value of each field is the
// common case.
type frame struct {
	src, dst  netip.AddrPort
	vlan      uint16 // 802.1Q VLAN ID; 0: untagged
	proto     uint8  // IP protocol; 0: UDP
	ipOptions []byte // IPv4 options (multiple of 4 octets)
	fragment  uint16 // IPv4 flags+fragment offset field, host order
	tos       uint8
	payload   []byte // UDP payload (or the whole L4 for other protocols)
}

func (f frame) bytes() []byte {
	var b []byte
	b = append(b, lbMAC...)
	b = append(b, clientMAC...)
	if f.vlan != 0 {
		b = binary.BigEndian.AppendUint16(b, etherVLAN)
		b = binary.BigEndian.AppendUint16(b, f.vlan)
	}
	proto := f.proto
	if proto == 0 {
		proto = protoUDP
	}
	l4 := f.payload
	if proto == protoUDP {
		l4 = udpHeader(f.src.Port(), f.dst.Port(), f.payload)
	}
	if f.src.Addr().Is4() {
		b = binary.BigEndian.AppendUint16(b, etherIPv4)
		b = append(b, ipv4Header(f.src.Addr(), f.dst.Addr(), proto, f.tos, f.fragment, f.ipOptions, len(l4))...)
	} else {
		b = binary.BigEndian.AppendUint16(b, etherIPv6)
		b = append(b, ipv6Header(f.src.Addr(), f.dst.Addr(), proto, f.tos, len(l4))...)
	}
	return append(b, l4...)
}

func udpHeader(sport, dport uint16, payload []byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, sport)
	b = binary.BigEndian.AppendUint16(b, dport)
	b = binary.BigEndian.AppendUint16(b, uint16(8+len(payload)))
	b = binary.BigEndian.AppendUint16(b, 0) // checksum: XDP does not look
	return append(b, payload...)
}

func ipv4Header(src, dst netip.Addr, proto, tos uint8, frag uint16, opts []byte, l4len int) []byte {
	hl := 20 + len(opts)
	b := []byte{0x40 | uint8(hl/4), tos}
	b = binary.BigEndian.AppendUint16(b, uint16(hl+l4len))
	b = binary.BigEndian.AppendUint16(b, 0x1234) // id
	b = binary.BigEndian.AppendUint16(b, frag)
	b = append(b, 64, proto, 0, 0)
	s, d := src.As4(), dst.As4()
	b = append(b, s[:]...)
	b = append(b, d[:]...)
	b = append(b, opts...)
	binary.BigEndian.PutUint16(b[10:], IPv4Checksum(b))
	return b
}

func ipv6Header(src, dst netip.Addr, next, tc uint8, l4len int) []byte {
	b := binary.BigEndian.AppendUint32(nil, 6<<28|uint32(tc)<<20|0x12345)
	b = binary.BigEndian.AppendUint16(b, uint16(l4len))
	b = append(b, next, 64)
	s, d := src.As16(), dst.As16()
	b = append(b, s[:]...)
	return append(b, d[:]...)
}

// shortHeader is a QUIC 1-RTT packet (RFC 9000 §17.3): first octet with
// the fixed bit, DCID, then packet number and payload (opaque here).
func shortHeader(dcid []byte) []byte {
	b := append([]byte{0x40 | 0x01}, dcid...)
	return append(b, make([]byte, 24)...)
}

// longHeader is a QUIC v1 Initial (RFC 9000 §17.2) with dcid and an
// 8-octet SCID; the rest is opaque.
func longHeader(dcid []byte) []byte {
	b := []byte{0xc0, 0, 0, 0, 1, byte(len(dcid))}
	b = append(b, dcid...)
	b = append(b, 8, 1, 2, 3, 4, 5, 6, 7, 8)
	return append(b, make([]byte, 32)...)
}
