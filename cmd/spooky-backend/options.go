package main

import (
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"strings"

	"github.com/quic-go/quic-go"

	"github.com/spooky-lb/spooky/cid"
)

// options is the parsed command line.
type options struct {
	listen   netip.AddrPort
	name     string
	cid      cid.Config
	serverID []byte
	// resetKey, if set, lets the server send stateless resets (RFC 9000
	// §10.3); backends sharing it can reset each other's connections.
	resetKey *quic.StatelessResetKey
	certFile string
	keyFile  string
}

// parseArgs parses the command line. Errors name the flag at fault.
func parseArgs(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("spooky-backend", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "", "UDP address to bind, `ADDR:PORT` (for direct server return, the VIP)")
	name := fs.String("name", "", "backend name, returned by GET / and in X-Backend")
	configID := fs.Uint("config-id", 0, "QUIC-LB config rotation codepoint, 0..6")
	serverID := fs.String("server-id", "", "QUIC-LB server ID, `HEX` (its length is the server ID length)")
	nonceLen := fs.Int("nonce-len", 8, "QUIC-LB nonce length in octets, ≥4")
	key := fs.String("key", "", "QUIC-LB AES-128 key, 32 hex digits; absent: plaintext CIDs")
	resetKey := fs.String("reset-key", "", "stateless reset key, 64 hex digits; absent: no stateless resets")
	certFile := fs.String("cert", "", "TLS certificate `FILE` (PEM); absent: a self-signed one made in memory")
	keyFile := fs.String("key-file", "", "TLS private key `FILE` (PEM), with --cert")
	if err := fs.Parse(args); err != nil {
		return options{}, err
	}
	if fs.NArg() > 0 {
		return options{}, fmt.Errorf("unexpected arguments %q", fs.Args())
	}

	var o options
	var err error
	if *listen == "" {
		return o, fmt.Errorf("--listen is required")
	}
	if o.listen, err = netip.ParseAddrPort(*listen); err != nil {
		return o, fmt.Errorf("--listen %q: want ADDR:PORT ([ADDR]:PORT for IPv6): %w", *listen, err)
	}
	if o.listen.Port() == 0 {
		return o, fmt.Errorf("--listen %q: port 0: choose a port", *listen)
	}
	if o.name = *name; o.name == "" || strings.ContainsAny(o.name, "\r\n") {
		return o, fmt.Errorf("--name %q: want a non-empty single-line name", *name)
	}
	if *configID > cid.MaxConfigID {
		return o, fmt.Errorf("--config-id %d: want 0..%d", *configID, cid.MaxConfigID)
	}
	if o.serverID, err = hex.DecodeString(*serverID); err != nil || len(o.serverID) == 0 {
		return o, fmt.Errorf("--server-id %q: want one or more octets in hex", *serverID)
	}
	o.cid = cid.Config{ID: uint8(*configID), ServerIDLen: len(o.serverID), NonceLen: *nonceLen}
	if *key != "" {
		if o.cid.Key, err = hex.DecodeString(*key); err != nil {
			return o, fmt.Errorf("--key: not hex: %w", err)
		}
	}
	if err := o.cid.Validate(); err != nil {
		return o, fmt.Errorf("--config-id/--server-id/--nonce-len/--key: %w", err)
	}
	if *resetKey != "" {
		b, err := hex.DecodeString(*resetKey)
		if err != nil || len(b) != len(quic.StatelessResetKey{}) {
			return o, fmt.Errorf("--reset-key: want %d octets in hex", len(quic.StatelessResetKey{}))
		}
		o.resetKey = new(quic.StatelessResetKey)
		copy(o.resetKey[:], b)
	}
	o.certFile, o.keyFile = *certFile, *keyFile
	if (o.certFile == "") != (o.keyFile == "") {
		return o, fmt.Errorf("--cert and --key-file go together")
	}
	return o, nil
}
