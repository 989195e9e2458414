package main

import (
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"

	"github.com/quic-go/quic-go"

	"github.com/spooky-lb/spooky/cid"
)

// protocol is the HTTP version (and transport) spooky-backend serves.
type protocol string

// The protocols of --protocol. Only h3 runs over QUIC, so only h3 issues
// routable connection IDs; the others are upstreams for spooky's request
// tier, which speaks each of them (l7 pool URLs h3://, https://, h2c://,
// http://).
const (
	protoH3  protocol = "h3"  // HTTP/3 over QUIC (RFC 9114); UDP
	protoH1  protocol = "h1"  // HTTP/1.1 over TLS only (ALPN http/1.1); TCP
	protoH2  protocol = "h2"  // HTTP/2 over TLS, ALPN h2 with http/1.1 fallback (RFC 9113 §3.2); TCP
	protoH2C protocol = "h2c" // cleartext HTTP/2 with prior knowledge (RFC 9113 §3.3) and HTTP/1.1; TCP
)

// tls reports whether the protocol runs over TLS (h2c does not).
func (p protocol) tls() bool { return p != protoH2C }

// cidFlags are the flags that only make sense over QUIC (--protocol h3).
var cidFlags = []string{"config-id", "server-id", "nonce-len", "key", "reset-key"}

// options is the parsed command line.
type options struct {
	// proto is what is served; the zero value means h3.
	proto    protocol
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
	proto := fs.String("protocol", string(protoH3), "what to serve, `PROTO`: h3 (HTTP/3, UDP), h1 (HTTP/1.1 over TLS), h2 (HTTP/2 over TLS, HTTP/1.1 fallback) or h2c (cleartext HTTP/2 and HTTP/1.1)")
	listen := fs.String("listen", "", "address to bind, `ADDR:PORT`: UDP for h3, TCP otherwise (for direct server return, the VIP)")
	name := fs.String("name", "", "backend name, the answer to every path but /healthz and its X-Backend header")
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
	switch o.proto = protocol(*proto); o.proto {
	case protoH3, protoH1, protoH2, protoH2C:
	default:
		return o, fmt.Errorf("--protocol %q: want h3, h1, h2 or h2c", *proto)
	}
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
	if o.proto != protoH3 {
		var set []string
		fs.Visit(func(f *flag.Flag) {
			if slices.Contains(cidFlags, f.Name) {
				set = append(set, "--"+f.Name)
			}
		})
		if len(set) > 0 {
			return o, fmt.Errorf("%s: only for --protocol h3 (connection IDs are QUIC's), not %s", strings.Join(set, ", "), o.proto)
		}
		if err := o.setCertFiles(*certFile, *keyFile); err != nil {
			return o, err
		}
		if !o.proto.tls() && o.certFile != "" {
			return o, fmt.Errorf("--cert: %s is cleartext; leave out --cert and --key-file", o.proto)
		}
		return o, nil
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
	if err := o.setCertFiles(*certFile, *keyFile); err != nil {
		return o, err
	}
	return o, nil
}

// setCertFiles takes --cert and --key-file, which go together.
func (o *options) setCertFiles(certFile, keyFile string) error {
	o.certFile, o.keyFile = certFile, keyFile
	if (o.certFile == "") != (o.keyFile == "") {
		return fmt.Errorf("--cert and --key-file go together")
	}
	return nil
}
