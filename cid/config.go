// Package cid encodes and decodes QUIC-LB routable connection IDs
// (draft-ietf-quic-load-balancers-21) and parses the QUIC invariant header
// (RFC 8999, RFC 9000 §17) far enough to find them.
package cid

import (
	"errors"
	"fmt"
)

// Limits from draft-21 §3 and §5.3.
const (
	// MaxCIDLen is the longest connection ID QUIC v1 allows (RFC 9000 §17.2).
	MaxCIDLen = 20
	// MaxConfigID is the highest usable config rotation codepoint; 0b111 is
	// reserved for unroutable CIDs (draft-21 §3.2).
	MaxConfigID = 6
	// UnroutableCodepoint marks a CID as not routable (draft-21 §3.2).
	UnroutableCodepoint = 0b111
	// MinNonceLen is the shortest nonce allowed (draft-21 §5.3).
	MinNonceLen = 4
	// KeyLen is the AES-128 key length (draft-21 §5.3).
	KeyLen = 16
	// maxPayload is the most octets after the first: ServerIDLen+NonceLen ≤ 19.
	maxPayload = MaxCIDLen - 1
)

// ErrInvalidConfig is wrapped by every error Config.Validate returns.
var ErrInvalidConfig = errors.New("invalid quic-lb config")

// Config is one QUIC-LB configuration (draft-21 §5.3).
type Config struct {
	ID          uint8  // config rotation codepoint, 0..6 (0b111 reserved, §3.2)
	ServerIDLen int    // octets, ≥1
	NonceLen    int    // octets, ≥4; ServerIDLen+NonceLen ≤ 19
	Key         []byte // nil: plaintext; else exactly 16 octets (AES-128)
}

// Validate checks every rule draft-21 §3.2 and §5.3 put on a configuration.
// Errors wrap ErrInvalidConfig and name the offending field.
func (c Config) Validate() error {
	switch {
	case c.ID > MaxConfigID:
		return fmt.Errorf("%w: config ID %d out of range 0..%d (0b111 is reserved for unroutable CIDs, draft-21 §3.2)", ErrInvalidConfig, c.ID, MaxConfigID)
	case c.ServerIDLen < 1:
		return fmt.Errorf("%w: server ID length %d, must be at least 1 octet (draft-21 §5.3)", ErrInvalidConfig, c.ServerIDLen)
	case c.NonceLen < MinNonceLen:
		return fmt.Errorf("%w: nonce length %d, must be at least %d octets (draft-21 §5.3)", ErrInvalidConfig, c.NonceLen, MinNonceLen)
	case c.ServerIDLen+c.NonceLen > maxPayload:
		return fmt.Errorf("%w: server ID length %d + nonce length %d = %d, must be at most %d octets (draft-21 §5.3)", ErrInvalidConfig, c.ServerIDLen, c.NonceLen, c.ServerIDLen+c.NonceLen, maxPayload)
	case c.Key != nil && len(c.Key) != KeyLen:
		return fmt.Errorf("%w: key length %d octets, must be %d (AES-128) or absent for plaintext (draft-21 §5.3)", ErrInvalidConfig, len(c.Key), KeyLen)
	}
	return nil
}

// Len returns the connection ID length this config produces:
// the first octet plus server ID plus nonce.
func (c Config) Len() int { return 1 + c.ServerIDLen + c.NonceLen }

// Encrypted reports whether the config carries a key (draft-21 §5.4).
func (c Config) Encrypted() bool { return c.Key != nil }
