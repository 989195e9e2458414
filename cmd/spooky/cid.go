package main

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/spooky-lb/spooky/cid"
	"github.com/urfave/cli/v2"
)

// cidCommand groups the QUIC-LB connection ID tools: encode a server ID and
// nonce into a routable CID, or decode the server ID from one
// (draft-ietf-quic-load-balancers-21).
func cidCommand(e env) *cli.Command {
	// Each subcommand gets its own flag values: urfave/cli keeps state in them.
	keyFlag := func() cli.Flag {
		return &cli.StringFlag{Name: "key", Usage: "AES-128 key as 32 hex digits; omit for a plaintext config"}
	}
	configIDFlag := func() cli.Flag {
		return &cli.IntFlag{Name: "config-id", Usage: "config rotation codepoint, 0..6"}
	}
	return &cli.Command{
		Name:  "cid",
		Usage: "encode and decode QUIC-LB routable connection IDs",
		Subcommands: []*cli.Command{
			{
				Name:         "encode",
				Usage:        "print the connection ID for a server ID and nonce",
				ArgsUsage:    " ",
				OnUsageError: cidUsageError,
				Flags: []cli.Flag{
					configIDFlag(),
					&cli.StringFlag{Name: "server-id", Usage: "server ID in hex"},
					&cli.StringFlag{Name: "nonce", Usage: "nonce in hex, at least 4 octets"},
					keyFlag(),
				},
				Action: func(c *cli.Context) error {
					if err := requireFlags(c, "config-id", "server-id", "nonce"); err != nil {
						return fmt.Errorf("cid encode: %w", err)
					}
					if c.NArg() > 0 {
						return fmt.Errorf("cid encode: unexpected argument %q", c.Args().First())
					}
					sid, err := hexFlag(c, "server-id")
					if err != nil {
						return fmt.Errorf("cid encode: %w", err)
					}
					nonce, err := hexFlag(c, "nonce")
					if err != nil {
						return fmt.Errorf("cid encode: %w", err)
					}
					cfg, err := cidConfig(c, len(sid), len(nonce))
					if err != nil {
						return fmt.Errorf("cid encode: %w", err)
					}
					enc, err := cid.NewEncoder(cfg, sid)
					if err != nil {
						return fmt.Errorf("cid encode: %w", err)
					}
					out, err := enc.Encode(nil, nonce)
					if err != nil {
						return fmt.Errorf("cid encode: %w", err)
					}
					_, err = fmt.Fprintln(e.stdout, hex.EncodeToString(out))
					return err
				},
			},
			{
				Name:         "decode",
				Usage:        "print the server ID a connection ID carries",
				ArgsUsage:    "CIDHEX",
				OnUsageError: cidUsageError,
				Flags: []cli.Flag{
					configIDFlag(),
					&cli.IntFlag{Name: "server-id-len", Usage: "server ID length in octets"},
					&cli.IntFlag{Name: "nonce-len", Usage: "nonce length in octets"},
					keyFlag(),
				},
				Action: func(c *cli.Context) error {
					if err := requireFlags(c, "config-id", "server-id-len", "nonce-len"); err != nil {
						return fmt.Errorf("cid decode: %w", err)
					}
					if c.NArg() != 1 {
						return fmt.Errorf("cid decode: want one connection ID argument in hex, got %d arguments", c.NArg())
					}
					raw, err := parseHex(c.Args().First())
					if err != nil {
						return fmt.Errorf("cid decode: connection ID: %w", err)
					}
					cfg, err := cidConfig(c, c.Int("server-id-len"), c.Int("nonce-len"))
					if err != nil {
						return fmt.Errorf("cid decode: %w", err)
					}
					dec, err := cid.NewDecoder(cfg)
					if err != nil {
						return fmt.Errorf("cid decode: %w", err)
					}
					sid, err := dec.ServerID(nil, raw)
					if err != nil {
						switch {
						case errors.Is(err, cid.ErrUnknownConfig):
							return fmt.Errorf("cid decode %x: %w (codepoint %d, --config-id %d)", raw, err, raw[0]>>5, cfg.ID)
						case errors.Is(err, cid.ErrShortCID):
							return fmt.Errorf("cid decode %x: %w (%d octets, config needs %d)", raw, err, len(raw), cfg.Len())
						}
						return fmt.Errorf("cid decode %x: %w", raw, err)
					}
					_, err = fmt.Fprintln(e.stdout, hex.EncodeToString(sid))
					return err
				},
			},
		},
	}
}

// cidUsageError returns a flag parse error without printing help to stdout,
// which holds only the command's result.
func cidUsageError(c *cli.Context, err error, _ bool) error {
	return fmt.Errorf("cid %s: %w", c.Command.Name, err)
}

// requireFlags reports the first of names not given. urfave/cli's own
// Required check prints help to stdout, so the commands check themselves.
func requireFlags(c *cli.Context, names ...string) error {
	for _, n := range names {
		if !c.IsSet(n) {
			return fmt.Errorf("--%s is required", n)
		}
	}
	return nil
}

// cidConfig builds and validates the config the flags describe.
func cidConfig(c *cli.Context, sidLen, nonceLen int) (cid.Config, error) {
	id := c.Int("config-id")
	if id < 0 || id > cid.MaxConfigID {
		return cid.Config{}, fmt.Errorf("--config-id %d: want 0..%d (7 is reserved for unroutable CIDs)", id, cid.MaxConfigID)
	}
	cfg := cid.Config{ID: uint8(id), ServerIDLen: sidLen, NonceLen: nonceLen}
	if c.IsSet("key") {
		key, err := hexFlag(c, "key")
		if err != nil {
			return cid.Config{}, err
		}
		cfg.Key = key
	}
	if err := cfg.Validate(); err != nil {
		return cid.Config{}, err
	}
	return cfg, nil
}

// hexFlag decodes the hex value of flag name.
func hexFlag(c *cli.Context, name string) ([]byte, error) {
	b, err := parseHex(c.String(name))
	if err != nil {
		return nil, fmt.Errorf("--%s: %w", name, err)
	}
	return b, nil
}

// parseHex decodes s, which may start with 0x.
func parseHex(s string) ([]byte, error) {
	t := strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X")
	if t == "" {
		return nil, errors.New("empty hex value")
	}
	b, err := hex.DecodeString(t)
	if err != nil {
		return nil, fmt.Errorf("%q is not hex: %w", s, err)
	}
	return b, nil
}
