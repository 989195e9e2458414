package cid

import (
	"fmt"
	"slices"
)

// Decoder extracts server IDs from routable connection IDs at the load
// balancer (draft-21 §5.5). It holds at most one config per config rotation
// codepoint, is immutable, and is safe for concurrent use.
type Decoder struct {
	// codecs is indexed by the first octet's top three bits; index 7
	// (0b111, reserved) is always nil.
	codecs [8]*codec
}

// NewDecoder returns a Decoder for cfgs, at most one per codepoint. With no
// configs every connection ID is unroutable (draft-21 §3.2).
func NewDecoder(cfgs ...Config) (*Decoder, error) {
	d := &Decoder{}
	for i, cfg := range cfgs {
		c, err := newCodec(cfg)
		if err != nil {
			return nil, fmt.Errorf("config %d: %w", i, err)
		}
		if d.codecs[cfg.ID] != nil {
			return nil, fmt.Errorf("config %d: %w: config ID %d given twice", i, ErrInvalidConfig, cfg.ID)
		}
		d.codecs[cfg.ID] = c
	}
	return d, nil
}

// Config returns the config at codepoint (0..7), and whether there is one.
// Its Key is nil for plaintext configs, which XDP can decode itself.
func (d *Decoder) Config(codepoint uint8) (Config, bool) {
	if codepoint > 7 || d.codecs[codepoint] == nil {
		return Config{}, false
	}
	cfg := d.codecs[codepoint].cfg
	cfg.Key = slices.Clone(cfg.Key)
	return cfg, true
}

// ServerID extracts the server ID from cid, the whole connection ID starting
// at its first octet, and returns it written over dst: the result is
// append(dst[:0], serverID...). It does not allocate when cap(dst) is at
// least the config's ServerIDLen; a [MaxCIDLen]byte array's [:0] always is.
//
// Octets after the config's Len() are ignored: servers may append their own
// (draft-21 §5.4). The first octet's length bits are not checked, since
// servers need not self-describe length (draft-21 §3.3).
//
// Errors wrap ErrNotRoutable: ErrReservedCodepoint, ErrUnknownConfig or
// ErrShortCID. Whether the server ID belongs to a live server is the
// caller's to decide.
func (d *Decoder) ServerID(dst, cid []byte) ([]byte, error) {
	if len(cid) == 0 {
		return nil, ErrShortCID
	}
	cp := cid[0] >> 5
	c := d.codecs[cp]
	if c == nil {
		if cp == UnroutableCodepoint {
			return nil, ErrReservedCodepoint
		}
		return nil, ErrUnknownConfig
	}
	if len(cid) <= c.plen {
		return nil, ErrShortCID
	}
	if c.mode == modePlain {
		// Inline the common XDP-decodable case: the server ID in the clear.
		return append(dst[:0], cid[1:1+c.cfg.ServerIDLen]...), nil
	}
	return c.serverID(dst[:0], cid[1:1+c.plen]), nil
}
