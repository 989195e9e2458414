package cid

import (
	"encoding/binary"
	"fmt"
)

// QUIC versions whose long header packet types ParseHeader knows.
const (
	// Version1 is QUIC version 1 (RFC 9000).
	Version1 uint32 = 0x00000001
	// Version2 is QUIC version 2 (RFC 9369).
	Version2 uint32 = 0x6b3343cf
)

// PacketType is the kind of QUIC packet a header starts.
type PacketType uint8

// Packet types. Long header types are only known for QUIC v1 and v2; other
// versions' long headers are TypeUnknown.
const (
	TypeUnknown            PacketType = iota // long header of a version not known here
	TypeInitial                              // RFC 9000 §17.2.2
	Type0RTT                                 // RFC 9000 §17.2.3
	TypeHandshake                            // RFC 9000 §17.2.4
	TypeRetry                                // RFC 9000 §17.2.5
	TypeVersionNegotiation                   // version 0 (RFC 8999 §6, RFC 9000 §17.2.1)
	TypeShort                                // short header, 1-RTT in v1 and v2 (RFC 9000 §17.3)
)

var packetTypeNames = [...]string{"unknown", "initial", "0-rtt", "handshake", "retry", "version-negotiation", "short"}

// String returns a lowercase name for t.
func (t PacketType) String() string {
	if int(t) < len(packetTypeNames) {
		return packetTypeNames[t]
	}
	return fmt.Sprintf("packet-type(%d)", uint8(t))
}

// Long header packet type bits (the first octet's 0x30) by version: RFC 9369
// §3.2 permutes v1's assignment.
var (
	v1Types = [4]PacketType{TypeInitial, Type0RTT, TypeHandshake, TypeRetry}
	v2Types = [4]PacketType{TypeRetry, TypeInitial, Type0RTT, TypeHandshake}
)

// Header is the version-invariant part of a QUIC packet header (RFC 8999),
// with the packet type for known versions. DCID and SCID are slices of the
// parsed datagram, not copies.
type Header struct {
	Long     bool       // header form bit (0x80) set
	FixedBit bool       // 0x40 set; 1 in every v1/v2 packet unless the peers agreed to grease it (RFC 9287)
	Version  uint32     // long headers only; 0 is Version Negotiation
	Type     PacketType // see PacketType
	DCID     []byte     // destination connection ID
	SCID     []byte     // source connection ID; long headers only
}

// ParseHeader parses the header at the start of datagram. A short header
// carries no DCID length, so shortDCIDLen gives the length the load
// balancer's servers use (Config.Len() with QUIC-LB).
//
// Long header connection IDs may be up to 255 octets in unknown versions and
// Version Negotiation (RFC 8999 §5.1, §6), and up to 20 in QUIC v1 and v2
// (RFC 9000 §17.2). Only the first packet of a coalesced datagram is parsed.
// ParseHeader does not allocate and never reads past the datagram; its
// errors wrap ErrNotQUIC (ErrTruncated, ErrCIDTooLong), except
// ErrBadShortDCIDLen for a shortDCIDLen outside 0..255.
func ParseHeader(datagram []byte, shortDCIDLen int) (Header, error) {
	if len(datagram) == 0 {
		return Header{}, ErrTruncated
	}
	b0 := datagram[0]
	h := Header{Long: b0&0x80 != 0, FixedBit: b0&0x40 != 0}
	if !h.Long {
		if shortDCIDLen < 0 || shortDCIDLen > 255 {
			return Header{}, ErrBadShortDCIDLen
		}
		if len(datagram) < 1+shortDCIDLen {
			return Header{}, ErrTruncated
		}
		h.Type = TypeShort
		h.DCID = datagram[1 : 1+shortDCIDLen : 1+shortDCIDLen]
		return h, nil
	}

	// Long header: first octet, version (32), DCID length (8), DCID,
	// SCID length (8), SCID (RFC 8999 §5.1).
	if len(datagram) < 6 {
		return Header{}, ErrTruncated
	}
	h.Version = binary.BigEndian.Uint32(datagram[1:5])
	maxLen := 255
	switch h.Version {
	case 0:
		h.Type = TypeVersionNegotiation
	case Version1:
		h.Type = v1Types[b0>>4&3]
		maxLen = MaxCIDLen
	case Version2:
		h.Type = v2Types[b0>>4&3]
		maxLen = MaxCIDLen
	}
	off := 5
	dlen := int(datagram[off])
	off++
	if dlen > maxLen {
		return Header{}, ErrCIDTooLong
	}
	if len(datagram) < off+dlen+1 {
		return Header{}, ErrTruncated
	}
	h.DCID = datagram[off : off+dlen : off+dlen]
	off += dlen
	slen := int(datagram[off])
	off++
	if slen > maxLen {
		return Header{}, ErrCIDTooLong
	}
	if len(datagram) < off+slen {
		return Header{}, ErrTruncated
	}
	h.SCID = datagram[off : off+slen : off+slen]
	return h, nil
}
