package main

import (
	"fmt"
	"log/slog"

	"github.com/urfave/cli/v2"

	"github.com/spooky-lb/spooky/forwarder"
)

// decapCommand manages the decapsulator on backends reached by ipip.
func decapCommand(e env) *cli.Command {
	return &cli.Command{
		Name:  "decap",
		Usage: "strip IPIP/IPv6 tunnel headers in XDP on a backend (no tunnel device needed)",
		Subcommands: []*cli.Command{
			{
				Name:      "attach",
				Usage:     "attach (or refresh the local addresses of) the decapsulator on IFACE; it stays after exit",
				ArgsUsage: "IFACE",
				Flags:     []cli.Flag{xdpModeFlag(), pinRootFlag},
				Action: func(c *cli.Context) error {
					iface, err := ifaceArg(c, "decap attach")
					if err != nil {
						return err
					}
					log := slog.New(slog.NewTextHandler(e.stderr, nil))
					addrs, err := forwarder.AttachDecap(c.String("pin-root"), iface, forwarder.XDPMode(c.String("xdp-mode")), log)
					if err != nil {
						return fmt.Errorf("decap attach: %w", err)
					}
					fmt.Fprintf(e.stdout, "decapsulating on %s for %v\n", iface, addrs)
					return nil
				},
			},
			{
				Name:      "detach",
				Usage:     "remove the decapsulator from IFACE",
				ArgsUsage: "IFACE",
				Flags:     []cli.Flag{pinRootFlag},
				Action: func(c *cli.Context) error {
					iface, err := ifaceArg(c, "decap detach")
					if err != nil {
						return err
					}
					d, err := forwarder.DetachDecap(c.String("pin-root"), iface)
					return reportDetached(e, "decap detach", d, err)
				},
			},
		},
	}
}
