package cid

import (
	"crypto/rand"
	"fmt"
	"sync"

	"github.com/quic-go/quic-go"
)

// Generator issues routable connection IDs to a quic-go server: set it as
// quic.Transport.ConnectionIDGenerator and every CID the server hands out,
// in long headers and NEW_CONNECTION_ID frames, carries its server ID.
// It is safe for concurrent use.
//
// Nonces follow draft-21 §9.6: for a plaintext config each is random (a
// counter would link connections); for an encrypted config they count up
// from a random start, so none repeats until the whole nonce space is used,
// after which GenerateConnectionID returns ErrNonceExhausted.
type Generator struct {
	enc *Encoder

	mu    sync.Mutex
	next  [maxPayload]byte // next counter nonce (encrypted configs)
	start [maxPayload]byte // first counter nonce; meeting it again means exhausted
	used  bool             // at least one counter nonce has been issued
}

var _ quic.ConnectionIDGenerator = (*Generator)(nil)

// NewGenerator returns a Generator for the server with serverID under cfg.
func NewGenerator(cfg Config, serverID []byte) (*Generator, error) {
	enc, err := NewEncoder(cfg, serverID)
	if err != nil {
		return nil, err
	}
	g := &Generator{enc: enc}
	if cfg.Key != nil {
		if _, err := rand.Read(g.next[:cfg.NonceLen]); err != nil {
			return nil, fmt.Errorf("random nonce start: %w", err)
		}
		g.start = g.next
	}
	return g, nil
}

// GenerateConnectionID returns a new routable connection ID.
func (g *Generator) GenerateConnectionID() (quic.ConnectionID, error) {
	var b []byte
	var err error
	if g.enc.c.cfg.Key == nil {
		b, err = g.enc.Generate()
	} else {
		b, err = g.counterCID()
	}
	if err != nil {
		return quic.ConnectionID{}, err
	}
	return quic.ConnectionIDFromBytes(b), nil
}

// ConnectionIDLen returns the length of the connection IDs it generates.
func (g *Generator) ConnectionIDLen() int { return g.enc.c.cfg.Len() }

func (g *Generator) counterCID() ([]byte, error) {
	n := g.enc.c.cfg.NonceLen
	g.mu.Lock()
	if g.used && g.next == g.start {
		g.mu.Unlock()
		return nil, ErrNonceExhausted
	}
	nonce := g.next
	g.used = true
	// Big-endian increment with wrap-around within n octets.
	for i := n - 1; i >= 0; i-- {
		g.next[i]++
		if g.next[i] != 0 {
			break
		}
	}
	g.mu.Unlock()
	var buf [MaxCIDLen]byte
	return g.enc.Encode(buf[:0], nonce[:n])
}
