package cid

import (
	"crypto/rand"
	"fmt"
	"slices"
)

// Encoder builds routable connection IDs for one server under one config
// (draft-21 §5.4). It is safe for concurrent use once configured.
type Encoder struct {
	c        *codec
	serverID []byte
	// randomLen: fill the first octet's low five bits with random bits
	// instead of the length (draft-21 §3.3).
	randomLen bool
}

// NewEncoder returns an Encoder for the server with serverID, which must be
// exactly cfg.ServerIDLen octets.
func NewEncoder(cfg Config, serverID []byte) (*Encoder, error) {
	c, err := newCodec(cfg)
	if err != nil {
		return nil, err
	}
	if len(serverID) != cfg.ServerIDLen {
		return nil, fmt.Errorf("server ID is %d octets, config %d needs %d", len(serverID), cfg.ID, cfg.ServerIDLen)
	}
	return &Encoder{c: c, serverID: slices.Clone(serverID)}, nil
}

// Config returns the encoder's configuration.
func (e *Encoder) Config() Config {
	cfg := e.c.cfg
	cfg.Key = slices.Clone(cfg.Key)
	return cfg
}

// SetSelfDescribedLength chooses what the five low bits of the first octet
// hold: the length of the CID after the first octet (on, the default), or
// random bits with no relationship to earlier CIDs (off), for servers that
// do not use length self-description (draft-21 §3.3). Call it before the
// Encoder is shared between goroutines.
func (e *Encoder) SetSelfDescribedLength(on bool) { e.randomLen = !on }

// Encode returns the connection ID for nonce, which must be exactly
// cfg.NonceLen octets, written over dst: the result is append(dst[:0], cid...),
// so pass a buffer with capacity cfg.Len() to avoid allocating.
//
// With length self-description on (the default) the result depends only on
// the config, server ID and nonce. A server MUST NOT reuse a nonce under one
// key (draft-21 §9.6); Generate picks random ones.
func (e *Encoder) Encode(dst, nonce []byte) ([]byte, error) {
	cfg := &e.c.cfg
	if len(nonce) != cfg.NonceLen {
		return nil, fmt.Errorf("nonce is %d octets, config %d needs %d", len(nonce), cfg.ID, cfg.NonceLen)
	}
	n := cfg.Len()
	dst = slices.Grow(dst[:0], n)[:n]
	low := byte(n - 1)
	if e.randomLen {
		var b [1]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, fmt.Errorf("random first octet bits: %w", err)
		}
		low = b[0]
	}
	dst[0] = cfg.ID<<5 | low&0x1f
	copy(dst[1:], e.serverID)
	copy(dst[1+cfg.ServerIDLen:], nonce)
	e.c.seal(dst[1:n])
	return dst, nil
}

// Generate returns a new connection ID with a nonce from crypto/rand.
// With a random N-bit nonce, expect a repeat about every 2^(N/2) CIDs
// (draft-21 §9.6); Generator counts nonces instead when the config is
// encrypted.
func (e *Encoder) Generate() ([]byte, error) {
	var nonce [maxPayload]byte
	if _, err := rand.Read(nonce[:e.c.cfg.NonceLen]); err != nil {
		return nil, fmt.Errorf("random nonce: %w", err)
	}
	return e.Encode(make([]byte, 0, e.c.cfg.Len()), nonce[:e.c.cfg.NonceLen])
}
