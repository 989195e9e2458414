package bpf

import (
	"encoding/binary"
	"errors"
)

// The Go twin of lb.c's send and encap: the frame XDP transmits to a
// backend, built in Go by the slow path (forwarder) that forwards what XDP
// handed up, and by the tests that check lb.c's output byte for byte. A
// change here is a change to lb.c, and the other way round.

// Errors of RewriteL2DSR and Encap, which do not allocate.
var (
	// ErrFrameTruncated: the frame is cut before the end of its headers.
	ErrFrameTruncated = errors.New("frame truncated")
	// ErrFrameNotIP: the frame carries neither IPv4 nor IPv6.
	ErrFrameNotIP = errors.New("frame is not ip")
	// ErrNoEncapSource: the load balancer has no address of the backend's
	// family to send ipip from (lb.c: REASON_PASS_NO_ENCAP_SOURCE).
	ErrNoEncapSource = errors.New("no ipip source address of the backend's family")
	// ErrNoHeadroom: the buffer has no room for the outer header.
	ErrNoHeadroom = errors.New("no room for the outer header")
)

const (
	ethLen     = 14
	vlanLen    = 4
	etherIP    = 0x0800
	etherIP6   = 0x86dd
	etherQ     = 0x8100
	etherQinQ  = 0x88a8
	ipDF       = 0x4000
	protoIPIP  = 4
	protoIPv6  = 41
	outerTTL   = 64
	ipv4HdrLen = 20
	ipv6HdrLen = 40
)

// RewriteL2DSR rewrites frame for l2dsr forwarding, as lb.c's send does:
// destination MAC the backend's own, source MAC the load balancer's. The
// backend holds the VIP and answers the client directly.
func RewriteL2DSR(frame []byte, be *Backend, lb *LBConfig) error {
	if len(frame) < ethLen {
		return ErrFrameTruncated
	}
	copy(frame[0:6], be.Mac[:])
	copy(frame[6:12], lb.Mac[:])
	return nil
}

// EncapLen returns how many octets ipip forwarding to be puts in front of
// the inner IP packet: an outer IPv4 (20) or IPv6 (40) header, following
// the backend's family.
func EncapLen(be *Backend) int {
	if be.Family == FamilyIPv4 {
		return ipv4HdrLen
	}
	return ipv6HdrLen
}

// Encap builds in buf the frame lb.c's encap makes: buf[EncapLen(be):]
// holds the received frame; on return buf holds its L2 header (VLAN tag
// kept) addressed to the backend's next hop from the load balancer's MAC,
// an outer header toward the backend (RFC 2003 IPv4, protocol 4 for IPv4
// inside and 41 for IPv6 inside, RFC 2473; TOS and DF copied, TTL 64,
// identification 0; IPv6 flow label 0) and the inner packet untouched.
// The outer length is the inner IP header's, so Ethernet padding stays
// padding.
func Encap(buf []byte, be *Backend, lb *LBConfig) error {
	n := EncapLen(be)
	if len(buf) < n {
		return ErrNoHeadroom
	}
	in := buf[n:]
	if len(in) < ethLen {
		return ErrFrameTruncated
	}
	l2 := ethLen
	proto := binary.BigEndian.Uint16(in[12:])
	if proto == etherQ || proto == etherQinQ {
		if len(in) < ethLen+vlanLen {
			return ErrFrameTruncated
		}
		l2 += vlanLen
		proto = binary.BigEndian.Uint16(in[16:])
	}
	ip := in[l2:]
	var innerLen int
	var tos uint8
	df := true
	var innerProto uint8
	switch proto {
	case etherIP:
		if len(ip) < ipv4HdrLen {
			return ErrFrameTruncated
		}
		innerLen = int(binary.BigEndian.Uint16(ip[2:]))
		tos = ip[1]
		df = binary.BigEndian.Uint16(ip[6:])&ipDF != 0
		innerProto = protoIPIP
	case etherIP6:
		if len(ip) < ipv6HdrLen {
			return ErrFrameTruncated
		}
		innerLen = int(binary.BigEndian.Uint16(ip[4:])) + ipv6HdrLen
		tos = uint8(binary.BigEndian.Uint32(ip) >> 20)
		innerProto = protoIPv6
	default:
		return ErrFrameNotIP
	}
	if be.Family == FamilyIPv4 && lb.Addr4 == [4]byte{} || be.Family != FamilyIPv4 && lb.Addr6 == [16]byte{} {
		return ErrNoEncapSource
	}

	// The L2 header moves to the front; the outer header goes between.
	copy(buf[:l2], in[:l2])
	copy(buf[0:6], be.NexthopMac[:])
	copy(buf[6:12], lb.Mac[:])
	outerProto := uint16(etherIP6)
	if be.Family == FamilyIPv4 {
		outerProto = etherIP
	}
	binary.BigEndian.PutUint16(buf[l2-2:], outerProto)

	o := buf[l2 : l2+n]
	if be.Family == FamilyIPv4 {
		o[0], o[1] = 0x45, tos
		binary.BigEndian.PutUint16(o[2:], uint16(innerLen+ipv4HdrLen))
		binary.BigEndian.PutUint16(o[4:], 0) // identification
		var frag uint16
		if df {
			frag = ipDF
		}
		binary.BigEndian.PutUint16(o[6:], frag)
		o[8], o[9] = outerTTL, innerProto
		o[10], o[11] = 0, 0
		copy(o[12:16], lb.Addr4[:])
		copy(o[16:20], be.Addr[:4])
		binary.BigEndian.PutUint16(o[10:], IPv4Checksum(o))
		return nil
	}
	binary.BigEndian.PutUint32(o[0:], 0x60000000|uint32(tos)<<20)
	binary.BigEndian.PutUint16(o[4:], uint16(innerLen))
	o[6], o[7] = innerProto, outerTTL
	copy(o[8:24], lb.Addr6[:])
	copy(o[24:40], be.Addr[:])
	return nil
}

// IPv4Checksum is the RFC 1071 checksum of an IPv4 header whose checksum
// field is zero (lb.c's ipv4_csum); over a header with its checksum filled
// in, it is 0 when the header is intact.
func IPv4Checksum(hdr []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(hdr); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(hdr[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}
