package cid

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"fmt"
	"sync"
)

// mode is how a config turns server ID and nonce into CID octets.
type mode uint8

const (
	modePlain  mode = iota // no key: octets as they are (draft-21 §5.4)
	modeSingle             // key, 16 octets: one AES-ECB block (draft-21 §5.4.1)
	modeFour               // key, other lengths: four-pass Feistel (draft-21 §5.4.2)
)

// blockPool holds AES input/output blocks. cipher.Block is an interface, so
// escape analysis moves any buffer passed to Encrypt/Decrypt to the heap; a
// pooled block keeps the decode path free of allocations.
var blockPool = sync.Pool{New: func() any { return new([aes.BlockSize]byte) }}

// half is one Feistel half (left_N or right_N of draft-21 §5.4.2), at most
// 10 octets, held as a 16-octet block in two little-endian words: octet i of
// the half is octet i of the block. Octets from half_len on are always zero,
// so the block is expand()'s input with the length and pass still to add.
type half struct{ lo, hi uint64 }

func (h half) xor(o half) half { return half{h.lo ^ o.lo, h.hi ^ o.hi} }
func (h half) and(o half) half { return half{h.lo & o.lo, h.hi & o.hi} }

// bytes returns the half as a 16-octet block.
func (h half) bytes() [aes.BlockSize]byte {
	var b [aes.BlockSize]byte
	binary.LittleEndian.PutUint64(b[:8], h.lo)
	binary.LittleEndian.PutUint64(b[8:], h.hi)
	return b
}

// loadHalf reads up to 16 octets of b into a half.
func loadHalf(b []byte) half {
	var a [aes.BlockSize]byte
	copy(a[:], b)
	return half{binary.LittleEndian.Uint64(a[:8]), binary.LittleEndian.Uint64(a[8:])}
}

// codec holds one validated config and what is precomputed from it. It is
// immutable after newCodec and safe for concurrent use.
type codec struct {
	cfg   Config
	mode  mode
	block cipher.Block // nil in modePlain
	plen  int          // ServerIDLen + NonceLen, the plaintext_len of §5.4.2
	half  int          // plen/2 rounded up, the half_len of §5.4.2
	odd   bool         // plen is odd: the middle octet is split by nibbles
	// leftMask and rightMask keep a half's half_len octets and, when plen
	// is odd, clear the last four bits of a left half (steps 7 and 11) or
	// the first four bits of a right half (steps 5 and 9).
	leftMask, rightMask half
	// tag is expand()'s fifteenth octet, plaintext_len, in place.
	tag uint64
}

func newCodec(cfg Config) (*codec, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &codec{cfg: cfg, plen: cfg.ServerIDLen + cfg.NonceLen}
	c.half = (c.plen + 1) / 2
	c.odd = c.plen%2 == 1
	var lm, rm [aes.BlockSize]byte
	for i := range c.half {
		lm[i], rm[i] = 0xff, 0xff
	}
	if c.odd {
		lm[c.half-1], rm[0] = 0xf0, 0x0f
	}
	c.leftMask, c.rightMask = loadHalf(lm[:]), loadHalf(rm[:])
	c.tag = uint64(c.plen) << 48 // octet 14 of the block is bits 48-55 of hi
	if cfg.Key == nil {
		return c, nil
	}
	// Keep a private copy: the caller may reuse its key slice.
	c.cfg.Key = append([]byte(nil), cfg.Key...)
	block, err := aes.NewCipher(c.cfg.Key)
	if err != nil {
		return nil, fmt.Errorf("config %d: aes key: %w", cfg.ID, err)
	}
	c.block = block
	c.mode = modeFour
	if c.plen == aes.BlockSize {
		c.mode = modeSingle
	}
	return c, nil
}

// expand writes expand(plaintext_len, pass, in) to buf (draft-21 §5.4.2.2):
// the half in the most significant octets, zero padding, then the plaintext
// length and the pass number in the last two octets.
func (c *codec) expand(buf *[aes.BlockSize]byte, in half, pass uint64) {
	binary.LittleEndian.PutUint64(buf[:8], in.lo)
	binary.LittleEndian.PutUint64(buf[8:], in.hi|c.tag|pass<<56)
}

