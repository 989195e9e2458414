package bpf

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
)

// FlowHashSeed is FLOW_HASH_SEED of include/hash.h ("Sp0k").
const FlowHashSeed = 0x5370306b

// FlowHash mirrors flow_hash in include/hash.h bit for bit: the
// MurmurHash3_x86_32 block step and finaliser over 32-bit words made from
// the addresses (big-endian words; IPv4 one, IPv6 four) and, for
// Hash4Tuple, the destination address and srcPort<<16|dstPort. XDP picks
// Maglev entry FlowHash(...) % M. src and dst must be of one family.
func FlowHash(kind HashKind, src, dst netip.AddrPort) uint32 {
	var w [9]uint32
	n := appendAddr(w[:0], src.Addr())
	if kind != HashSrcIP {
		n = appendAddr(n, dst.Addr())
		n = append(n, uint32(src.Port())<<16|uint32(dst.Port()))
	}
	h := uint32(FlowHashSeed)
	for _, k := range n {
		k *= 0xcc9e2d51
		k = bits.RotateLeft32(k, 15)
		k *= 0x1b873593
		h ^= k
		h = bits.RotateLeft32(h, 13)
		h = h*5 + 0xe6546b64
	}
	h ^= uint32(4 * len(n))
	h ^= h >> 16
	h *= 0x85ebca6b
	h ^= h >> 13
	h *= 0xc2b2ae35
	h ^= h >> 16
	return h
}

func appendAddr(w []uint32, a netip.Addr) []uint32 {
	a = a.Unmap()
	if a.Is4() {
		b := a.As4()
		return append(w, binary.BigEndian.Uint32(b[:]))
	}
	b := a.As16()
	for i := 0; i < 16; i += 4 {
		w = append(w, binary.BigEndian.Uint32(b[i:]))
	}
	return w
}
