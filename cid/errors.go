package cid

import (
	"errors"
	"fmt"
)

// Errors a load balancer branches on. They are package variables, so the
// decode and parse hot paths return them without allocating.
var (
	// ErrNotRoutable is wrapped by every error Decoder.ServerID returns: the
	// connection ID does not carry a server ID this decoder can extract
	// (draft-21 §4.1). Route such packets by 4-tuple or fallback hash.
	ErrNotRoutable = errors.New("connection ID not routable")
	// ErrReservedCodepoint: the first three bits are 0b111, which servers with
	// no active configuration use; such CIDs are always unroutable (draft-21 §3.2).
	ErrReservedCodepoint = fmt.Errorf("%w: config rotation codepoint 0b111 is reserved", ErrNotRoutable)
	// ErrUnknownConfig: no configuration at the connection ID's codepoint
	// (draft-21 §3.2, §4.1).
	ErrUnknownConfig = fmt.Errorf("%w: no config for this config rotation codepoint", ErrNotRoutable)
	// ErrShortCID: the connection ID is shorter than its config's Len() (draft-21 §4.1).
	ErrShortCID = fmt.Errorf("%w: too short for its config", ErrNotRoutable)

	// ErrNotQUIC is wrapped by every error ParseHeader returns: the datagram
	// does not hold a QUIC header that follows RFC 8999 (and RFC 9000 §17 for
	// known versions).
	ErrNotQUIC = errors.New("not a quic packet")
	// ErrTruncated: the datagram ends before the header does.
	ErrTruncated = fmt.Errorf("%w: header truncated", ErrNotQUIC)
	// ErrCIDTooLong: a long header of QUIC v1 or v2 gives a connection ID
	// length above 20 (RFC 9000 §17.2, RFC 9369 §3).
	ErrCIDTooLong = fmt.Errorf("%w: connection ID longer than 20 octets", ErrNotQUIC)
	// ErrBadShortDCIDLen: ParseHeader was given a short header DCID length
	// outside 0..255, which no QUIC version can carry.
	ErrBadShortDCIDLen = errors.New("short header dcid length out of range 0..255")

	// ErrNonceExhausted: a Generator has used every nonce of its config
	// (draft-21 §9.6); switch to a config with a new key.
	ErrNonceExhausted = errors.New("nonce space exhausted for this config")
)