// round is the Feistel round function of draft-21 §5.4.2 steps 3-4:
// truncate(AES-ECB(key, expand(plaintext_len, pass, in)), half_len), but
// untruncated; the caller's mask truncates after the XOR.
func (c *codec) round(buf *[aes.BlockSize]byte, in half, pass uint64) half {
	c.expand(buf, in, pass)
	c.block.Encrypt(buf[:], buf[:])
	return half{binary.LittleEndian.Uint64(buf[:8]), binary.LittleEndian.Uint64(buf[8:])}
}

// split divides the plen octets of b into left and right halves of half_len
// octets each; with an odd length the middle octet's high nibble goes left
// and its low nibble right (step 2).
func (c *codec) split(b []byte) (l, r half) {
	return loadHalf(b[:c.half]).and(c.leftMask), loadHalf(b[c.plen-c.half : c.plen]).and(c.rightMask)
}

// join is the inverse of split (step 12): with an odd length the zeroed
// nibbles are dropped so out gets plen octets.
func (c *codec) join(out []byte, l, r half) {
	lb, rb := l.bytes(), r.bytes()
	copy(out[:c.half], lb[:c.half])
	if c.odd {
		out[c.half-1] |= rb[0]
		copy(out[c.half:c.plen], rb[1:c.half])
		return
	}
	copy(out[c.half:c.plen], rb[:c.half])
}

// feistelEncrypt writes the four-pass ciphertext of pt (plen octets) to out
// (plen octets); out and pt may be the same slice (draft-21 §5.4.2.3).
func (c *codec) feistelEncrypt(out, pt []byte) {
	l, r := c.split(pt)
	buf := blockPool.Get().(*[aes.BlockSize]byte)
	r = r.xor(c.round(buf, l, 1)).and(c.rightMask) // right_1, steps 3-5
	l = l.xor(c.round(buf, r, 2)).and(c.leftMask)  // left_1, steps 6-7
	r = r.xor(c.round(buf, l, 3)).and(c.rightMask) // right_2, steps 8-9
	l = l.xor(c.round(buf, r, 4)).and(c.leftMask)  // left_2, steps 10-11
	blockPool.Put(buf)
	c.join(out, l, r)
}

// feistelServerID appends the server ID held in the four-pass ciphertext ct
// (plen octets) to dst (draft-21 §5.5.2). It stops after three passes when
// the server ID lies wholly in left_0, that is when the nonce is at least as
// long as the server ID.
func (c *codec) feistelServerID(dst, ct []byte) []byte {
	l, r := c.split(ct) // left_2, right_2
	buf := blockPool.Get().(*[aes.BlockSize]byte)
	l = l.xor(c.round(buf, r, 4)).and(c.leftMask) // left_1
	// The draft's pseudocode clears left_1 after this pass; the algorithm
	// (and encryption step 5) clears the first four bits of right_1.
	r = r.xor(c.round(buf, l, 3)).and(c.rightMask) // right_1
	l = l.xor(c.round(buf, r, 2)).and(c.leftMask)  // left_0
	if c.cfg.ServerIDLen <= c.plen/2 {
		blockPool.Put(buf)
		lb := l.bytes()
		return append(dst, lb[:c.cfg.ServerIDLen]...)
	}
	r = r.xor(c.round(buf, l, 1)).and(c.rightMask) // right_0
	blockPool.Put(buf)
	var pt [maxPayload]byte
	c.join(pt[:], l, r)
	return append(dst, pt[:c.cfg.ServerIDLen]...)
}

// serverID appends the server ID carried by payload, the plen octets after
// the first octet, to dst.
func (c *codec) serverID(dst, payload []byte) []byte {
	switch c.mode {
	case modeSingle:
		buf := blockPool.Get().(*[aes.BlockSize]byte)
		c.block.Decrypt(buf[:], payload[:aes.BlockSize])
		dst = append(dst, buf[:c.cfg.ServerIDLen]...)
		blockPool.Put(buf)
		return dst
	case modeFour:
		return c.feistelServerID(dst, payload)
	default:
		return append(dst, payload[:c.cfg.ServerIDLen]...)
	}
}

// seal turns the plaintext server ID and nonce in payload (plen octets)
// into the CID's octets after the first, in place.
func (c *codec) seal(payload []byte) {
	switch c.mode {
	case modeSingle:
		c.block.Encrypt(payload[:aes.BlockSize], payload[:aes.BlockSize])
	case modeFour:
		c.feistelEncrypt(payload, payload)
	}
}
